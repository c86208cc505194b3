// Building InspectReports: GGUF through the tolerant scanner, safetensors and HF folders
// through the strict readers (their errors become findings), and the per-type / per-layer
// sums. Headers only: no tensor data is read.
#include "inspect/model_report.h"

#include <simdjson.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "formats/error.h"
#include "formats/mapped_file.h"
#include "formats/safetensors.h"

namespace smolq {
namespace {

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool ends_with(std::string_view s, std::string_view suf) {
  return s.size() >= suf.size() && s.substr(s.size() - suf.size()) == suf;
}

Finding error_finding(const Error& e) {
  if (auto* fe = dynamic_cast<const FormatError*>(&e)) {
    // Drop the "path @0x..: " prefix: the report already names the file.
    return {Severity::kError, fe->offset(), fe->path() + ": " + fe->message()};
  }
  return {Severity::kError, FormatError::kNoOffset, e.what()};
}

std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

// The text of token `id` in the GGUF vocabulary, if there is one.
std::string gguf_token_text(const GgufMetadata& m, uint64_t id) {
  const GgufValue* t = m.find("tokenizer.ggml.tokens");
  if (!t || t->type != GgufType::ARRAY) return "";
  const auto& a = t->as_array();
  if (a.elem_type != GgufType::STRING || id >= a.items.size()) return "";
  return a.items[id].as_string();
}

}  // namespace

std::optional<int> tensor_layer(std::string_view name) {
  for (std::string_view prefix : {std::string_view("blk."), std::string_view("model.layers."), std::string_view("layers.")}) {
    if (name.substr(0, prefix.size()) != prefix) continue;
    std::string_view rest = name.substr(prefix.size());
    int v = 0;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), v);
    if (ec == std::errc() && p != rest.data() && p < rest.data() + rest.size() && *p == '.' && v >= 0) return v;
  }
  return std::nullopt;
}

uint64_t InspectReport::tensor_bytes() const {
  uint64_t s = 0;
  for (const auto& t : tensors) s += t.n_bytes;
  return s;
}

uint64_t InspectReport::n_params() const {
  uint64_t s = 0;
  for (const auto& t : tensors) s += t.n_elements;
  return s;
}

double InspectReport::effective_bpw() const {
  const uint64_t p = n_params();
  return p ? 8.0 * static_cast<double>(tensor_bytes()) / static_cast<double>(p) : 0.0;
}

double InspectReport::file_bpw() const {
  const uint64_t p = n_params();
  return p ? 8.0 * static_cast<double>(file_bytes) / static_cast<double>(p) : 0.0;
}

bool InspectReport::has_errors() const {
  return std::any_of(findings.begin(), findings.end(), [](const Finding& f) { return f.severity == Severity::kError; });
}

std::vector<TypeTotal> totals_by_type(const std::vector<TensorRow>& rows) {
  std::map<std::string, TypeTotal> m;
  for (const auto& r : rows) {
    auto& t = m[r.type];
    t.type = r.type;
    ++t.n_tensors;
    t.n_elements += r.n_elements;
    t.n_bytes += r.n_bytes;
  }
  std::vector<TypeTotal> out;
  for (auto& [k, v] : m) out.push_back(v);
  std::stable_sort(out.begin(), out.end(), [](const TypeTotal& a, const TypeTotal& b) { return a.n_bytes > b.n_bytes; });
  return out;
}

