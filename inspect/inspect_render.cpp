#include "inspect/inspect_render.h"

#include <optional>

#include "formats/json_writer.h"
#include "inspect/text_format.h"

namespace smolq {
namespace {

std::string shape_str(const std::vector<uint64_t>& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) o += (i ? " x " : "") + std::to_string(s[i]);
  return o;
}

std::string kind_name(SourceKind k) {
  switch (k) {
    case SourceKind::kGguf: return "gguf";
    case SourceKind::kSafetensors: return "safetensors";
    case SourceKind::kHfFolder: return "hf-folder";
  }
  return "?";
}

std::string offset_str(uint64_t off) {
  if (off == UINT64_MAX) return "";
  char b[32];
  std::snprintf(b, sizeof b, "@0x%llx ", static_cast<unsigned long long>(off));
  return b;
}

void config_text(const ModelConfig& c, std::string& o) {
  TextTable t{{"hyperparameter", "value"}, {}, {false, true}};
  auto row = [&](const std::string& k, const std::string& v) { t.rows.push_back({k, v}); };
  row("architecture", c.arch + (c.hf_architecture.empty() ? "" : " (" + c.hf_architecture + ")"));
  row("vocab size", std::to_string(c.n_vocab));
  row("context length (trained)", std::to_string(c.n_ctx_train));
  row("embedding width", std::to_string(c.n_embd));
  row("layers", std::to_string(c.n_layer));
  row("attention heads / KV heads", std::to_string(c.n_head) + " / " + std::to_string(c.n_head_kv));
  row("head dim", std::to_string(c.head_dim));
  row("feed-forward width", std::to_string(c.n_ff));
  row("rope theta", fixed(c.rope_theta, 0));
  if (!c.rope_scaling.type.empty()) row("rope scaling", c.rope_scaling.type + " x" + fixed(c.rope_scaling.factor, 2));
  char eps[32];
  std::snprintf(eps, sizeof eps, "%g", c.rms_eps);
  row("rms norm eps", eps);
  size_t nope = 0;
  for (bool b : c.use_rope) nope += b ? 0 : 1;
  if (nope) row("layers without RoPE", std::to_string(nope));
  if (!c.torch_dtype.empty()) row("torch dtype", c.torch_dtype);
  o += t.render(false);
}

void tokenizer_text(const TokenizerSummary& t, std::string& o) {
  o += "model " + (t.model.empty() ? "?" : t.model) + ", pre-tokenizer " + (t.pre.empty() ? "?" : t.pre) + ", " +
       with_commas(t.vocab_size) + " tokens, " + with_commas(t.n_merges) + " merges, " + std::to_string(t.n_control) +
       " special/control\n";
  for (const auto& s : t.special)
    o += "  " + s.role + ": " + (s.id ? std::to_string(*s.id) : "?") + (s.text.empty() ? "" : " '" + s.text + "'") + "\n";
  if (t.add_bos) o += std::string("  add bos: ") + (*t.add_bos ? "yes" : "no") + "\n";
  if (t.add_eos) o += std::string("  add eos: ") + (*t.add_eos ? "yes" : "no") + "\n";
  o += "  chat template: " + (t.has_chat_template ? "yes (" + with_commas(t.chat_template_chars) + " chars)" : "no") + "\n";
}

TextTable tensor_table(const InspectReport& r) {
  TextTable t{{"#", "name", "shape", "type", "bytes", "bpw"}, {}, {true, false, false, false, true, true}};
  for (size_t i = 0; i < r.tensors.size(); ++i) {
    const auto& x = r.tensors[i];
    t.rows.push_back({std::to_string(i), x.name, shape_str(x.shape), x.type,
                      x.size_known ? with_commas(x.n_bytes) : "?", x.size_known ? fixed(x.bpw(), 3) : "?"});
  }
  return t;
}

TextTable type_table(const InspectReport& r) {
  TextTable t{{"type", "tensors", "parameters", "bytes", "share of bytes", "bpw"}, {}, {false, true, true, true, true, true}};
  const double total = static_cast<double>(r.tensor_bytes());
  for (const auto& x : totals_by_type(r.tensors)) {
    const double bpw = x.n_elements ? 8.0 * static_cast<double>(x.n_bytes) / static_cast<double>(x.n_elements) : 0.0;
    t.rows.push_back({x.type, std::to_string(x.n_tensors), with_commas(x.n_elements), with_commas(x.n_bytes),
                      total > 0 ? fixed(100.0 * static_cast<double>(x.n_bytes) / total, 1) + "%" : "-", fixed(bpw, 3)});
  }
  return t;
}

TextTable layer_table(const InspectReport& r) {
  TextTable t{{"layer", "tensors", "parameters", "bytes", "bpw", "types"}, {}, {false, true, true, true, true, false}};
  for (const auto& x : totals_by_layer(r.tensors))
    t.rows.push_back({x.layer ? std::to_string(*x.layer) : "(non-block)", std::to_string(x.n_tensors),
                      with_commas(x.n_elements), with_commas(x.n_bytes), fixed(x.bpw(), 3), x.types});
  return t;
}

void metadata_json(const GgufValue& v, JsonWriter& j, size_t max_items) {
  switch (v.type) {
    case GgufType::STRING: j.value(v.as_string()); return;
    case GgufType::BOOL: j.value(v.as_bool()); return;
    case GgufType::FLOAT32: case GgufType::FLOAT64: j.value(v.as_f64(), 9); return;
    case GgufType::ARRAY: {
      const auto& a = v.as_array();
      j.begin_object();
      j.field("array_of", gguf_type_name(a.elem_type));
      j.field("count", static_cast<uint64_t>(a.items.size()));
      j.key("first").begin_array();
      for (size_t i = 0; i < a.items.size() && i < max_items; ++i) metadata_json(a.items[i], j, max_items);
      j.end_array();
      j.end_object();
      return;
    }
    default:
      if (std::holds_alternative<int64_t>(v.data)) j.value(v.as_i64());
      else j.value(v.as_u64());
  }
}

// One line for a file made with `--optimize` (smolq.optimize.*, docs/optimize.md).
std::optional<std::string> optimize_line(const GgufMetadata& m) {
  const auto method = m.opt_string("smolq.optimize.method");
  if (!method) return std::nullopt;
  auto str = [&](const char* k) { return m.opt_string(std::string("smolq.optimize.") + k).value_or("?"); };
  auto num = [&](const char* k) {
    const auto v = m.opt_u64(std::string("smolq.optimize.") + k);
    return v ? std::to_string(*v) : std::string("?");
  };
  const auto damp = m.opt_f64("smolq.optimize.damp");
  return "optimised: " + *method + " on " + str("calib.file") + " (xxh3 " + str("calib.xxh3") + "), " + num("calib.chunks") +
         " x " + num("calib.ctx") + " tokens, " + str("inputs") + " inputs, damp " + (damp ? fixed(*damp, 4) : "?") +
         ", order " + str("order") + ", importance " + str("importance") + "\n";
}

}  // namespace

