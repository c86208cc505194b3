// Loading a Tokenizer from Hugging Face tokenizer.json (+ tokenizer_config.json) or from GGUF
// tokenizer metadata. Everything we do not implement exactly is refused with a FormatError
// naming the file, rather than tokenized differently from the reference.
#include <simdjson.h>

#include <filesystem>

#include "formats/error.h"
#include "formats/gguf.h"
#include "formats/mapped_file.h"
#include "text/tokenizer.h"
#include "text/tokenizer_impl.h"

namespace smolq {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;
using PreKind = detail::PreTokenizerKind;
using TokenType = Tokenizer::TokenType;

// The Llama-3 split pattern exactly as tokenizer.json spells it.
constexpr std::string_view kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

constexpr uint64_t kMaxJsonBytes = 256ull << 20;
// Token ids are indexes into dense tables (the vocabulary, holes padded), so an id bounds
// what loading allocates: 2^20 ids, the merge table's own limit (tokenizer_impl.h), are 4x
// the largest vocabulary in use (262,144) and keep a hostile id from sizing tables by it.
constexpr int64_t kMaxTokenId = detail::MergeTable::kMaxId;

// Small typed accessors over simdjson's DOM that throw FormatError(path) with the field name.
class Json {
 public:
  explicit Json(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }

  element parse(simdjson::dom::parser& parser, const simdjson::padded_string& text) const {
    element root;
    if (auto err = parser.parse(text).get(root))
      fail(std::string("invalid JSON: ") + simdjson::error_message(err));
    return root;
  }
  [[noreturn]] void fail(const std::string& msg) const { throw FormatError(path_, msg); }

  // Member `key` of `o`, or a null-typed/absent marker (returns false).
  static bool get(object o, std::string_view key, element& out) {
    return o[key].get(out) == simdjson::SUCCESS && !out.is_null();
  }
  object obj(element e, std::string_view what) const {
    object o;
    if (e.get(o) != simdjson::SUCCESS) fail(std::string(what) + " is not a JSON object");
    return o;
  }
  array arr(element e, std::string_view what) const {
    array a;
    if (e.get(a) != simdjson::SUCCESS) fail(std::string(what) + " is not a JSON array");
    return a;
  }
  std::string str(element e, std::string_view what) const {
    std::string_view s;
    if (e.get(s) != simdjson::SUCCESS) fail(std::string(what) + " is not a string");
    return std::string(s);
  }
  int64_t integer(element e, std::string_view what) const {
    int64_t i;
    if (e.get(i) != simdjson::SUCCESS) fail(std::string(what) + " is not an integer");
    return i;
  }
  // Optional members with defaults.
  bool flag(object o, std::string_view key, bool dflt) const {
    element e;
    if (!get(o, key, e)) return dflt;
    bool b;
    if (e.get(b) != simdjson::SUCCESS) fail("'" + std::string(key) + "' is not true or false");
    return b;
  }
  std::string opt_str(object o, std::string_view key) const {
    element e;
    return get(o, key, e) ? str(e, key) : std::string();
  }

