// Target-driven rows of `smolq verify` ("Q4_K_M@target"): the same file size as a standard
// mixture, every weight's type chosen by the allocator from the baseline's sensitivity profile
// (verify/sensitivity.h, quantize/allocate_plan.h). The profile is measured on the sweep's
// calibration tokens (a separate --calib-text, or the first half of the evaluation text, which
// is then not evaluated) and kept in the sweep cache; every target row of a run shares it.
#include <string>

#include "formats/error.h"
#include "quantize/allocate_plan.h"
#include "verify/profile_target.h"
#include "verify/sweep_cache.h"
#include "verify/sweep_internal.h"

namespace smolq::sweep {

uint64_t target_settings_fp() { return profile_settings_fp(ProfileSettings{}, false); }

WriteResult build_target_quant(Context& c, FileType size_of, const std::string& out, const std::string& stage,
                               int& imatrix_used) {
  // 1. The size to meet: the standard mixture's file, planned exactly.
  QuantizeOptions fixed = quant_options(c, size_of);
  fixed.dry_run = true;
  const uint64_t size = plan_quant_file(c, fixed).file_size;
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

  // 3. Allocation against the exact header of the file (placeholder mix keys of final size).
  MixInput in;
  in.costs = profile_costs(prof);
  const std::string pid = profile_id(prof);
  QuantizeOptions q = quant_options(c, FileType::kQ8_0);
  q.dry_run = true;
  q.override_kv = mix_metadata_kv(target, pid, prof.calib_desc, 0.0, 0.0);
  const PlannedQuantFile f = plan_quant_file(c, q);
  in.tensors = f.tensors;
  in.data_offset = f.data_offset;
  in.alignment = f.alignment;
  const MixPlan plan = plan_mix(in, target);
  q.dry_run = false;
  q.assigned_types = plan.types;
  q.ftype = plan.label;
  q.override_kv = mix_metadata_kv(target, pid, prof.calib_desc, plan.predicted_kld, plan.bits_per_weight());
  const uint64_t planned = plan_quant_file(c, q).file_size;
  if (planned != plan.file_size || planned > size)
    throw Error("internal: the target file would be " + std::to_string(planned) + " bytes, allocation said " +
                std::to_string(plan.file_size) + " (target " + std::to_string(size) + ")");
  c.log("  target " + std::to_string(size) + " bytes (the " + std::string(file_type_info(size_of).name) +
        " file): " + std::to_string(plan.file_size) + " bytes, predicted KLD " + std::to_string(plan.predicted_kld));
  return build_quant(c, q, out, stage, imatrix_used);
}

}  // namespace smolq::sweep
