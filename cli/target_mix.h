// `--target-bpw B | --target-size S` for `smolq quantize` and `smolq convert` (issue 9,
// docs/mixed-precision.md): find or measure the model's sensitivity profile, then let the
// allocator choose every weight's type. The commands keep their own planning and writing;
// this file only decides the per-tensor types and the metadata that records them.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "cli/options.h"
#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "quantize/allocate_plan.h"
#include "verify/sensitivity.h"

namespace smolq::cli {

struct TargetArgs {
  std::string target_bpw, target_size;
  std::string calib;        // calibration text (default: $SMOLQ_CALIB)
  std::string profile;      // profile file (default: beside the output, named after the model)
  int64_t calib_ctx = 256;  // calibration tokens per chunk
  int64_t calib_chunks = 1;
  int profile_groups = 40;  // gain measurements at most (ProfileSettings::max_group_passes)
  std::string exclude_types;  // comma-separated types the allocator may not use (the profile keeps them)
};

void add_target_options(po::options_description& opts, TargetArgs& a);
bool target_requested(const TargetArgs& a);

// The file as it would be written with the given extra metadata (placeholder mix keys): every
// tensor with its planned type, and where the data starts.
struct PlannedFile {
  std::vector<GgufPlannedTensor> tensors;
  uint64_t data_offset = 0;
  uint32_t alignment = 32;
};
using PlanFileFn = std::function<PlannedFile(const std::vector<std::string>& mix_kv)>;

struct TargetDecision {
  MixTarget target;
  MixPlan plan;
  std::vector<std::string> mix_kv;  // --override-kv specs recording the plan (final values)
  std::string profile_path;
  bool profile_reused = false;
};

// `model_path`: what the profile measures (the input GGUF, or the HF folder for convert);
// `output_path`: where the default profile goes (its folder). Logs to stderr.
TargetDecision decide_target(const TargetArgs& a, const std::string& model_path, const std::string& output_path,
                             const ImatrixData* imatrix, const std::string& imatrix_path, int threads,
                             const PlanFileFn& plan_file);

// After the command planned the real file: the size must be the one the allocator computed
// and within the target (throws Error otherwise; never expected).
void check_target_met(const TargetDecision& d, uint64_t planned_file_size, double planned_bpw);

}  // namespace smolq::cli