std::string render_inspect_text(const InspectReport& r, const InspectView& v) {
  std::string o;
  const bool all = !v.only_tensors && !v.only_layers;
  if (all) {
    o += r.path + "\n";
    o += "format: " + r.format_line + "\n";
    o += "size: " + with_commas(r.file_bytes) + " bytes (" + human_bytes(r.file_bytes) + ")";
    if (!r.tensors.empty())
      o += ", " + with_commas(r.n_params()) + " parameters (" + human_count(r.n_params()) + ")";
    o += "\n";
    if (!r.tensors.empty())
      o += "bits per weight: " + fixed(r.effective_bpw(), 3) + " effective (tensor data), " + fixed(r.file_bpw(), 3) +
           " whole file\n";
    if (auto how = optimize_line(r.metadata)) o += *how;
    if (r.config) {
      o += "\n## architecture\n";
      config_text(*r.config, o);
    }
    if (r.tokenizer) {
      o += "\n## tokenizer\n";
      tokenizer_text(*r.tokenizer, o);
    }
    if (r.metadata.size()) {
      o += "\n## metadata (" + std::to_string(r.metadata.size()) + " keys)\n";
      TextTable t{{"key", "type", "value"}, {}, {}};
      for (const auto& [k, val] : r.metadata.entries()) {
        std::string type(gguf_type_name(val.type));
        if (val.type == GgufType::ARRAY) type += "[" + std::string(gguf_type_name(val.as_array().elem_type)) + "]";
        std::string shown = val.to_display(v.max_array_items);
        for (auto& ch : shown)
          if (ch == '\n') ch = ' ';
        t.rows.push_back({k, type, shown});
      }
      o += t.render(false);
    }
  }
  if (all || v.only_tensors) {
    if (!r.tensors.empty()) {
      o += (o.empty() ? "" : "\n") + std::string("## tensors (") + std::to_string(r.tensors.size()) + ")\n";
      o += tensor_table(r).render(false);
      o += "\n## totals by type\n";
      o += type_table(r).render(false);
    }
  }
  if (v.only_layers && !r.tensors.empty()) {
    o += (o.empty() ? "" : "\n") + std::string("## bits per weight by layer\n");
    o += layer_table(r).render(false);
  }
  if (all) {
    o += "\n## integrity\n";
    if (r.findings.empty()) o += "no problems found\n";
    for (const auto& f : r.findings)
      o += std::string(severity_name(f.severity)) + ": " + offset_str(f.offset) + f.message + "\n";
  }
  return o;
}

