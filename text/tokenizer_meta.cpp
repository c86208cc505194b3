#include "text/tokenizer_meta.h"

#include <simdjson.h>

#include <map>

#include "formats/error.h"
#include "formats/mapped_file.h"
#include "formats/sha256.h"
#include "text/tokenizer.h"

namespace smolq {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

// llama.cpp's probe hashes (sha256 of str(token ids) for the probe text) for the
// pre-tokenizers of the models we support, and the names its tokenizer implements.
struct KnownPre {
  const char* hash;
  const char* name;
};
constexpr KnownPre kKnownPre[] = {
    {"855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249", "smollm"},     // SmolLM / SmolLM2
    {"0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5", "llama-bpe"},  // Llama 3 (SmolLM3)
    {"3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454", "gpt-2"},      // GPT-2
};
// Names llama.cpp accepts that we can also vouch for through --pre-tokenizer.
constexpr const char* kOverridable[] = {"smollm", "llama-bpe", "gpt-2", "default"};

std::string read_json_text(const std::string& path) { return read_text_file(path, 256u << 20); }

element parse_or_throw(simdjson::dom::parser& p, const std::string& text, const std::string& path) {
  element root;
  if (auto err = p.parse(text).get(root)) throw FormatError(path, std::string("invalid JSON: ") + simdjson::error_message(err));
  return root;
}

// The string at `e`, or "" when it is missing or not a string. Takes the lookup's result
// (not an element) so a missing field is a "" here rather than a simdjson_error thrown by
// the implicit conversion.
std::string sv(simdjson::simdjson_result<element> e) {
  std::string_view s;
  return e.get(s) == simdjson::SUCCESS ? std::string(s) : std::string();
}
std::string sv(element e) { return sv(simdjson::simdjson_result<element>(std::move(e))); }

bool looks_special(const std::string& t) {
  auto starts = [&](std::string_view p) { return t.rfind(p, 0) == 0; };
  auto ends = [&](std::string_view s) { return t.size() >= s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0; };
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (starts("<|") && ends("|>")) return true;
  if (starts("<\xef\xbd\x9c") && ends("\xef\xbd\x9c>")) return true;  // fullwidth bars
  return starts("<unused") && ends(">");
}

// The pre-tokenizer of a tokenizer.json, by the one recogniser the project has: our tokenizer
// loads the file (text/tokenizer_load.cpp recognises the pre-tokenizer chains we implement and
// refuses the others), then llama.cpp's probe hash of its ids names a known model's
// pre-tokenizer; an unknown hash falls back to the recognised structure.
void identify_pre_tokenizer(const std::string& tj_path, HfTokenizerInfo& info) {
  std::optional<Tokenizer> tok;
  std::string why;
  try {
    tok = Tokenizer::from_hf_json(tj_path);
  } catch (const Error& e) {
    why = e.what();
  }
  if (!tok)
    throw FormatError(tj_path, "unknown BPE pre-tokenizer (" + why + "); if you know which one llama.cpp should use, "
                               "pass --pre-tokenizer smollm|llama-bpe|gpt-2");
  const std::string h = pre_tokenizer_probe_hash(*tok);
  for (const auto& k : kKnownPre)
    if (h == k.hash) {
      info.pre = k.name;
      info.pre_detected_by = "probe hash";
      return;
    }
  info.pre = std::string(tok->pre_name());
  info.pre_detected_by = "pre-tokenizer structure";
}

}  // namespace

const std::string& pre_tokenizer_probe_text() {
  // The probe string of llama.cpp's converter (whitespace runs, emoji with ZWJ, digit runs,
  // Khmer, CJK, Cyrillic, quotes and contractions).
  static const std::string kText =
      "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\xf0\x9f\x9a\x80 (normal) \xf0\x9f\x98\xb6\xe2\x80\x8d"
      "\xf0\x9f\x8c\xab\xef\xb8\x8f (multiple emojis concatenated) \xe2\x9c\x85 \xf0\x9f\xa6\x99\xf0\x9f\xa6\x99 3 33 333 "
      "3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
      "\xe1\x9e\x80\xe1\x9e\xb6\xe1\x9e\x93\xe1\x9f\x8b\xe1\x9e\x8f\xe1\x9f\x82\xe1\x9e\x96\xe1\x9e\xb7\xe1\x9e\x9f"
      "\xe1\x9f\x81\xe1\x9e\x9f\xe1\x9e\xa2\xe1\x9e\xb6\xe1\x9e\x85\xf0\x9f\x98\x81 ?\xe6\x88\x91\xe6\x83\xb3\xe5\x9c\xa8"
      "apple\xe5\xb7\xa5\xe4\xbd\x9c" "1314151\xe5\xa4\xa9\xef\xbd\x9e ------======= "
      "\xd0\xbd\xd0\xb5\xd1\x89\xd0\xbe \xd0\xbd\xd0\xb0 \xd0\x91\xd1\x8a\xd0\xbb\xd0\xb3\xd0\xb0\xd1\x80\xd1\x81\xd0\xba"
      "\xd0\xb8 ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll "
      "make it, 'D you like some tea? We'Ve a'lL";
  return kText;
}

