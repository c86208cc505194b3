#include "eval/eval_set.h"

#include <simdjson.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>

#include "formats/error.h"
#include "formats/mapped_file.h"

#ifndef SMOLQ_DEFAULT_EVAL_SET
#define SMOLQ_DEFAULT_EVAL_SET "testdata/evalset"
#endif

namespace smolq {
namespace fs = std::filesystem;
namespace {

constexpr const char* kManifestName = "evalset.json";
// Evaluation texts are small; a category of more than this is a mistake (a wrong folder).
constexpr uint64_t kMaxCategoryBytes = 256ull << 20;
constexpr int64_t kMinCtx = 16;
constexpr int64_t kMaxCtx = 1 << 20;

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

// The files a manifest path names: the file itself, or the regular files of the folder
// (not hidden, not recursive) in name order. Paths may not leave the set's folder.
std::vector<std::string> resolve_files(const std::string& manifest, const std::string& dir, const std::string& field,
                                       const std::string& rel) {
  if (rel.empty()) throw FormatError(manifest, field + ": empty path");
  const fs::path p = fs::path(rel);
  if (p.is_absolute()) throw FormatError(manifest, field + ": '" + rel + "' must be relative to the set's folder");
  for (const auto& part : p)
    if (part == "..") throw FormatError(manifest, field + ": '" + rel + "' leaves the set's folder");
  const fs::path full = fs::path(dir) / p;
  std::error_code ec;
  if (fs::is_regular_file(full, ec)) return {full.string()};
  if (!fs::is_directory(full, ec)) throw Error(full.string() + ": no such file or folder (" + field + " in " + manifest + ")");
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(full)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.' || !e.is_regular_file()) continue;
    files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw Error(full.string() + ": folder holds no text files (" + field + " in " + manifest + ")");
  return files;
}

int64_t get_int(const std::string& manifest, const std::string& field, simdjson::dom::element v) {
  int64_t n = 0;
  if (v.get(n)) throw FormatError(manifest, field + ": expected an integer");
  return n;
}

std::string get_string(const std::string& manifest, const std::string& field, simdjson::dom::element v) {
  std::string_view s;
  if (v.get(s)) throw FormatError(manifest, field + ": expected a string");
  return std::string(s);
}

EvalCategory read_category(const std::string& manifest, const std::string& dir, size_t index,
                           simdjson::dom::element item) {
  const std::string where = "categories[" + std::to_string(index) + "]";
  simdjson::dom::object obj;
  if (item.get(obj)) throw FormatError(manifest, where + ": expected an object");
  EvalCategory c;
  bool have_path = false;
  std::string calib;
  for (auto [key_view, v] : obj) {
    const std::string key(key_view);
    const std::string field = where + "." + key;
    if (key == "name") {
      c.name = get_string(manifest, field, v);
    } else if (key == "description") {
      c.description = get_string(manifest, field, v);
    } else if (key == "path") {
      c.path = get_string(manifest, field, v);
      have_path = true;
    } else if (key == "calib") {
      calib = get_string(manifest, field, v);
      if (calib.empty()) throw FormatError(manifest, field + ": empty path");
    } else if (key == "chat") {
      if (v.get(c.chat)) throw FormatError(manifest, field + ": expected true or false");
    } else if (key == "ctx") {
      c.n_ctx = get_int(manifest, field, v);
      if (c.n_ctx < kMinCtx || c.n_ctx > kMaxCtx)
        throw FormatError(manifest, field + ": " + std::to_string(c.n_ctx) + " is outside " + std::to_string(kMinCtx) +
                                        ".." + std::to_string(kMaxCtx));
    } else if (key == "chunks") {
      c.n_chunks = get_int(manifest, field, v);
      if (c.n_chunks < 1) throw FormatError(manifest, field + ": must be at least 1");
    } else {
      throw FormatError(manifest, field + ": unknown field (expected name, path, calib, chat, ctx, chunks, description)");
    }
  }
  if (c.name.empty()) throw FormatError(manifest, where + ": missing field \"name\"");
  if (!valid_name(c.name))
    throw FormatError(manifest, where + ".name: '" + c.name + "' must be 1-64 characters of A-Z a-z 0-9 _ - .");
  if (!have_path) throw FormatError(manifest, where + " (" + c.name + "): missing field \"path\"");
  c.files = resolve_files(manifest, dir, where + ".path", c.path);
  if (!calib.empty()) c.calib_files = resolve_files(manifest, dir, where + ".calib", calib);
  return c;
}

std::string join_files(const std::vector<std::string>& files, std::vector<std::string>* each = nullptr) {
  std::string text;
  uint64_t total = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    std::string t = read_text_file(files[i], kMaxCategoryBytes);
    total += t.size();
    if (total > kMaxCategoryBytes) throw Error(files[i] + ": the category's texts exceed 256 MiB");
    if (each) {
      each->push_back(std::move(t));
      continue;
    }
    if (i > 0) text += text.size() >= 2 && text.compare(text.size() - 2, 2, "\n\n") == 0 ? "" : text.back() == '\n' ? "\n" : "\n\n";
    text += t;
  }
  return text;
}

}  // namespace

