// Strict UTF-8: decoding that never loses a byte, validation, U+FFFD substitution and
// encoding. Below the tokenizer (text/unicode.h) because every writer of user-visible text
// (JSON, GGUF strings, reports) needs the same definition of "valid".
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace smolq::unicode {

// Marks an ill-formed UTF-8 sequence.
inline constexpr uint32_t kInvalidCp = 0xFFFFFFFFu;

// One decoded character: its code point (kInvalidCp for an ill-formed sequence) and its length
// in bytes (1..4).
struct Utf8Char {
  uint32_t cp;
  uint32_t len;
};

// Decodes the character starting at p (p < end). Well-formed means the Unicode standard's
// table 3-7: no overlong forms, no surrogates (U+D800..DFFF), nothing above U+10FFFF, no
// truncated sequences. An ill-formed sequence decodes as kInvalidCp with the length of its
// "maximal subpart" (Unicode 3.9, U+FFFD substitution): a valid lead byte plus the valid
// continuation bytes that follow it before the error, else a single byte. This is also what
// Python's bytes.decode("utf-8", errors="replace") replaces with one U+FFFD.
inline Utf8Char decode_utf8(const char* p, const char* end) {
  const auto b0 = static_cast<uint8_t>(p[0]);
  if (b0 < 0x80) return {b0, 1};
  // Lead byte -> sequence length and the allowed range of the second byte (table 3-7).
  uint32_t need, lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) need = 2;
  else if (b0 >= 0xE0 && b0 <= 0xEF) need = 3, lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
  else if (b0 >= 0xF0 && b0 <= 0xF4) need = 4, lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
  else return {kInvalidCp, 1};  // continuation byte, C0, C1, F5..FF
  const size_t avail = static_cast<size_t>(end - p);
  uint32_t cp = b0 & (0x7F >> need);
  for (uint32_t i = 1; i < need; ++i) {
    if (i >= avail) return {kInvalidCp, i};
    const auto b = static_cast<uint8_t>(p[i]);
    if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) return {kInvalidCp, i};
    cp = cp << 6 | (b & 0x3F);
  }
  return {cp, need};
}

// `s` with every ill-formed sequence (maximal subpart, see decode_utf8) replaced by U+FFFD.
std::string replace_invalid_utf8(std::string_view s);

// Appends the UTF-8 encoding of a valid code point (asserts on surrogates / > U+10FFFF).
void append_utf8(std::string& out, uint32_t cp);

// True when every byte of `s` belongs to a well-formed UTF-8 character.
bool is_valid_utf8(std::string_view s);

}  // namespace smolq::unicode
