// Byte-level BPE tokenizer (GPT-2 family: SmolLM, SmolLM2, SmolLM3 / Llama 3), giving exactly
// the ids of Hugging Face `tokenizers` for the files it accepts.
//
// Encoding, as HF does it:
//   1. Added tokens (special or not) are cut out of the text first: leftmost match, longest
//      when several start at the same byte; `lstrip` / `rstrip` swallow the whitespace beside
//      a match. Tokens marked `normalized` are searched in what is left after the others.
//   2. Each remaining stretch is split by the pre-tokenizer ("smollm": digits one by one, then
//      the GPT-2 pattern; "llama-bpe": the Llama-3 pattern; "gpt-2": the GPT-2 pattern).
//   3. Each piece is written in GPT-2's byte-level alphabet and merged by BPE, lowest merge
//      rank first (leftmost on ties), starting from its single-byte tokens.
//
// Input is bytes. Ill-formed UTF-8 cannot reach HF (Python strings are valid Unicode): each
// ill-formed sequence is replaced by U+FFFD first, exactly as Python's
// bytes.decode("utf-8", errors="replace") does, so encode(b) equals HF's encoding of that
// decoded string. Bytes for which the vocabulary has no one-byte token (SmolLM2 lacks 0x04,
// 0xC0, 0xF5..0xFF, ...) are dropped from their piece, as HF's BPE does.
//
// Anything we do not reproduce exactly is refused at load time rather than tokenized
// differently: normalizers, other models (Unigram, WordPiece), other pre-tokenizers, ByteLevel
// with add_prefix_space, `single_word` added tokens, BPE dropout / byte_fallback / subword
// prefixes. Load errors (also missing file, invalid JSON) are FormatError naming the file.
//
// A Tokenizer is immutable after loading: copies share the tables and encode() / decode() may
// run concurrently from several threads.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/token_type.h"

namespace smolq {

class GgufMetadata;

class Tokenizer {
 public:
  // Token kinds, numbered as GGUF's `tokenizer.ggml.token_type` (formats/token_type.h).
  using TokenType = ::smolq::TokenType;

  // `tokenizer.json` of a BPE model with a byte-level pre-tokenizer. bos/eos/unk/pad come from
  // `tokenizer_config.json` (its `*_token` entries): the given path, or when empty the file of
  // that name beside tokenizer.json if there is one. Whether BOS/EOS are added comes from the
  // tokenizer.json post-processor (TemplateProcessing), as in HF.
  static Tokenizer from_hf_json(const std::string& tokenizer_json_path,
                                const std::string& tokenizer_config_path = "");
  // GGUF metadata written by llama.cpp's converter (tokenizer.ggml.model = "gpt2"; pre =
  // smollm, llama-bpe / llama3 / llama-v3, or gpt-2). `source` names the file in errors. As in
  // llama.cpp: control/unknown tokens are special, user-defined ones always matched, none has
  // lstrip/rstrip (GGUF cannot say), and llama-bpe implies ignore_merges and, unless
  // tokenizer.ggml.add_bos_token says otherwise, add_bos.
  static Tokenizer from_gguf(const GgufMetadata& meta, const std::string& source = "<gguf>");

  // Token ids of `text`. add_special: prepend BOS / append EOS where this tokenizer's
  // post-processor does (HF add_special_tokens). parse_special: match special (control) tokens
  // in the text; when false their text is tokenized as ordinary text (HF
  // encode_special_tokens=True); non-special added tokens are matched either way.
  std::vector<int32_t> encode(std::string_view text, bool add_special = false,
                              bool parse_special = true) const;
  // Bytes of the ids, concatenated (not lossily converted to valid UTF-8, unlike HF's decode:
  // a token boundary may fall inside a character). skip_special drops control tokens.
  // Throws Error on an id outside the vocabulary.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The pre-tokenizer pieces of `text` (step 2 only, no added-token matching), for tests.
  std::vector<std::string_view> pre_tokenize(std::string_view text) const;

  std::string_view pre_name() const;  // "smollm", "llama-bpe" or "gpt-2"
  int32_t bos_id() const;             // -1 when the tokenizer has none
  int32_t eos_id() const;
  int32_t unk_id() const;
  int32_t pad_id() const;
  bool add_bos() const;  // encode(..., add_special=true) prepends bos_id()
  bool add_eos() const;  // encode(..., add_special=true) appends eos_id()
  size_t vocab_size() const;
  size_t n_merges() const;
  // Stored text of a token: GPT-2 byte-level characters for BPE tokens ("Ġthe"), the literal
  // content for added tokens ("<|im_start|>"). Throws Error on an out-of-range id.
  const std::string& token_text(int32_t id) const;
  TokenType token_type(int32_t id) const;
  std::optional<int32_t> token_id(std::string_view text) const;  // by stored text

  struct Impl;  // the loaded vocabulary, merges and added tokens (tokenizer.cpp)

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;  // immutable, so copies are cheap and thread-safe
};

}  // namespace smolq
