#include "formats/suggest.h"

#include <algorithm>
#include <cctype>

namespace smolq {
namespace {

char fold(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

// Lower case without separators: "Q4_K_M" -> "q4km", "--ctx-size" -> "ctxsize".
std::string squash(std::string_view s) {
  std::string o;
  for (char c : s)
    if (c != '-' && c != '_') o += fold(c);
  return o;
}

}  // namespace

size_t edit_distance(std::string_view a, std::string_view b) {
  // Three rows of the dynamic-programming table: i-2, i-1 and i (transpositions look two back).
  std::vector<size_t> prev2(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const bool same = fold(a[i - 1]) == fold(b[j - 1]);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (same ? 0 : 1)});
      if (i > 1 && j > 1 && fold(a[i - 1]) == fold(b[j - 2]) && fold(a[i - 2]) == fold(b[j - 1]))
        cur[j] = std::min(cur[j], prev2[j - 2] + 1);
    }
    std::swap(prev2, prev);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string nearest_name(std::string_view typed, std::span<const std::string> candidates) {
  if (typed.empty()) return "";
  const std::string sq = squash(typed);
  // Same letters once case and separators are ignored: the intended name, whatever the distance.
  for (const auto& c : candidates)
    if (!sq.empty() && squash(c) == sq) return c;
  const size_t limit = std::max<size_t>(1, typed.size() / 3);
  std::string best;
  size_t best_d = limit + 1;
  for (const auto& c : candidates) {
    const size_t d = std::min(edit_distance(typed, c), edit_distance(sq, squash(c)));
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  if (!best.empty()) return best;
  // A unique candidate that starts with what was typed ("--thread" -> "--threads" is already
  // one edit; this catches longer truncations such as "verif" -> "verify" when short).
  std::string prefixed;
  for (const auto& c : candidates)
    if (sq.size() >= 3 && squash(c).rfind(sq, 0) == 0) {
      if (!prefixed.empty()) return "";
      prefixed = c;
    }
  return prefixed;
}

std::string did_you_mean(std::string_view typed, std::span<const std::string> candidates) {
  const std::string n = nearest_name(typed, candidates);
  return n.empty() ? "" : " (did you mean '" + n + "'?)";
}

}  // namespace smolq