std::string default_eval_set_dir() { return SMOLQ_DEFAULT_EVAL_SET; }

EvalSet read_eval_set(const std::string& dir_or_manifest) {
  EvalSet s;
  const std::string given = dir_or_manifest == "default" ? default_eval_set_dir() : dir_or_manifest;
  std::error_code ec;
  if (fs::is_directory(given, ec)) {
    s.dir = given;
    s.manifest = (fs::path(given) / kManifestName).string();
  } else if (fs::is_regular_file(given, ec)) {
    s.manifest = given;
    s.dir = fs::path(given).parent_path().string();
    if (s.dir.empty()) s.dir = ".";
  } else {
    throw Error(given + ": no such file or folder (--eval-set takes a folder holding " + kManifestName + ")");
  }
  if (!file_exists(s.manifest)) throw Error(s.manifest + ": no such file (an evaluation set needs its manifest)");
  const std::string json = read_text_file(s.manifest, 16u << 20);
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto err = parser.parse(json).get(root)) throw FormatError(s.manifest, std::string("not valid JSON: ") + simdjson::error_message(err));
  simdjson::dom::object obj;
  if (root.get(obj)) throw FormatError(s.manifest, "expected a JSON object with \"categories\"");
  bool have_categories = false;
  for (auto [key_view, v] : obj) {
    const std::string key(key_view);
    if (key == "name") {
      s.name = get_string(s.manifest, "name", v);
    } else if (key == "description" || key == "licence" || key == "license") {
      get_string(s.manifest, key, v);  // documentation only
    } else if (key == "categories") {
      simdjson::dom::array arr;
      if (v.get(arr)) throw FormatError(s.manifest, "categories: expected a list");
      size_t i = 0;
      for (auto item : arr) s.categories.push_back(read_category(s.manifest, s.dir, i++, item));
      have_categories = true;
    } else {
      throw FormatError(s.manifest, key + ": unknown field (expected name, description, categories)");
    }
  }
  if (!have_categories) throw FormatError(s.manifest, "missing field \"categories\"");
  if (s.categories.empty()) throw FormatError(s.manifest, "categories: the list is empty");
  std::set<std::string> seen;
  for (const auto& c : s.categories)
    if (!seen.insert(c.name).second) throw FormatError(s.manifest, "categories: the name '" + c.name + "' is used twice");
  if (s.name.empty()) s.name = fs::path(s.dir).filename().string();
  return s;
}

std::vector<int32_t> interleave_chunks(const std::vector<std::vector<int32_t>>& streams, int64_t n_ctx) {
  std::vector<int32_t> out;
  const size_t n = static_cast<size_t>(n_ctx);
  for (size_t k = 0;; ++k) {
    bool any = false;
    for (const auto& s : streams) {
      if ((k + 1) * n > s.size()) continue;
      out.insert(out.end(), s.begin() + static_cast<ptrdiff_t>(k * n), s.begin() + static_cast<ptrdiff_t>((k + 1) * n));
      any = true;
    }
    if (!any) return out;
  }
}