std::string pre_tokenizer_probe_hash(const Tokenizer& tok) {
  const std::vector<int32_t> ids = tok.encode(pre_tokenizer_probe_text(), /*add_special=*/true);
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return sha256_hex(s + "]");
}

namespace {

// Token texts and kinds by id (BPE vocab plus added tokens), padded to the config's vocab size;
// returns the added tokens' ids by content.
std::map<std::string, int64_t> read_vocab(element model, element tj, const std::string& tj_path, const ModelConfig& cfg,
                                          HfTokenizerInfo& info) {
  object vocab;
  if (model["vocab"].get(vocab) != simdjson::SUCCESS) throw FormatError(tj_path, "missing model.vocab");
  std::map<int64_t, std::string> by_id;
  for (auto [k, v] : vocab) {
    int64_t id;
    if (v.get(id) != simdjson::SUCCESS || id < 0) throw FormatError(tj_path, "vocab id of '" + std::string(k) + "' is not a non-negative integer");
    by_id[id] = std::string(k);
  }
  struct Added {
    std::string content;
    bool special;
  };
  std::map<int64_t, Added> added;
  std::map<std::string, int64_t> added_by_content;
  array added_arr;
  if (tj["added_tokens"].get(added_arr) == simdjson::SUCCESS) {
    for (element a : added_arr) {
      int64_t id;
      if (a["id"].get(id) != simdjson::SUCCESS || id < 0) throw FormatError(tj_path, "added token without a valid id");
      bool special = false;
      if (a["special"].get(special) != simdjson::SUCCESS) special = false;
      Added ad{sv(a["content"]), special};
      by_id[id] = ad.content;
      added_by_content[ad.content] = id;
      added[id] = std::move(ad);
    }
  }
  if (!by_id.empty() && static_cast<uint64_t>(by_id.rbegin()->first) >= cfg.n_vocab)
    throw FormatError(tj_path, "token id " + std::to_string(by_id.rbegin()->first) + " is outside the model's vocab_size " +
                                   std::to_string(cfg.n_vocab) + " (config.json)");
  info.tokens.resize(cfg.n_vocab);
  info.token_types.resize(cfg.n_vocab);
  for (uint64_t i = 0; i < cfg.n_vocab; ++i) {
    auto it = by_id.find(static_cast<int64_t>(i));
    if (it == by_id.end()) {
      info.tokens[i] = "[PAD" + std::to_string(i) + "]";
      info.token_types[i] = static_cast<int32_t>(TokenType::kUnused);
      continue;
    }
    info.tokens[i] = it->second;
    auto ad = added.find(static_cast<int64_t>(i));
    if (ad == added.end()) {
      info.token_types[i] = static_cast<int32_t>(TokenType::kNormal);
    } else if (ad->second.special || looks_special(ad->second.content)) {
      info.token_types[i] = static_cast<int32_t>(TokenType::kControl);
    } else {
      info.token_types[i] = static_cast<int32_t>(TokenType::kUserDefined);
    }
  }
  return added_by_content;
}

void read_merges(element model, const std::string& tj_path, HfTokenizerInfo& info) {
  array merges;
  if (model["merges"].get(merges) != simdjson::SUCCESS) throw FormatError(tj_path, "missing model.merges");
  for (element m : merges) {
    std::string_view s;
    array pair;
    if (m.get(s) == simdjson::SUCCESS) {
      info.merges.emplace_back(s);
    } else if (m.get(pair) == simdjson::SUCCESS && pair.size() == 2) {
      info.merges.push_back(sv(pair.at(0)) + " " + sv(pair.at(1)));
    } else {
      throw FormatError(tj_path, "merges entries must be \"a b\" strings or [a, b] pairs");
    }
  }
}

// add_bos / add_eos from the post-processor template (tokenizer_config may override them).
void read_post_processor(element tj, HfTokenizerInfo& info) {
  element post;
  if (tj["post_processor"].get(post) != simdjson::SUCCESS || post.is_null()) return;
  std::vector<element> procs;
  if (sv(post["type"]) == "Sequence") {
    array a;
    if (post["processors"].get(a) == simdjson::SUCCESS)
      for (element e : a) procs.push_back(e);
  } else {
    procs.push_back(post);
  }
  for (element p : procs) {
    if (sv(p["type"]) != "TemplateProcessing") continue;
    array single;
    if (p["single"].get(single) != simdjson::SUCCESS) continue;
    size_t n = single.size();
    if (n == 0) continue;
    info.add_bos = sv(single.at(0)["SpecialToken"]["id"]) != "";
    info.add_eos = n > 1 && sv(single.at(n - 1)["SpecialToken"]["id"]) != "";
  }
}

// tokenizer_config.json: special tokens (named by content), add_* flags, chat templates.
void read_tokenizer_config(const std::string& dir, element model,
                           const std::map<std::string, int64_t>& added_by_content, HfTokenizerInfo& info) {
  const std::string tc_path = dir + "/tokenizer_config.json";
  if (!file_exists(tc_path)) return;
  object vocab;
  if (model["vocab"].get(vocab) != simdjson::SUCCESS) return;  // checked by read_vocab
  auto set_id = [&](std::optional<int64_t>& slot, element e) {
    std::string content = sv(e);
    if (content.empty()) content = sv(e["content"]);
    if (content.empty()) return;
    auto it = added_by_content.find(content);
    if (it != added_by_content.end()) {
      slot = it->second;
    } else {
      int64_t id;
      if (vocab[content].get(id) == simdjson::SUCCESS) slot = id;
    }
  };
  simdjson::dom::parser tc_parser;
  const std::string tc_text = read_json_text(tc_path);
  element tc = parse_or_throw(tc_parser, tc_text, tc_path);
  element e;
  if (tc["bos_token"].get(e) == simdjson::SUCCESS) set_id(info.bos, e);
  if (tc["eos_token"].get(e) == simdjson::SUCCESS) set_id(info.eos, e);
  if (tc["unk_token"].get(e) == simdjson::SUCCESS) set_id(info.unk, e);
  if (tc["pad_token"].get(e) == simdjson::SUCCESS) set_id(info.pad, e);
  if (tc["sep_token"].get(e) == simdjson::SUCCESS) set_id(info.sep, e);
  if (tc["cls_token"].get(e) == simdjson::SUCCESS) set_id(info.cls, e);
  if (tc["mask_token"].get(e) == simdjson::SUCCESS) set_id(info.mask, e);
  bool b;
  if (tc["add_bos_token"].get(b) == simdjson::SUCCESS) info.add_bos = b;
  if (tc["add_eos_token"].get(b) == simdjson::SUCCESS) info.add_eos = b;
  if (tc["add_prefix_space"].get(b) == simdjson::SUCCESS) info.add_space_prefix = b;
  // chat_template: a string, or a list of {name, template}.
  std::string_view tpl;
  array tpls;
  if (tc["chat_template"].get(tpl) == simdjson::SUCCESS) {
    info.chat_templates.emplace_back("", std::string(tpl));
  } else if (tc["chat_template"].get(tpls) == simdjson::SUCCESS) {
    for (element t : tpls) {
      std::string name = sv(t["name"]);
      info.chat_templates.emplace_back(name == "default" ? "" : name, sv(t["template"]));
    }
  }
}

// Special ids the tokenizer files left open: from config.json, then generation_config.json.
void fill_special_ids(const std::string& dir, const ModelConfig& cfg, HfTokenizerInfo& info) {
  if (!info.bos && cfg.bos_id) info.bos = cfg.bos_id;
  if (!info.eos && cfg.eos_id) info.eos = cfg.eos_id;
  if (!info.pad && cfg.pad_id) info.pad = cfg.pad_id;
  const std::string gc_path = dir + "/generation_config.json";
  if (file_exists(gc_path) && (!info.bos || !info.eos)) {
    simdjson::dom::parser gp;
    const std::string gtext = read_json_text(gc_path);
    element gc = parse_or_throw(gp, gtext, gc_path);
    int64_t id;
    array ids;
    if (!info.bos && gc["bos_token_id"].get(id) == simdjson::SUCCESS) info.bos = id;
    if (!info.eos) {
      if (gc["eos_token_id"].get(id) == simdjson::SUCCESS) info.eos = id;
      else if (gc["eos_token_id"].get(ids) == simdjson::SUCCESS && ids.size() > 0 && ids.at(0).get(id) == simdjson::SUCCESS)
        info.eos = id;
    }
  }
  if (!info.add_bos) info.add_bos = false;
  for (auto* slot : {&info.bos, &info.eos, &info.unk, &info.pad, &info.sep, &info.cls, &info.mask})
    if (*slot && (**slot < 0 || static_cast<uint64_t>(**slot) >= cfg.n_vocab))
      throw FormatError(dir, "special token id " + std::to_string(**slot) + " is outside the vocabulary");
}

}  // namespace

