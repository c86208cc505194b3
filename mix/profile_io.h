// The sensitivity profile on disk (mix/sensitivity.h): one JSON document, written
// atomically, that a later `--target-*` run on the same model reuses instead of measuring
// again. Numbers are written with 17 significant digits, so a reloaded profile predicts
// exactly what the fresh one did and the allocation (and the file) come out byte-identical.
//
//   {"format": "smolq-sensitivity-profile", "version": 1,
//    "model_fp", "calib_fp", "imatrix_fp", "settings_fp": 16 hex digits (the reuse key),
//    "model", "calibration": descriptions, "settings": {n_ctx, n_chunks, max_group_passes,
//    n_validate}, "has_imatrix", "calib_positions", "forward_passes", "seconds", "threads",
//    "predictor": {"log_correlation", "median_ratio", "single_checks": [{what, predicted,
//    measured}], "model_checks": [...]},
//    "groups": [{"label", "dkld", "tensors": [indices]}],
//    "tensors": [{"name", "rows", "cols", "group", "gain", "ref", "types": ["Q4_0", ...],
//                 "error": [...], "measured": [number or null, ...]}]}
#pragma once
#include <string>

#include "mix/sensitivity.h"

namespace smolq {

inline constexpr const char* kProfileFormat = "smolq-sensitivity-profile";

std::string profile_to_json(const SensitivityProfile& p);
// Atomic write (temporary file + rename).
void save_profile(const std::string& path, const SensitivityProfile& p);
// Throws FormatError for anything that is not a profile of this version.
SensitivityProfile load_profile(const std::string& path);

}  // namespace smolq
