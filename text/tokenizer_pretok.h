// Pre-tokenizers: the regex splits byte-level BPE tokenizers apply before BPE, written as
// hand-made scanners (internal to the tokenizer; see tokenizer_pretok.cpp for the patterns).
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

namespace smolq::detail {

enum class PreTokenizerKind {
  kGpt2,    // ByteLevel(use_regex=true): the GPT-2 pattern
  kSmolLM,  // Digits(individual_digits=true), then the GPT-2 pattern (SmolLM, SmolLM2)
  kLlama3,  // Split(Llama-3 pattern), then ByteLevel(use_regex=false) (Llama 3, SmolLM3)
};

// Splits `text` into pieces and appends the end offset (in bytes, relative to text.data()) of
// each piece to `ends`. The pieces tile the text: piece k is [ends[k-1], ends[k]). An ill-formed
// UTF-8 sequence counts as one character of no class (like U+FFFD, which replaces it in encode).
// Throws Error for text over 4 GiB (offsets are 32-bit).
void pre_tokenize(PreTokenizerKind kind, std::string_view text, std::vector<uint32_t>& ends);

}  // namespace smolq::detail