std::vector<ChatMessage> parse_chat_turns(const std::string& text) {
  std::vector<ChatMessage> turns;
  std::istringstream in(text);
  std::string turn;
  auto flush = [&] {
    // Trim blank lines around a turn: the separator's neighbours are not part of it.
    const size_t b = turn.find_first_not_of("\r\n");
    const size_t e = turn.find_last_not_of("\r\n");
    turns.push_back({turns.size() % 2 == 0 ? "user" : "assistant", b == std::string::npos ? "" : turn.substr(b, e - b + 1)});
    turn.clear();
  };
  for (std::string line; std::getline(in, line);) {
    std::string bare = line;
    if (!bare.empty() && bare.back() == '\r') bare.pop_back();
    if (bare == "---") {
      flush();
      continue;
    }
    turn += line + "\n";
  }
  flush();
  // A trailing separator leaves an empty last turn: drop it, keep the others as written.
  if (!turns.empty() && turns.back().content.empty()) turns.pop_back();
  return turns;
}

std::vector<std::vector<ChatMessage>> parse_chat_file(const std::string& text) {
  std::vector<std::vector<ChatMessage>> convs;
  std::istringstream in(text);
  std::string conv;
  auto flush = [&] {
    auto turns = parse_chat_turns(conv);
    if (!turns.empty() && !(turns.size() == 1 && turns[0].content.empty())) convs.push_back(std::move(turns));
    conv.clear();
  };
  for (std::string line; std::getline(in, line);) {
    std::string bare = line;
    if (!bare.empty() && bare.back() == '\r') bare.pop_back();
    if (bare == "===") {
      flush();
      continue;
    }
    conv += line + "\n";
  }
  flush();
  return convs;
}

CategoryTokens tokenize_category(const Model& model, const Tokenizer& tok, const std::string& chat_template,
                                 const EvalCategory& cat, CategoryText which) {
  const std::vector<std::string>& files = which == CategoryText::kEval ? cat.files : cat.calib_files;
  if (files.empty()) throw Error("category '" + cat.name + "' has no calibration text (\"calib\" in the manifest)");
  CategoryTokens t;
  t.add_bos = tok.add_bos();
  t.bos_id = tok.bos_id();
  t.n_ctx = cat.n_ctx;
  const uint64_t trained = model.config().n_ctx_train;
  if (trained > 0 && static_cast<uint64_t>(t.n_ctx) > trained) {
    t.n_ctx = static_cast<int64_t>(trained);
    t.note = "ctx " + std::to_string(cat.n_ctx) + " capped at the model's trained context " + std::to_string(trained);
  }
  if (!cat.chat) {
    // llama-perplexity's tokenization of its -f file: the whole text, special tokens as text.
    t.ids = tok.encode(join_files(files), /*add_special=*/true, /*parse_special=*/false);
    return t;
  }
  std::vector<std::string> texts;
  join_files(files, &texts);
  std::optional<ChatTemplate> tpl;
  std::string why = chat_template.empty() ? "the model has no chat template" : "";
  if (!chat_template.empty()) {
    try {
      tpl.emplace(chat_template);
    } catch (const TemplateError& e) {
      why = std::string("its chat template is outside the supported subset (") + e.what() + ")";
    }
  }
  const std::string bos = tok.bos_id() >= 0 ? tok.token_text(tok.bos_id()) : "";
  const std::string eos = tok.eos_id() >= 0 ? tok.token_text(tok.eos_id()) : "";
  std::string plain;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto convs = parse_chat_file(texts[i]);
    if (convs.empty()) throw FormatError(files[i], "a chat file holds no turns");
    for (const auto& turns : convs) {
      if (tpl) {
        // As HF's apply_chat_template(tokenize=True): the template places special tokens itself.
        const std::string rendered = tpl->apply(turns, /*add_generation_prompt=*/false, bos, eos);
        const auto ids = tok.encode(rendered, /*add_special=*/false, /*parse_special=*/true);
        t.ids.insert(t.ids.end(), ids.begin(), ids.end());
      } else {
        for (const auto& m : turns) plain += (plain.empty() ? "" : "\n\n") + m.content;
      }
    }
  }
  if (tpl) {
    t.templated = true;
  } else {
    t.ids = tok.encode(plain, /*add_special=*/true, /*parse_special=*/false);
    t.note += (t.note.empty() ? "" : "; ") + ("chat turns as plain text: " + why);
  }
  return t;
}

}  // namespace smolq