HfTokenizerInfo load_hf_tokenizer(const std::string& dir, const ModelConfig& cfg, const TokenizerOptions& opt) {
  const std::string tj_path = dir + "/tokenizer.json";
  if (!file_exists(tj_path))
    throw FormatError(tj_path, "missing tokenizer.json (smolq converts byte-level BPE tokenizers from tokenizer.json)");
  HfTokenizerInfo info;
  simdjson::dom::parser parser;
  const std::string tj_text = read_json_text(tj_path);
  element tj = parse_or_throw(parser, tj_text, tj_path);

  element model;
  if (tj["model"].get(model) != simdjson::SUCCESS) throw FormatError(tj_path, "missing 'model' object");
  const std::string mtype = sv(model["type"]);
  if (mtype != "BPE")
    throw FormatError(tj_path, "tokenizer model '" + mtype + "' is not supported (only byte-level BPE)");
  const std::map<std::string, int64_t> added_by_content = read_vocab(model, tj, tj_path, cfg, info);
  read_merges(model, tj_path, info);

  // Pre-tokenizer: explicit override, else llama.cpp's probe hash, else structure.
  if (!opt.pre_override.empty()) {
    bool ok = false;
    for (const char* n : kOverridable) ok |= opt.pre_override == n;
    if (!ok) throw UsageError("--pre-tokenizer '" + opt.pre_override + "' is not one smolq supports (smollm, llama-bpe, gpt-2, default)");
    info.pre = opt.pre_override;
    info.pre_detected_by = "--pre-tokenizer";
  }
  if (info.pre.empty()) identify_pre_tokenizer(tj_path, info);

  read_post_processor(tj, info);
  read_tokenizer_config(dir, model, added_by_content, info);
  const std::string jinja = dir + "/chat_template.jinja";
  if (info.chat_templates.empty() && file_exists(jinja)) info.chat_templates.emplace_back("", read_text_file(jinja, 16u << 20));
  fill_special_ids(dir, cfg, info);
  return info;
}

