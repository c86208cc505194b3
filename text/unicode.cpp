// Character-class lookup, UTF-8 encoding and the GPT-2 byte-level alphabet (see unicode.h).
#include "text/unicode.h"

#include <algorithm>
#include <cassert>

namespace smolq::unicode {

uint8_t char_flags(uint32_t cp) {
  if (cp < 256) return detail::kLatin1Flags[cp];
  // Binary search for the last range starting at or before cp (833 ranges: ~10 steps).
  const detail::CharRange* begin = detail::kCharRanges;
  const detail::CharRange* end = begin + detail::kNumCharRanges;
  const detail::CharRange* it =
      std::upper_bound(begin, end, cp, [](uint32_t c, const detail::CharRange& r) { return c < r.first; });
  if (it == begin) return 0;
  --it;
  return cp <= it->last ? it->flags : 0;
}

const char* unicode_tables_source() { return detail::kUnicodeTablesSource; }

namespace {

// The byte -> character table of unicode.h, built once: bytes GPT-2 considers printable keep
// their own code point, the rest are numbered from U+0100 in byte order.
struct ByteLevelMap {
  std::array<uint32_t, 256> to_char{};
  std::array<int16_t, 512> to_byte{};  // every mapped character is below U+0200
  ByteLevelMap() {
    to_byte.fill(-1);
    auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
    uint32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      to_char[b] = printable(b) ? uint32_t(b) : next++;
      to_byte[to_char[b]] = static_cast<int16_t>(b);
    }
    assert(next == 0x100 + 68);
  }
};

const ByteLevelMap& byte_level_map() {
  static const ByteLevelMap m;
  return m;
}

}  // namespace

uint32_t byte_to_char(uint8_t b) { return byte_level_map().to_char[b]; }

int char_to_byte(uint32_t cp) { return cp < 512 ? byte_level_map().to_byte[cp] : -1; }

std::string bytes_to_byte_level(std::string_view bytes) {
  const auto& m = byte_level_map();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) append_utf8(out, m.to_char[static_cast<uint8_t>(c)]);
  return out;
}

}  // namespace smolq::unicode
