// "Did you mean ...?" for names a user types: commands, options, quant type names. Lives in
// formats/ because every layer that parses a name (quantize's file types, the CLI's commands
// and options) needs the same rule.
#pragma once
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace smolq {

// Optimal-string-alignment distance (Levenshtein plus swapping two adjacent characters),
// compared case-insensitively: "quantise" -> "quantize" is 1, "Q4KM" -> "Q4_K_M" is 2.
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate nearest to `typed`, or "" when none is close enough to be a plausible typo:
//   1. a candidate spelled the same once case, '-' and '_' are ignored ("q4km" -> "Q4_K_M");
//   2. else the nearest within max(1, |typed| / 3) edits, with or without the separators
//      (ties: the first candidate);
//   3. else the only candidate that starts with `typed` (3 characters or more: "estim").
std::string nearest_name(std::string_view typed, std::span<const std::string> candidates);

// " (did you mean 'X'?)" or "" — for appending to an error message.
std::string did_you_mean(std::string_view typed, std::span<const std::string> candidates);

}  // namespace smolq
