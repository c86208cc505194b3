// UTF-8 validation, substitution and encoding (see utf8.h).
#include "formats/utf8.h"

#include <cassert>

namespace smolq::unicode {

void append_utf8(std::string& out, uint32_t cp) {
  assert(cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF));
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_valid_utf8(std::string_view s) {
  const char* p = s.data();
  const char* end = p + s.size();
  while (p < end) {
    const Utf8Char c = decode_utf8(p, end);
    if (c.cp == kInvalidCp) return false;
    p += c.len;
  }
  return true;
}

std::string replace_invalid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 16);
  const char* p = s.data();
  const char* end = p + s.size();
  while (p < end) {
    const Utf8Char c = decode_utf8(p, end);
    if (c.cp == kInvalidCp) out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
    else out.append(p, c.len);
    p += c.len;
  }
  return out;
}

}  // namespace smolq::unicode