void write_tokenizer_metadata(const HfTokenizerInfo& info, GgufMetadata& meta) {
  if (info.add_space_prefix) meta.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(*info.add_space_prefix));
  if (info.add_bos) meta.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(*info.add_bos));
  if (info.add_eos) meta.set("tokenizer.ggml.add_eos_token", GgufValue::boolean(*info.add_eos));
  meta.set("tokenizer.ggml.model", GgufValue::str("gpt2"));
  meta.set("tokenizer.ggml.pre", GgufValue::str(info.pre));
  meta.set("tokenizer.ggml.tokens", GgufValue::string_array(info.tokens));
  meta.set("tokenizer.ggml.token_type", GgufValue::i32_array(info.token_types));
  meta.set("tokenizer.ggml.merges", GgufValue::string_array(info.merges));
  auto put_id = [&](const char* key, const std::optional<int64_t>& id) {
    if (id) meta.set(key, GgufValue::u32(static_cast<uint32_t>(*id)));
  };
  put_id("tokenizer.ggml.bos_token_id", info.bos);
  put_id("tokenizer.ggml.eos_token_id", info.eos);
  put_id("tokenizer.ggml.unknown_token_id", info.unk);
  put_id("tokenizer.ggml.seperator_token_id", info.sep);  // sic: llama.cpp's key spelling
  put_id("tokenizer.ggml.padding_token_id", info.pad);
  put_id("tokenizer.ggml.cls_token_id", info.cls);
  put_id("tokenizer.ggml.mask_token_id", info.mask);
  for (const auto& [name, tpl] : info.chat_templates) {
    meta.set(name.empty() ? "tokenizer.chat_template" : "tokenizer.chat_template." + name, GgufValue::str(tpl));
  }
  if (info.chat_templates.size() > 1) {
    std::vector<std::string> names;
    for (const auto& [name, tpl] : info.chat_templates)
      if (!name.empty()) names.push_back(name);
    meta.set("tokenizer.chat_templates", GgufValue::string_array(names));
  }
}

}  // namespace smolq
