// Finding or measuring the sensitivity profile of a model, and turning it into per-tensor costs
// for the allocator (quantize/allocate_plan.h). Shared by `--target-*` on quantize/convert
// (mix/target_mix.cpp) and by `smolq verify`'s target rows (verify/sweep_build.cpp).
//
// Reuse rule: a profile file is reused when its model hash, settings hash, importance-matrix
// hash and (when calibration tokens are given) calibration hash all match. A profile of another
// model is an error when the caller named the file (`explicit_path`), and is measured again
// (overwriting it) otherwise.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>

#include "formats/imatrix.h"
#include "quantize/allocate_plan.h"
#include "eval/model.h"
#include "mix/sensitivity.h"

namespace smolq {

struct ProfileRequest {
  std::string path;                        // the profile file
  bool explicit_path = false;              // named by the user (--profile)
  ProfileSettings settings;
  uint64_t model_fp = 0;                   // fingerprint_model of the model
  std::span<const int32_t> calib_tokens;   // empty: reuse whatever matches the rest
  bool add_bos = false;
  int32_t bos_id = 1;
  std::string calib_desc;
  const ImatrixData* imatrix = nullptr;
  uint64_t imatrix_fp = 0;
  int threads = 1;
};

struct ProfileOutcome {
  SensitivityProfile profile;
  bool reused = false;
  std::string why_measured;  // when not reused: why ("no profile yet", "another calibration text", ...)
};

// Loads a matching profile or measures (and saves) a new one. Throws UsageError when a new
// one is needed but no calibration tokens were given, or the named file is another model's.
ProfileOutcome obtain_profile(Model& model, const ProfileRequest& req,
                              const std::function<void(const std::string&)>& log = {});

// 16 hex digits identifying a profile (its four hashes), recorded in smolq.mix.profile.
std::string profile_id(const SensitivityProfile& p);

// Predicted ΔKLD per candidate type of every profiled tensor.
std::map<std::string, MixCosts> profile_costs(const SensitivityProfile& p);

}  // namespace smolq