std::vector<LayerTotal> totals_by_layer(const std::vector<TensorRow>& rows) {
  // key -1 = outside the blocks, so it sorts first
  std::map<int, LayerTotal> m;
  std::map<int, std::map<std::string, uint64_t>> type_bytes;
  for (const auto& r : rows) {
    const int k = r.layer.value_or(-1);
    auto& t = m[k];
    t.layer = r.layer;
    ++t.n_tensors;
    t.n_elements += r.n_elements;
    t.n_bytes += r.n_bytes;
    type_bytes[k][r.type] += r.n_bytes;
  }
  std::vector<LayerTotal> out;
  for (auto& [k, v] : m) {
    std::vector<std::pair<std::string, uint64_t>> tb(type_bytes[k].begin(), type_bytes[k].end());
    std::stable_sort(tb.begin(), tb.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    for (size_t i = 0; i < tb.size(); ++i) v.types += (i ? ", " : "") + tb[i].first;
    out.push_back(v);
  }
  return out;
}

std::optional<TokenizerSummary> tokenizer_from_gguf(const GgufMetadata& m) {
  if (!m.has("tokenizer.ggml.model") && !m.has("tokenizer.ggml.tokens")) return std::nullopt;
  TokenizerSummary t;
  // Wrong-typed values are reported elsewhere (the scan); here they simply read as absent.
  auto str = [&](const char* k) -> std::string {
    const GgufValue* v = m.find(k);
    return v && v->type == GgufType::STRING ? v->as_string() : "";
  };
  auto arr_size = [&](const char* k) -> uint64_t {
    const GgufValue* v = m.find(k);
    return v && v->type == GgufType::ARRAY ? v->as_array().items.size() : 0;
  };
  t.model = str("tokenizer.ggml.model");
  t.pre = str("tokenizer.ggml.pre");
  t.vocab_size = arr_size("tokenizer.ggml.tokens");
  t.n_merges = arr_size("tokenizer.ggml.merges");
  if (const GgufValue* tt = m.find("tokenizer.ggml.token_type"); tt && tt->type == GgufType::ARRAY) {
    // llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    constexpr int64_t kControl = 3;
    for (const auto& v : tt->as_array().items)
      if (v.is_integer() && v.as_i64() == kControl) ++t.n_control;
  }
  for (const char* role : {"bos", "eos", "unknown", "padding", "separator", "cls", "mask", "eot", "eom"}) {
    const std::string key = std::string("tokenizer.ggml.") + role + "_token_id";
    const GgufValue* v = m.find(key);
    if (!v || !v->is_integer()) continue;
    const int64_t id = v->as_i64();
    t.special.push_back({role, id, id >= 0 ? gguf_token_text(m, static_cast<uint64_t>(id)) : ""});
  }
  if (const GgufValue* v = m.find("tokenizer.ggml.add_bos_token"); v && v->type == GgufType::BOOL) t.add_bos = v->as_bool();
  if (const GgufValue* v = m.find("tokenizer.ggml.add_eos_token"); v && v->type == GgufType::BOOL) t.add_eos = v->as_bool();
  const std::string tmpl = str("tokenizer.chat_template");
  t.has_chat_template = !tmpl.empty();
  t.chat_template_chars = tmpl.size();
  return t;
}

std::optional<TokenizerSummary> tokenizer_from_hf(const std::string& dir, std::vector<Finding>& findings) {
  const std::string tj = dir + "/tokenizer.json";
  const std::string tc = dir + "/tokenizer_config.json";
  if (!file_exists(tj) && !file_exists(tc)) return std::nullopt;
  TokenizerSummary t;
  std::map<std::string, int64_t> ids;  // token text -> id (vocab and added tokens)
  simdjson::dom::parser parser;
  if (file_exists(tj)) {
    try {
      const std::string text = read_text_file(tj, 256u << 20);
      simdjson::dom::element root;
      if (auto err = parser.parse(text).get(root))
        throw FormatError(tj, std::string("invalid JSON: ") + simdjson::error_message(err));
      simdjson::dom::object model;
      if (root["model"].get(model) == simdjson::SUCCESS) {
        std::string_view type;
        if (model["type"].get(type) == simdjson::SUCCESS) t.model = std::string(type);
        simdjson::dom::object vocab;
        int64_t max_id = -1;
        if (model["vocab"].get(vocab) == simdjson::SUCCESS) {
          for (auto [k, v] : vocab) {
            int64_t id;
            if (v.get(id) == simdjson::SUCCESS) {
              ids[std::string(k)] = id;
              max_id = std::max(max_id, id);
            }
          }
        }
        simdjson::dom::array merges;
        if (model["merges"].get(merges) == simdjson::SUCCESS) t.n_merges = merges.size();
        simdjson::dom::array added;
        if (root["added_tokens"].get(added) == simdjson::SUCCESS) {
          for (auto a : added) {
            int64_t id;
            std::string_view content;
            bool special = false;
            if (a["id"].get(id) != simdjson::SUCCESS || a["content"].get(content) != simdjson::SUCCESS) continue;
            if (a["special"].get(special) != simdjson::SUCCESS) special = false;
            ids[std::string(content)] = id;
            max_id = std::max(max_id, id);
            if (special) ++t.n_control;
          }
        }
        t.vocab_size = static_cast<uint64_t>(max_id + 1);
      }
      // Pre-tokenizer: its type, or the chain of a Sequence ("Sequence[Digits, ByteLevel]").
      simdjson::dom::object pre;
      if (root["pre_tokenizer"].get(pre) == simdjson::SUCCESS) {
        std::string_view type;
        if (pre["type"].get(type) == simdjson::SUCCESS) t.pre = std::string(type);
        simdjson::dom::array seq;
        if (pre["pretokenizers"].get(seq) == simdjson::SUCCESS) {
          t.pre += "[";
          bool first = true;
          for (auto p : seq) {
            std::string_view pt;
            if (p["type"].get(pt) != simdjson::SUCCESS) continue;
            t.pre += (first ? "" : ", ") + std::string(pt);
            first = false;
          }
          t.pre += "]";
        }
      }
    } catch (const Error& e) {
      findings.push_back(error_finding(e));
    }
  }
  if (file_exists(tc)) {
    try {
      const std::string text = read_text_file(tc, 64u << 20);
      simdjson::dom::element root;
      if (auto err = parser.parse(text).get(root))
        throw FormatError(tc, std::string("invalid JSON: ") + simdjson::error_message(err));
      std::string_view tmpl;
      if (root["chat_template"].get(tmpl) == simdjson::SUCCESS) {
        t.has_chat_template = true;
        t.chat_template_chars = tmpl.size();
      }
      for (const char* role : {"bos", "eos", "unk", "pad"}) {
        simdjson::dom::element e;
        if (root[std::string(role) + "_token"].get(e) != simdjson::SUCCESS || e.is_null()) continue;
        std::string_view content;
        if (e.get(content) != simdjson::SUCCESS && e["content"].get(content) != simdjson::SUCCESS) continue;
        auto it = ids.find(std::string(content));
        t.special.push_back({role, it == ids.end() ? std::nullopt : std::optional<int64_t>(it->second), std::string(content)});
      }
      bool b;
      if (root["add_bos_token"].get(b) == simdjson::SUCCESS) t.add_bos = b;
      if (root["add_eos_token"].get(b) == simdjson::SUCCESS) t.add_eos = b;
    } catch (const Error& e) {
      findings.push_back(error_finding(e));
    }
  }
  return t;
}

InspectReport inspect_gguf(const std::string& path) {
  InspectReport r;
  r.path = path;
  r.kind = SourceKind::kGguf;
  GgufScan s = scan_gguf(path);
  r.file_bytes = s.file_size;
  r.findings = std::move(s.findings);
  if (!s.is_gguf) {
    r.format_line = "not GGUF";
    return r;
  }
  r.format_line = "GGUF v" + std::to_string(s.version) + ", " + std::to_string(s.declared_kv) + " keys, " +
                  std::to_string(s.declared_tensors) + " tensors, alignment " + std::to_string(s.alignment);
  if (s.header_complete) r.format_line += ", tensor data at " + hex(s.data_offset);
  else r.format_line += " (header incomplete)";
  r.metadata = std::move(s.metadata);
  for (const auto& st : s.tensors) {
    TensorRow row;
    row.name = st.info.name;
    row.shape = st.info.shape;
    row.type = st.type_known ? std::string(type_info(st.info.type).name) : "type#" + std::to_string(st.raw_type);
    row.n_elements = st.info.n_elements;
    row.n_bytes = st.size_known ? st.info.n_bytes : 0;
    row.size_known = st.size_known;
    row.layer = tensor_layer(row.name);
    r.tensors.push_back(std::move(row));
  }
  if (r.metadata.has("general.architecture")) {
    try {
      r.config = config_from_gguf(r.metadata, path);
    } catch (const Error& e) {
      Finding f = error_finding(e);
      f.severity = Severity::kWarning;  // inspect still shows everything else
      f.message = "hyperparameters: " + f.message;
      r.findings.push_back(std::move(f));
    }
  }
  r.tokenizer = tokenizer_from_gguf(r.metadata);
  return r;
}

// Rows and metadata from a safetensors checkpoint (file, index or folder). Errors from the
// strict reader become findings; the report then has no tensors.
static void add_safetensors(InspectReport& r, const std::string& path) {
  try {
    auto ck = SafetensorsCheckpoint::open(path);
    uint64_t bytes = 0;
    for (const auto& f : ck->files()) {
      struct stat st {};
      if (::stat(f.c_str(), &st) == 0) bytes += static_cast<uint64_t>(st.st_size);
    }
    r.file_bytes += bytes;
    r.format_line = "safetensors, " + std::to_string(ck->files().size()) + " file(s), " +
                    std::to_string(ck->tensors().size()) + " tensors";
    for (const auto& t : ck->tensors()) {
      TensorRow row;
      row.name = t.name;
      row.shape = t.shape;
      row.type = std::string(st_dtype_name(t.dtype));
      row.n_elements = t.n_elements;
      row.n_bytes = t.n_elements * st_dtype_size(t.dtype);
      row.layer = tensor_layer(t.name);
      r.tensors.push_back(std::move(row));
    }
  } catch (const Error& e) {
    r.findings.push_back(error_finding(e));
    if (r.format_line.empty()) r.format_line = "safetensors (unreadable)";
  }
}

InspectReport inspect_safetensors(const std::string& path) {
  InspectReport r;
  r.path = path;
  r.kind = SourceKind::kSafetensors;
  add_safetensors(r, path);
  return r;
}

InspectReport inspect_hf_folder(const std::string& dir) {
  InspectReport r;
  r.path = dir;
  r.kind = SourceKind::kHfFolder;
  const std::string cfg = dir + "/config.json";
  if (file_exists(cfg)) {
    try {
      r.config = parse_hf_config(cfg);
    } catch (const Error& e) {
      r.findings.push_back(error_finding(e));
    }
  } else {
    r.findings.push_back({Severity::kError, FormatError::kNoOffset, dir + ": no config.json"});
  }
  r.tokenizer = tokenizer_from_hf(dir, r.findings);
  if (file_exists(dir + "/model.safetensors") || file_exists(dir + "/model.safetensors.index.json")) {
    add_safetensors(r, dir);
  } else {
    r.format_line = "Hugging Face folder without weights (config only)";
  }
  return r;
}

InspectReport inspect_path(const std::string& path) {
  if (is_dir(path)) return inspect_hf_folder(path);
  if (!file_exists(path)) throw FormatError(path, "no such file or folder");
  if (ends_with(path, ".safetensors") || ends_with(path, ".safetensors.index.json")) return inspect_safetensors(path);
  return inspect_gguf(path);  // the scanner reports a non-GGUF file as such
}

}  // namespace smolq
