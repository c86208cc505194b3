// The token stream an evaluation runs on: a text tokenized with the model's own tokenizer
// (GGUF metadata, or tokenizer.json beside an HF checkpoint) exactly as llama-perplexity does
// it — the whole text at once, BOS prepended when the tokenizer adds one, special-token text
// not parsed unless asked — or ids prepared elsewhere (a file of integers).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "eval/model.h"
#include "text/tokenizer.h"

namespace smolq {

struct EvalTokens {
  std::vector<int32_t> ids;
  bool add_bos = false;  // the model's tokenizer adds BOS: every chunk starts with bos_id
  int32_t bos_id = -1;
  std::string source;    // what was tokenized (for logs)
};

// The model's own tokenizer: from GGUF metadata, or tokenizer.json beside an HF checkpoint;
// nullopt when the model carries none.
std::optional<Tokenizer> model_tokenizer(const Model& model);

// Tokenize the text file at `text_path` for `model`. Throws Error when the model carries no
// tokenizer (an HF folder without tokenizer.json: use read_token_ids instead).
EvalTokens tokenize_text_file(const Model& model, const std::string& text_path, bool parse_special);

// Token ids from a text file of integers separated by whitespace or commas. BOS handling
// comes from the model's tokenizer metadata when it has any, else none.
EvalTokens read_token_ids(const Model& model, const std::string& ids_path);

// The model's own chat template: GGUF tokenizer.chat_template, or tokenizer_config.json's
// chat_template string. Empty when it has none; `why` then says what was found instead.
std::string model_chat_template(const Model& m, std::string& why);

// BOS policy of the model's tokenizer without tokenizing anything: (add_bos, bos_id).
std::pair<bool, int32_t> model_bos(const Model& model);

}  // namespace smolq
