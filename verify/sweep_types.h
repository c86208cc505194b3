// The rows a sweep is asked for, as `smolq verify --types` and `smolq release --types` spell
// them: "Q8_0,Q6_K,Q4_K_M@target,..." or "all". One parser for both commands.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "verify/sweep.h"

namespace smolq {

// The file types of `list` in order ("all": sweep_all_types). "NAME@target" adds a measured
// mixed-precision row of NAME's file size. UsageError for an unknown type (with the nearest
// name), a full-precision type (the baseline is the full-precision model) or a type that needs
// an importance matrix when `have_imatrix` is false.
std::vector<SweepQuantSpec> parse_sweep_types(const std::string& list, bool have_imatrix);

// The default memory for models evaluated together: half of the machine's memory (room for
// the page cache and everything else running); 0 when unknown (no limit).
uint64_t default_sweep_memory();

// "@target", the suffix of a target row's label.
inline constexpr const char* kTargetSuffix = "@target";

}  // namespace smolq
