#include "mix/profile_target.h"

#include <filesystem>

#include "formats/error.h"
#include "mix/profile_io.h"
#include "verify/sweep_cache.h"

namespace smolq {

ProfileOutcome obtain_profile(Model& model, const ProfileRequest& req,
                              const std::function<void(const std::string&)>& log) {
  ProfileOutcome out;
  const uint64_t settings_fp = profile_settings_fp(req.settings, req.imatrix != nullptr);
  if (std::filesystem::exists(req.path)) {
    SensitivityProfile old = load_profile(req.path);
    if (old.model_fp != req.model_fp) {
      if (req.explicit_path)
        throw UsageError("profile " + req.path + " was measured on another model (" + old.model_desc +
                         "; weights hash " + hex64(old.model_fp) + ", this model " + hex64(req.model_fp) +
                         "): give another --profile path or delete it");
      out.why_measured = "the existing profile is for another model";
    } else if (old.settings_fp != settings_fp) {
      out.why_measured = "the existing profile was measured with other settings (--calib-ctx, --calib-chunks, "
                         "--profile-groups, imatrix presence)";
    } else if (old.imatrix_fp != req.imatrix_fp) {
      out.why_measured = "the existing profile was measured with another importance matrix";
    } else if (!req.calib_tokens.empty() &&
               old.calib_fp != calib_fingerprint(req.calib_tokens, req.add_bos, req.bos_id, req.settings)) {
      out.why_measured = "the existing profile was measured on another calibration text";
    } else {
      out.profile = std::move(old);
      out.reused = true;
      return out;
    }
  } else {
    out.why_measured = "no profile yet";
  }
  if (req.calib_tokens.empty())
    throw UsageError("a target allocation measures the model once on a calibration text (" + out.why_measured +
                     "): pass --calib FILE (e.g. WikiText-2's wiki.valid.raw, not the text you evaluate on) "
                     "or set SMOLQ_CALIB");
  ProfileInputs in;
  in.calib_tokens = req.calib_tokens;
  in.add_bos = req.add_bos;
  in.bos_id = req.bos_id;
  in.calib_desc = req.calib_desc;
  in.imatrix = req.imatrix;
  in.imatrix_fp = req.imatrix_fp;
  in.model_fp = req.model_fp;
  in.n_threads = req.threads;
  out.profile = build_profile(model, in, req.settings, log);
  save_profile(req.path, out.profile);
  return out;
}

std::string profile_id(const SensitivityProfile& p) {
  return hex64(ContentHasher().add(p.model_fp).add(p.calib_fp).add(p.imatrix_fp).add(p.settings_fp).digest());
}

std::map<std::string, MixCosts> profile_costs(const SensitivityProfile& p) {
  std::map<std::string, MixCosts> costs;
  for (size_t t = 0; t < p.tensors.size(); ++t) {
    MixCosts c;
    c.types = p.tensors[t].types;
    for (size_t k = 0; k < c.types.size(); ++k) c.cost.push_back(p.predict(t, k));
    costs[p.tensors[t].name] = std::move(c);
  }
  return costs;
}

}  // namespace smolq
