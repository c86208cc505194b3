#include "inspect/text_format.h"

#include <algorithm>
#include <cstdio>

namespace smolq {

std::string with_commas(uint64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

std::string fixed(double v, int decimals) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

std::string mib(uint64_t bytes, int decimals) { return fixed(static_cast<double>(bytes) / (1024.0 * 1024.0), decimals); }

std::string human_bytes(uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (bytes < 1024) return std::to_string(bytes) + " B";
  if (bytes < (1ull << 20)) return fixed(b / 1024.0, 2) + " KiB";
  if (bytes < (1ull << 30)) return fixed(b / (1024.0 * 1024.0), 2) + " MiB";
  return fixed(b / (1024.0 * 1024.0 * 1024.0), 2) + " GiB";
}

std::string human_count(uint64_t n) {
  const double d = static_cast<double>(n);
  if (n < 10'000) return std::to_string(n);
  if (n < 1'000'000) return fixed(d / 1e3, 1) + "K";
  if (n < 1'000'000'000) return fixed(d / 1e6, 1) + "M";
  return fixed(d / 1e9, 2) + "B";
}

// Display width of a UTF-8 string: code points, which is right for the text we print.
static size_t width(const std::string& s) {
  size_t w = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++w;
  return w;
}

std::string TextTable::render(bool markdown) const {
  const size_t ncol = header.size();
  std::vector<size_t> w(ncol, 0);
  for (size_t c = 0; c < ncol; ++c) w[c] = width(header[c]);
  for (const auto& r : rows)
    for (size_t c = 0; c < ncol && c < r.size(); ++c) w[c] = std::max(w[c], width(r[c]));
  auto right = [&](size_t c) { return c < right_aligned.size() && right_aligned[c]; };
  auto cell = [&](const std::string& s, size_t c) {
    const std::string pad(w[c] - std::min(w[c], width(s)), ' ');
    return right(c) ? pad + s : s + pad;
  };
  std::string out;
  auto line = [&](const std::vector<std::string>& r) {
    std::string l = markdown ? "|" : "";
    for (size_t c = 0; c < ncol; ++c) {
      const std::string v = c < r.size() ? r[c] : "";
      if (markdown) l += " " + cell(v, c) + " |";
      else l += (c ? "  " : "") + cell(v, c);
    }
    while (!markdown && !l.empty() && l.back() == ' ') l.pop_back();
    out += l + "\n";
  };
  line(header);
  if (markdown) {
    std::string sep = "|";
    for (size_t c = 0; c < ncol; ++c) {
      // Markdown alignment marker: "---:" right-aligns the column when rendered.
      const size_t dashes = std::max<size_t>(w[c], 3);
      sep += " " + (right(c) ? std::string(dashes - 1, '-') + ":" : std::string(dashes, '-')) + " |";
    }
    out += sep + "\n";
  } else {
    std::string sep;
    for (size_t c = 0; c < ncol; ++c) sep += (c ? "  " : "") + std::string(w[c], '-');
    out += sep + "\n";
  }
  for (const auto& r : rows) line(r);
  return out;
}

}  // namespace smolq
