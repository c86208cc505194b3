// Fuzz target: Tokenizer::encode on arbitrary bytes with real vocabularies.
//
// Input layout: byte 0 holds flags (bit 0 add_special, bit 1 parse_special, bit 2 use the
// Llama-3-style tokenizer instead of SmolLM2's); the rest is the text, valid UTF-8 or not.
//
// Beyond "no crash", this checks the tokenizer's round trip: for byte-level BPE without a
// normalizer, decode(encode(t)) gives back t after ill-formed UTF-8 is replaced by U+FFFD
// (tokenizer.h), provided every byte of that text has a one-byte token (bytes without one
// are dropped, as HF drops them) and nothing was added around the text.
#include "formats/error.h"
#include "fuzz/targets/fuzz_support.h"
#include "fuzz/targets/fuzz_targets.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace smolq::fuzz {
namespace {

struct Loaded {
  Tokenizer tok;
  std::array<bool, 256> has_byte{};  // the vocabulary has a one-byte token for this byte
};

Loaded load(const std::string& tokenizer_json, const std::string& tokenizer_config) {
  Loaded l{Tokenizer::from_hf_json(tokenizer_json, tokenizer_config), {}};
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    unicode::append_utf8(ch, unicode::byte_to_char(static_cast<uint8_t>(b)));
    l.has_byte[b] = l.tok.token_id(ch).has_value();
  }
  return l;
}

// The real SmolLM2 tokenizer (../shared/assets) and the Llama-3-style one the fixtures train
// (a copy is kept in fuzz/data, so the target does not depend on generated fixtures).
const Loaded& smollm2() {
  static const Loaded l = load(shared_assets_dir() + "/smollm2-135m-instruct/tokenizer.json",
                               shared_assets_dir() + "/smollm2-135m-instruct/tokenizer_config.json");
  return l;
}
const Loaded& llama3_style() {
  static const Loaded l = load(source_dir() + "/fuzz/data/llama3-style-1k.tokenizer.json", "");
  return l;
}

}  // namespace

int fuzz_tokenizer_encode(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const bool add_special = flags & 1, parse_special = flags & 2;
  const Loaded& l = (flags & 4) ? llama3_style() : smollm2();
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  const std::vector<int32_t> ids = l.tok.encode(text, add_special, parse_special);
  for (int32_t id : ids)
    if (id < 0 || static_cast<size_t>(id) >= l.tok.vocab_size()) fuzz_fail("encode produced an out-of-range id");
  const std::string decoded = l.tok.decode(ids);

  if (add_special && (l.tok.add_bos() || l.tok.add_eos())) return 0;
  const std::string expected = unicode::is_valid_utf8(text) ? std::string(text) : unicode::replace_invalid_utf8(text);
  for (char c : expected)
    if (!l.has_byte[static_cast<uint8_t>(c)]) return 0;
  if (decoded != expected) fuzz_fail("decode(encode(text)) differs from the text");
  return 0;
}

}  // namespace smolq::fuzz
