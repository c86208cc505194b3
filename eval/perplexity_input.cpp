#include "eval/perplexity_input.h"

#include <simdjson.h>

#include <cctype>
#include <filesystem>

#include "formats/error.h"
#include "formats/mapped_file.h"
#include "text/tokenizer.h"

namespace smolq {
namespace {

// Texts for perplexity and imatrix runs are at most a few hundred MB.
constexpr uint64_t kMaxTextBytes = 1ull << 30;


}  // namespace

std::optional<Tokenizer> model_tokenizer(const Model& model) {
  if (const GgufMetadata* meta = model.gguf_metadata()) {
    if (!meta->has("tokenizer.ggml.model")) return std::nullopt;
    return Tokenizer::from_gguf(*meta, model.path());
  }
  const std::string json = (std::filesystem::path(model.hf_dir()) / "tokenizer.json").string();
  if (!file_exists(json)) return std::nullopt;
  return Tokenizer::from_hf_json(json);
}

// The model's own chat template: GGUF tokenizer.chat_template, or tokenizer_config.json's
// chat_template string. Empty when it has none; `why` says what was found instead.
std::string model_chat_template(const Model& m, std::string& why) {
  if (const GgufMetadata* meta = m.gguf_metadata()) {
    if (auto t = meta->opt_string("tokenizer.chat_template")) return *t;
    why = "the GGUF has no tokenizer.chat_template";
    return "";
  }
  const std::string cfg = (std::filesystem::path(m.hf_dir()) / "tokenizer_config.json").string();
  if (!file_exists(cfg)) {
    why = "no tokenizer_config.json";
    return "";
  }
  simdjson::dom::parser parser;
  simdjson::dom::element root, t;
  if (parser.load(cfg).get(root) || root["chat_template"].get(t)) {
    why = "tokenizer_config.json has no chat_template";
    return "";
  }
  std::string_view s;
  if (t.get(s)) {
    why = "tokenizer_config.json's chat_template is not a single template";
    return "";
  }
  return std::string(s);
}

std::pair<bool, int32_t> model_bos(const Model& model) {
  if (auto tok = model_tokenizer(model)) return {tok->add_bos(), tok->bos_id()};
  return {false, -1};
}

EvalTokens tokenize_text_file(const Model& model, const std::string& text_path, bool parse_special) {
  auto tok = model_tokenizer(model);
  if (!tok)
    throw Error(model.path() + " has no tokenizer (no tokenizer metadata / tokenizer.json); pass token ids with --tokens");
  const std::string text = read_text_file(text_path, kMaxTextBytes);
  EvalTokens t;
  // llama-perplexity: common_tokenize(text, add_special = true, parse_special = false).
  t.ids = tok->encode(text, /*add_special=*/true, parse_special);
  t.add_bos = tok->add_bos();
  t.bos_id = tok->bos_id();
  t.source = text_path;
  return t;
}

EvalTokens read_token_ids(const Model& model, const std::string& ids_path) {
  const std::string text = read_text_file(ids_path, kMaxTextBytes);
  EvalTokens t;
  t.source = ids_path;
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char ch = static_cast<unsigned char>(text[i]);
    if (std::isspace(ch) || ch == ',' || ch == '[' || ch == ']') {
      ++i;
      continue;
    }
    size_t j = i;
    if (text[j] == '-') ++j;
    int64_t v = 0;
    const size_t digits = j;
    while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j])) && v < (1ll << 40)) v = v * 10 + (text[j++] - '0');
    if (j == digits || (j < text.size() && !std::isspace(static_cast<unsigned char>(text[j])) && text[j] != ',' && text[j] != ']'))
      throw FormatError(ids_path, i, "expected a token id (integer)");
    if (text[i] == '-' || v > INT32_MAX) throw FormatError(ids_path, i, "token id out of range");
    t.ids.push_back(static_cast<int32_t>(v));
    i = j;
  }
  std::tie(t.add_bos, t.bos_id) = model_bos(model);
  return t;
}

}  // namespace smolq