std::string render_inspect_json(const InspectReport& r, const InspectView& v) {
  JsonWriter j;
  j.begin_object();
  j.field("path", r.path);
  j.field("kind", kind_name(r.kind));
  j.field("format", r.format_line);
  j.field("file_bytes", r.file_bytes);
  j.field("tensor_bytes", r.tensor_bytes());
  j.field("parameters", r.n_params());
  j.key("effective_bpw").value(r.effective_bpw(), 6);
  j.key("file_bpw").value(r.file_bpw(), 6);
  if (r.config) {
    const auto& c = *r.config;
    j.key("architecture").begin_object();
    j.field("arch", c.arch);
    j.field("n_vocab", c.n_vocab).field("n_ctx_train", c.n_ctx_train).field("n_embd", c.n_embd);
    j.field("n_layer", c.n_layer).field("n_head", c.n_head).field("n_head_kv", c.n_head_kv);
    j.field("head_dim", c.head_dim).field("n_ff", c.n_ff);
    j.key("rope_theta").value(c.rope_theta, 9);
    j.key("rms_eps").value(c.rms_eps, 9);
    j.field("tied_embeddings", c.tied_embeddings);
    j.end_object();
  }
  if (r.tokenizer) {
    const auto& t = *r.tokenizer;
    j.key("tokenizer").begin_object();
    j.field("model", t.model).field("pre", t.pre).field("vocab_size", t.vocab_size).field("merges", t.n_merges);
    j.field("control_tokens", t.n_control);
    j.key("special").begin_array();
    for (const auto& s : t.special) {
      j.begin_object().field("role", s.role);
      j.key("id");
      if (s.id) j.value(*s.id); else j.null();
      j.field("text", s.text).end_object();
    }
    j.end_array();
    j.field("chat_template", t.has_chat_template);
    j.field("chat_template_chars", t.chat_template_chars);
    j.end_object();
  }
  j.key("metadata").begin_object();
  for (const auto& [k, val] : r.metadata.entries()) {
    j.key(k);
    metadata_json(val, j, v.max_array_items);
  }
  j.end_object();
  j.key("tensors").begin_array();
  for (const auto& t : r.tensors) {
    j.begin_object().field("name", t.name);
    j.key("shape").begin_array();
    for (uint64_t d : t.shape) j.value(d);
    j.end_array();
    j.field("type", t.type).field("elements", t.n_elements);
    j.key("bytes");
    if (t.size_known) j.value(t.n_bytes); else j.null();
    j.key("bpw").value(t.bpw(), 6);
    j.end_object();
  }
  j.end_array();
  j.key("by_type").begin_array();
  for (const auto& t : totals_by_type(r.tensors))
    j.begin_object().field("type", t.type).field("tensors", t.n_tensors).field("elements", t.n_elements).field("bytes", t.n_bytes).end_object();
  j.end_array();
  j.key("by_layer").begin_array();
  for (const auto& l : totals_by_layer(r.tensors)) {
    j.begin_object().key("layer");
    if (l.layer) j.value(*l.layer); else j.null();
    j.field("elements", l.n_elements).field("bytes", l.n_bytes);
    j.key("bpw").value(l.bpw(), 6);
    j.field("types", l.types).end_object();
  }
  j.end_array();
  j.key("findings").begin_array();
  for (const auto& f : r.findings) {
    j.begin_object().field("severity", severity_name(f.severity));
    j.key("offset");
    if (f.offset == UINT64_MAX) j.null(); else j.value(f.offset);
    j.field("message", f.message).end_object();
  }
  j.end_array();
  j.end_object();
  return j.str() + "\n";
}

}  // namespace smolq
