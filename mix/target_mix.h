// Measured mixed precision as one pipeline (docs/mixed-precision.md): a sensitivity profile
// (mix/sensitivity.h, found or measured by mix/profile_target.h) gives every weight's predicted
// ΔKLD per candidate type; the allocator (quantize/allocate_plan.h) picks the types that
// minimise it within a size or bits-per-weight budget, planned against the exact layout of the
// file that will be written. `smolq quantize` and `smolq convert` (`--target-bpw/--target-size`)
// call build_target; `smolq verify`'s `TYPE@target` rows call allocate_target with the sweep's
// own profile. The commands only parse options.
#pragma once
#include <string>
#include <vector>

#include "convert/model_source.h"
#include "formats/imatrix.h"
#include "mix/sensitivity.h"
#include "quantize/allocate_plan.h"

namespace smolq {

// What the user asked for (`--target-*` and the profile options).
struct TargetArgs {
  std::string target_bpw, target_size;
  std::string calib;        // calibration text (default: $SMOLQ_CALIB)
  std::string profile;      // profile file (default: beside the output, named after the model)
  int64_t calib_ctx = 256;  // calibration tokens per chunk
  int64_t calib_chunks = 1;
  int profile_groups = 40;  // gain measurements at most (ProfileSettings::max_group_passes)
  std::string exclude_types;  // comma-separated types the allocator may not use (the profile keeps them)
};

bool target_requested(const TargetArgs& a);

// A target-made file, ready to write.
struct TargetBuild {
  MixTarget target;
  MixPlan plan;
  QuantizeOptions options;  // the base options plus the assigned types, the label and the smolq.mix.* keys
  BuildPlan file;           // the exact file (its size is the allocator's)
  std::string profile_path;
  bool profile_reused = false;
};

// Allocation from a profile: every profiled tensor gets a type (never one of `excluded`), the
// file planned from `src` with `base` options meets `target` exactly as the allocator computed
// (throws Error otherwise; never expected).
TargetBuild allocate_target(const SensitivityProfile& prof, const MixTarget& target, const ModelSource& src,
                            const QuantizeOptions& base, const std::vector<GgmlType>& excluded = {});

// For quantize / convert: find or measure the profile of `src`'s model (the profile file
// defaults to `<output folder>/<model>.smolq-profile.json`), then allocate_target. Logs to
// stderr; Ctrl-C stops a measurement cleanly.
TargetBuild build_target(const TargetArgs& a, const ModelSource& src, const QuantizeOptions& base,
                         const std::string& output_path, const std::string& imatrix_path, int threads);

}  // namespace smolq
