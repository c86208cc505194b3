// Tokenizer metadata for GGUF from a Hugging Face folder: tokenizer.json (+
// tokenizer_config.json, generation_config.json, chat_template.jinja when present),
// written as llama.cpp's `tokenizer.ggml.*` / `tokenizer.chat_template` keys.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "formats/model_config.h"
#include "formats/token_type.h"

namespace smolq {

struct HfTokenizerInfo {
  std::vector<std::string> tokens;     // by id, padded to the config's vocab size
  std::vector<int32_t> token_types;
  std::vector<std::string> merges;     // "left right"
  std::string pre;                     // tokenizer.ggml.pre
  std::string pre_detected_by;         // "probe hash", "pre-tokenizer structure", "--pre-tokenizer"
  std::optional<int64_t> bos, eos, unk, pad, sep, cls, mask;
  std::optional<bool> add_bos, add_eos, add_space_prefix;
  std::vector<std::pair<std::string, std::string>> chat_templates;  // (name or "", template)
};

struct TokenizerOptions {
  std::string pre_override;     // --pre-tokenizer
};

class Tokenizer;

// The text llama.cpp tokenizes to identify a BPE pre-tokenizer.
const std::string& pre_tokenizer_probe_text();
// llama.cpp's pre-tokenizer fingerprint of a tokenizer: SHA-256 of the probe text's token ids
// written as a Python list ("[1, 2, 3]").
std::string pre_tokenizer_probe_hash(const Tokenizer& tok);

HfTokenizerInfo load_hf_tokenizer(const std::string& hf_dir, const ModelConfig& cfg, const TokenizerOptions& opt);
void write_tokenizer_metadata(const HfTokenizerInfo& info, GgufMetadata& meta);

}  // namespace smolq
