// Number formatting shared by inspect and estimate output: byte counts in binary units
// (MiB = 2^20 bytes, as llama.cpp prints them), thousands separators, fixed decimals, and
// Markdown/plain table layout.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace smolq {

std::string with_commas(uint64_t v);                // 98362432 -> "98,362,432"
std::string fixed(double v, int decimals);          // fixed(5.7412, 2) -> "5.74"
std::string human_bytes(uint64_t bytes);            // "92.10 MiB", "1.53 GiB", "812 B"
std::string human_count(uint64_t n);                // 134515008 -> "134.5M"
std::string mib(uint64_t bytes, int decimals = 2);  // bytes / 2^20, no unit

// A table printed either as Markdown (`| a | b |` with a separator row) or as aligned plain
// text. Columns listed in `right_aligned` are right-aligned (numbers).
struct TextTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<bool> right_aligned;  // per column; missing = left
  std::string render(bool markdown) const;
};

}  // namespace smolq