 private:
  std::string path_;
};

std::string compact(element e) {
  std::string s = simdjson::to_string(e);
  return s.size() > 300 ? s.substr(0, 300) + "..." : s;
}

simdjson::padded_string load_json_text(const std::string& path) {
  if (!file_exists(path)) throw FormatError(path, "file not found");
  return simdjson::padded_string(read_text_file(path, kMaxJsonBytes));
}

// ByteLevel pre-tokenizer settings we can honour: no prefix space; `use_regex` as expected.
void check_byte_level(const Json& j, object o, bool want_regex, element whole) {
  if (j.flag(o, "add_prefix_space", true))
    j.fail("unsupported pre-tokenizer (ByteLevel with add_prefix_space): " + compact(whole));
  if (j.flag(o, "use_regex", true) != want_regex)
    j.fail("unsupported pre-tokenizer (ByteLevel use_regex=" + std::string(want_regex ? "false" : "true") +
           " here): " + compact(whole));
}

// Recognises the pre-tokenizer chains we implement (see tokenizer_pretok.h).
PreKind detect_pre_tokenizer(const Json& j, element pre) {
  const std::string unsupported = "unsupported pre-tokenizer: " + compact(pre);
  object top = j.obj(pre, "pre_tokenizer");
  std::vector<object> steps;
  if (j.opt_str(top, "type") == "Sequence") {
    element list;
    if (!Json::get(top, "pretokenizers", list)) j.fail(unsupported);
    for (element e : j.arr(list, "pretokenizers")) steps.push_back(j.obj(e, "pre-tokenizer step"));
  } else {
    steps.push_back(top);
  }
  std::vector<std::string> types;
  for (object s : steps) types.push_back(j.opt_str(s, "type"));

  if (types == std::vector<std::string>{"ByteLevel"}) {
    check_byte_level(j, steps[0], true, pre);
    return PreKind::kGpt2;
  }
  if (types == std::vector<std::string>{"Digits", "ByteLevel"}) {
    if (!j.flag(steps[0], "individual_digits", false)) j.fail(unsupported + " (Digits without individual_digits)");
    check_byte_level(j, steps[1], true, pre);
    return PreKind::kSmolLM;
  }
  if (types == std::vector<std::string>{"Split", "ByteLevel"}) {
    element pattern, regex;
    std::string re;
    if (Json::get(steps[0], "pattern", pattern) && Json::get(j.obj(pattern, "pattern"), "Regex", regex))
      re = j.str(regex, "pattern.Regex");
    if (re != kLlama3Pattern || j.opt_str(steps[0], "behavior") != "Isolated" || j.flag(steps[0], "invert", false))
      j.fail(unsupported + " (only the Llama-3 split pattern, isolated, is implemented)");
    check_byte_level(j, steps[1], false, pre);
    return PreKind::kLlama3;
  }
  j.fail(unsupported);
}

// The ids a TemplateProcessing `single` template puts before and after the text.
void read_template(const Json& j, object tp, Tokenizer::Impl& t) {
  element single_el, specials_el;
  if (!Json::get(tp, "single", single_el)) j.fail("TemplateProcessing without 'single'");
  object specials;
  const bool has_specials = Json::get(tp, "special_tokens", specials_el);
  if (has_specials) specials = j.obj(specials_el, "special_tokens");
  bool seen_text = false;
  for (element item : j.arr(single_el, "single")) {
    object io = j.obj(item, "template item");
    element st;
    if (Json::get(io, "Sequence", st)) {
      if (seen_text) j.fail("TemplateProcessing with the text twice");
      seen_text = true;
      continue;
    }
    if (!Json::get(io, "SpecialToken", st)) j.fail("unsupported template item: " + compact(item));
    const std::string name = j.opt_str(j.obj(st, "SpecialToken"), "id");
    element entry, ids_el;
    if (!has_specials || !Json::get(specials, name, entry) || !Json::get(j.obj(entry, "special token"), "ids", ids_el))
      j.fail("template token '" + name + "' missing from special_tokens");
    std::vector<int32_t> ids;
    for (element id : j.arr(ids_el, "ids")) ids.push_back(static_cast<int32_t>(j.integer(id, "template id")));
    if (ids.size() != 1 || (seen_text ? t.add_eos : t.add_bos))
      j.fail("unsupported post-processor template (more than one token before or after the text)");
    (seen_text ? t.add_eos : t.add_bos) = true;
    (seen_text ? t.eos : t.bos) = ids[0];
  }
}

void read_post_processor(const Json& j, element pp, Tokenizer::Impl& t) {
  object o = j.obj(pp, "post_processor");
  const std::string type = j.opt_str(o, "type");
  if (type == "ByteLevel") return;  // only adjusts offsets
  if (type == "TemplateProcessing") return read_template(j, o, t);
  if (type == "Sequence") {
    element list;
    if (!Json::get(o, "processors", list)) j.fail("post_processor Sequence without processors");
    for (element e : j.arr(list, "processors")) read_post_processor(j, e, t);
    return;
  }
  j.fail("unsupported post_processor: " + compact(pp));
}

// bos/eos/unk/pad from tokenizer_config.json: each a string, {"content": ...} or null.
void read_tokenizer_config(const std::string& path, Tokenizer::Impl& t) {
  Json j(path);
  simdjson::dom::parser parser;
  const simdjson::padded_string text = load_json_text(path);
  object root = j.obj(j.parse(parser, text), "tokenizer_config.json");
  std::unordered_map<std::string, int32_t> by_content;
  for (const auto& a : t.added) by_content.emplace(a.content, a.id);
  auto resolve = [&](const char* key, int32_t& slot) {
    element e;
    if (!Json::get(root, key, e)) return;
    std::string content;
    object o;
    if (e.get(o) == simdjson::SUCCESS) content = j.opt_str(o, "content");
    else content = j.str(e, key);
    int32_t id = -1;
    if (auto it = by_content.find(content); it != by_content.end()) id = it->second;
    else if (auto it2 = t.ids.find(content); it2 != t.ids.end()) id = it2->second;
    if (id < 0) j.fail(std::string(key) + " '" + content + "' is not in the vocabulary");
    if (slot >= 0 && slot != id)
      j.fail(std::string(key) + " '" + content + "' (id " + std::to_string(id) +
             ") differs from the token the post-processor adds (id " + std::to_string(slot) + ")");
    slot = id;
  };
  resolve("bos_token", t.bos);
  resolve("eos_token", t.eos);
  resolve("unk_token", t.unk);
  resolve("pad_token", t.pad);
}

}  // namespace

