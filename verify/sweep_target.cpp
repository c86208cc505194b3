// Target-driven rows of `smolq verify` ("Q4_K_M@target"): the same file size as a standard
// mixture, every weight's type chosen by the allocator from the baseline's sensitivity profile
// (mix/target_mix.h, the pipeline `quantize` and `convert` use). The profile is measured on the
// sweep's calibration tokens (a separate --calib-text, or the first half of the evaluation text,
// which is then not evaluated) and kept in the sweep cache; every target row of a run shares it.
#include <string>

#include "formats/error.h"
#include "mix/profile_target.h"
#include "mix/target_mix.h"
#include "verify/sweep_cache.h"
#include "verify/sweep_internal.h"

namespace smolq::sweep {

uint64_t target_settings_fp() { return profile_settings_fp(ProfileSettings{}, false); }

WriteResult build_target_quant(Context& c, FileType size_of, const std::string& out, const std::string& stage,
                               int& imatrix_used) {
  // 1. The size to meet: the standard mixture's file, planned exactly.
  QuantizeOptions fixed = quant_options(c, size_of);
  fixed.dry_run = true;
  const uint64_t size = build_source(c).plan(fixed).layout.file_size;
  const MixTarget target = parse_target_size(std::to_string(size));

  // 2. The profile (measured once per baseline, calibration and settings).
  if (c.calib_tokens.empty()) throw Error("internal: target rows need calibration tokens");
  ProfileRequest req;
  req.path = c.cache_dir + "/profile-" + hex64(c.base_fp) + ".json";
  req.model_fp = c.base_fp;
  req.calib_tokens = c.calib_tokens;
  req.add_bos = c.eval.add_bos;
  req.bos_id = c.eval.bos_id;
  req.calib_desc = c.calib_desc;
  if (c.imatrix) {
    req.imatrix = &*c.imatrix;
    req.imatrix_fp = c.imatrix_fp;
  }
  req.threads = c.eval.n_threads;
  ProfileOutcome got = obtain_profile(*c.base, req, [&](const std::string& line) { c.log("  " + line); });
  const SensitivityProfile& prof = got.profile;
  c.log(std::string("  profile ") + (got.reused ? "reused: " : "built: ") + req.path + " (" +
        std::to_string(prof.forward_passes) + " forward passes, " + std::to_string(static_cast<int>(prof.seconds)) +
        " s when measured)");

  // 3. Allocation against the exact layout of the file (mix/target_mix.h).
  const TargetBuild b = allocate_target(prof, target, build_source(c), quant_options(c, FileType::kQ8_0));
  c.log("  target " + std::to_string(size) + " bytes (the " + std::string(file_type_info(size_of).name) +
        " file): " + std::to_string(b.plan.file_size) + " bytes, predicted KLD " + std::to_string(b.plan.predicted_kld));
  return write_quant(c, b.file, out, stage, imatrix_used);
}

}  // namespace smolq::sweep