Tokenizer Tokenizer::from_hf_json(const std::string& tokenizer_json_path, const std::string& tokenizer_config_path) {
  auto impl = std::make_shared<Impl>();
  Impl& t = *impl;
  t.source = tokenizer_json_path;
  Json j(tokenizer_json_path);
  simdjson::dom::parser parser;
  const simdjson::padded_string text = load_json_text(tokenizer_json_path);
  object root = j.obj(j.parse(parser, text), "tokenizer.json");

  element e;
  if (Json::get(root, "normalizer", e)) j.fail("unsupported normalizer: " + compact(e));
  if (!Json::get(root, "model", e)) j.fail("no 'model'");
  object model = j.obj(e, "model");
  const std::string type = j.opt_str(model, "type");
  if (type != "BPE" && !(type.empty() && Json::get(model, "merges", e)))
    j.fail("unsupported tokenizer model '" + (type.empty() ? std::string("?") : type) + "' (only byte-level BPE)");
  if (Json::get(model, "dropout", e)) {
    double d = 0;
    if (e.get(d) != simdjson::SUCCESS || d != 0) j.fail("BPE dropout is not supported");
  }
  if (!j.opt_str(model, "continuing_subword_prefix").empty() || !j.opt_str(model, "end_of_word_suffix").empty())
    j.fail("BPE with continuing_subword_prefix / end_of_word_suffix is not supported");
  if (j.flag(model, "byte_fallback", false)) j.fail("BPE byte_fallback is not supported (byte-level BPE only)");
  t.ignore_merges = j.flag(model, "ignore_merges", false);

  if (!Json::get(root, "pre_tokenizer", e)) j.fail("no pre_tokenizer (byte-level BPE needs one)");
  t.pre = detect_pre_tokenizer(j, e);
  if (!Json::get(root, "decoder", e) || j.opt_str(j.obj(e, "decoder"), "type") != "ByteLevel")
    j.fail("unsupported decoder (only ByteLevel): " + (Json::get(root, "decoder", e) ? compact(e) : "null"));
  if (Json::get(root, "post_processor", e)) read_post_processor(j, e, t);

  // Vocabulary: model.vocab plus added_tokens, by id; holes become unused "[PAD<id>]" tokens.
  if (!Json::get(model, "vocab", e)) j.fail("model has no vocab");
  std::vector<std::pair<std::string_view, int64_t>> vocab;
  int64_t max_id = -1;
  for (auto [key, value] : j.obj(e, "model.vocab")) {
    const int64_t id = j.integer(value, "vocab id");
    if (id < 0 || id > kMaxTokenId) j.fail("vocab id " + std::to_string(id) + " out of range (0.." + std::to_string(kMaxTokenId) + ")");
    vocab.emplace_back(key, id);
    max_id = std::max(max_id, id);
  }
  if (Json::get(root, "added_tokens", e)) {
    for (element a : j.arr(e, "added_tokens")) {
      object o = j.obj(a, "added token");
      element id_el, content_el;
      if (!Json::get(o, "id", id_el) || !Json::get(o, "content", content_el)) j.fail("added token without id/content");
      detail::AddedToken tok;
      const int64_t id = j.integer(id_el, "added token id");
      if (id < 0 || id > kMaxTokenId)
        j.fail("added token id " + std::to_string(id) + " out of range (0.." + std::to_string(kMaxTokenId) + ")");
      tok.id = static_cast<int32_t>(id);
      tok.content = j.str(content_el, "added token content");
      if (j.flag(o, "single_word", false))
        j.fail("added token '" + tok.content + "' has single_word=true, which is not supported");
      tok.special = j.flag(o, "special", false);
      tok.lstrip = j.flag(o, "lstrip", false);
      tok.rstrip = j.flag(o, "rstrip", false);
      tok.normalized = j.flag(o, "normalized", !tok.special);
      max_id = std::max(max_id, id);
      t.added.push_back(std::move(tok));
    }
  }
  t.tokens.assign(static_cast<size_t>(max_id + 1), std::string());
  t.types.assign(t.tokens.size(), TokenType::kUnused);
  for (const auto& [text_view, id] : vocab) {
    t.tokens[id] = std::string(text_view);
    t.types[id] = TokenType::kNormal;
  }
  for (const auto& a : t.added) {
    t.tokens[a.id] = a.content;
    t.types[a.id] = a.special ? TokenType::kControl : TokenType::kUserDefined;
  }
  for (size_t id = 0; id < t.tokens.size(); ++id)
    if (t.types[id] == TokenType::kUnused) t.tokens[id] = "[PAD" + std::to_string(id) + "]";

  // Merges: "left right" strings (the older format) or [left, right] pairs.
  if (!Json::get(model, "merges", e)) j.fail("model has no merges");
  for (element m : j.arr(e, "model.merges")) {
    std::string_view s;
    array pair;
    if (m.get(s) == simdjson::SUCCESS) {
      const size_t sp = s.find(' ', 1);
      if (sp == std::string_view::npos || s.find(' ', sp + 1) != std::string_view::npos)
        j.fail("malformed merge '" + std::string(s) + "'");
      t.merge_texts.emplace_back(std::string(s.substr(0, sp)), std::string(s.substr(sp + 1)));
    } else if (m.get(pair) == simdjson::SUCCESS && pair.size() == 2) {
      t.merge_texts.emplace_back(j.str(pair.at(0), "merge"), j.str(pair.at(1), "merge"));
    } else {
      j.fail("malformed merge " + compact(m));
    }
  }

  t.finish();
  std::string config = tokenizer_config_path;
  if (config.empty()) {
    const auto sibling = std::filesystem::path(tokenizer_json_path).parent_path() / "tokenizer_config.json";
    if (file_exists(sibling.string())) config = sibling.string();
  }
  if (!config.empty()) read_tokenizer_config(config, t);
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_gguf(const GgufMetadata& meta, const std::string& source) {
  auto impl = std::make_shared<Impl>();
  Impl& t = *impl;
  t.source = source;
  auto fail = [&](const std::string& msg) { throw FormatError(source, msg); };
  auto need = [&](std::string_view key) -> const GgufValue& {
    const GgufValue* v = meta.find(key);
    if (!v) throw FormatError(source, "missing " + std::string(key));
    return *v;
  };
  // GgufValue accessors throw a plain Error on a type mismatch; name the key and file.
  auto typed = [&](std::string_view key, auto&& get) {
    try {
      return get(need(key));
    } catch (const FormatError&) {
      throw;
    } catch (const Error& err) {
      throw FormatError(source, std::string(key) + ": " + err.what());
    }
  };
  auto strings = [&](std::string_view key) {
    return typed(key, [&](const GgufValue& v) {
      std::vector<std::string> out;
      for (const GgufValue& item : v.as_array().items) out.push_back(item.as_string());
      return out;
    });
  };

  const std::string model = typed("tokenizer.ggml.model", [](const GgufValue& v) { return v.as_string(); });
  if (model != "gpt2") fail("unsupported tokenizer model '" + model + "' (only byte-level BPE 'gpt2')");
  if (!meta.has("tokenizer.ggml.pre")) fail("missing tokenizer.ggml.pre (pre-tokenizer name)");
  const std::string pre = typed("tokenizer.ggml.pre", [](const GgufValue& v) { return v.as_string(); });
  if (pre == "smollm") {
    t.pre = PreKind::kSmolLM;
  } else if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") {
    t.pre = PreKind::kLlama3;
    t.ignore_merges = true;  // llama.cpp's rule for this pre-tokenizer (Llama 3's tokenizer.json has it)
    t.add_bos = true;        // llama.cpp's default for it; tokenizer.ggml.add_bos_token overrides
  } else if (pre == "gpt-2") {
    t.pre = PreKind::kGpt2;
  } else {
    fail("unsupported pre-tokenizer '" + pre + "' (implemented: smollm, llama-bpe, gpt-2)");
  }

  t.tokens = strings("tokenizer.ggml.tokens");
  if (meta.has("tokenizer.ggml.token_type")) {
    typed("tokenizer.ggml.token_type", [&](const GgufValue& v) {
      for (const GgufValue& item : v.as_array().items) {
        const int64_t ty = item.as_i64();
        if (ty < 1 || ty > 6) throw FormatError(source, "token type " + std::to_string(ty) + " is not 1..6");
        t.types.push_back(static_cast<TokenType>(ty));
      }
      return 0;
    });
  } else {
    t.types.assign(t.tokens.size(), TokenType::kNormal);
  }
  if (t.types.size() != t.tokens.size())
    fail("tokenizer.ggml.token_type has " + std::to_string(t.types.size()) + " entries for " +
         std::to_string(t.tokens.size()) + " tokens");
  for (const std::string& m : strings("tokenizer.ggml.merges")) {
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) fail("malformed merge '" + m + "'");
    t.merge_texts.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  // Control (and unknown) tokens are special; user-defined ones are always matched. GGUF has
  // no lstrip/rstrip/normalized flags: llama.cpp matches all of them on the raw text.
  for (size_t id = 0; id < t.tokens.size(); ++id) {
    const TokenType ty = t.types[id];
    if (ty != TokenType::kControl && ty != TokenType::kUnknown && ty != TokenType::kUserDefined) continue;
    detail::AddedToken a;
    a.id = static_cast<int32_t>(id);
    a.content = t.tokens[id];
    a.special = ty != TokenType::kUserDefined;
    t.added.push_back(std::move(a));
  }
  auto opt_id = [&](std::string_view key, int32_t& slot) {
    if (!meta.has(key)) return;
    const uint64_t id = typed(key, [](const GgufValue& v) { return v.as_u64(); });
    if (id >= t.tokens.size()) fail(std::string(key) + " = " + std::to_string(id) + " is outside the vocabulary");
    slot = static_cast<int32_t>(id);
  };
  opt_id("tokenizer.ggml.bos_token_id", t.bos);
  opt_id("tokenizer.ggml.eos_token_id", t.eos);
  opt_id("tokenizer.ggml.unknown_token_id", t.unk);
  opt_id("tokenizer.ggml.padding_token_id", t.pad);
  auto opt_flag = [&](std::string_view key, bool& slot) {
    if (meta.has(key)) slot = typed(key, [](const GgufValue& v) { return v.as_bool(); });
  };
  opt_flag("tokenizer.ggml.add_bos_token", t.add_bos);
  opt_flag("tokenizer.ggml.add_eos_token", t.add_eos);
  if (t.add_bos && t.bos < 0) t.add_bos = false;  // nothing to add: llama.cpp adds nothing either
  if (t.add_eos && t.eos < 0) t.add_eos = false;
  t.finish();
  return Tokenizer(std::move(impl));
}

}  // namespace smolq
