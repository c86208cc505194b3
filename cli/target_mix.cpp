#include "cli/target_mix.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "formats/error.h"
#include "formats/interrupt.h"
#include "verify/model.h"
#include "verify/perplexity_input.h"
#include "verify/profile_target.h"
#include "verify/sweep_cache.h"

namespace smolq::cli {
namespace {

namespace fs = std::filesystem;

std::string default_profile_path(const std::string& model_path, const std::string& output_path) {
  std::string m = model_path;
  while (m.size() > 1 && m.back() == '/') m.pop_back();
  std::string stem = fs::path(m).filename().string();
  if (fs::path(stem).extension() == ".gguf") stem = fs::path(stem).stem().string();
  fs::path dir = fs::path(output_path).parent_path();
  return (dir / (stem + ".smolq-profile.json")).string();
}

void print_profile_summary(const SensitivityProfile& p) {
  std::fprintf(stderr, "profile: %zu tensors, %zu gain groups, calibration %s (%lld positions)\n", p.tensors.size(),
               p.groups.size(), p.calib_desc.c_str(), static_cast<long long>(p.calib_positions));
  std::fprintf(stderr, "profile: predictor vs direct measurement on %zu single tensors: log-correlation %.3f, "
               "median measured/predicted %.3f\n", p.single_checks.size(), p.log_correlation, p.median_ratio);
  for (const auto& c : p.model_checks)
    std::fprintf(stderr, "profile: additivity, %s: sum of predicted %.5f, measured %.5f (ratio %.3f)\n", c.what.c_str(),
                 c.predicted, c.measured, c.predicted > 0 ? c.measured / c.predicted : 0.0);
}

}  // namespace

void add_target_options(po::options_description& opts, TargetArgs& a) {
  opts.add_options()
      ("target-bpw", po::value<std::string>(&a.target_bpw), "measured mixed precision: choose every weight's type for at most B bits per weight (all tensor bytes x 8 / all elements)")
      ("target-size", po::value<std::string>(&a.target_size), "measured mixed precision: the whole file at most S (94371840, 90MiB, 94.4MB)")
      ("calib", po::value<std::string>(&a.calib), "calibration text for the sensitivity profile (default $SMOLQ_CALIB; not your evaluation text)")
      ("profile", po::value<std::string>(&a.profile), "sensitivity profile file (default: <output folder>/<model>.smolq-profile.json); reused when it matches")
      ("calib-ctx", po::value<int64_t>(&a.calib_ctx)->default_value(256), "profile: calibration tokens per chunk")
      ("calib-chunks", po::value<int64_t>(&a.calib_chunks)->default_value(1), "profile: chunks of the calibration text")
      ("profile-groups", po::value<int>(&a.profile_groups)->default_value(40), "profile: gain measurements at most (layers are grouped in bands to fit)")
      ("exclude-types", po::value<std::string>(&a.exclude_types), "types the allocator may not use, comma-separated (e.g. IQ4_NL,Q2_K); the profile is unchanged");
}

bool target_requested(const TargetArgs& a) { return !a.target_bpw.empty() || !a.target_size.empty(); }

TargetDecision decide_target(const TargetArgs& a, const std::string& model_path, const std::string& output_path,
                             const ImatrixData* imatrix, const std::string& imatrix_path, int threads,
                             const PlanFileFn& plan_file) {
  if (!a.target_bpw.empty() && !a.target_size.empty()) throw UsageError("give --target-bpw or --target-size, not both");
  if (a.calib_ctx < 16 || a.calib_chunks < 1 || a.profile_groups < 1)
    throw UsageError("--calib-ctx must be at least 16, --calib-chunks and --profile-groups at least 1");
  TargetDecision d;
  d.target = a.target_size.empty() ? parse_target_bpw(a.target_bpw) : parse_target_size(a.target_size);
  if (!a.exclude_types.empty()) d.target.text += " excluding " + a.exclude_types;
  ProfileSettings settings;
  settings.n_ctx = a.calib_ctx;
  settings.n_chunks = a.calib_chunks;
  settings.max_group_passes = a.profile_groups;

  const auto t0 = std::chrono::steady_clock::now();
  // Measuring a profile takes minutes: Ctrl-C stops it between forward passes, cleanly.
  install_interrupt_handlers();
  std::unique_ptr<Model> model = Model::open(model_path);
  std::string calib = a.calib;
  if (calib.empty())
    if (const char* env = std::getenv("SMOLQ_CALIB")) calib = env;
  EvalTokens calib_tokens;
  if (!calib.empty()) calib_tokens = tokenize_text_file(*model, calib, /*parse_special=*/false);
  ProfileRequest req;
  req.explicit_path = !a.profile.empty();
  req.path = req.explicit_path ? a.profile : default_profile_path(model_path, output_path);
  req.settings = settings;
  req.model_fp = fingerprint_model(model_path);
  req.calib_tokens = calib_tokens.ids;
  req.add_bos = calib_tokens.add_bos;
  req.bos_id = calib_tokens.bos_id;
  req.calib_desc = fs::path(calib).filename().string() + ", first " + std::to_string(settings.n_ctx * settings.n_chunks) +
                   " tokens";
  req.imatrix = imatrix;
  req.imatrix_fp = imatrix ? CacheHasher().add("imatrix").add(fingerprint_file(imatrix_path)).digest() : 0;
  req.threads = threads;
  d.profile_path = req.path;
  auto log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  if (!calib.empty())
    std::fprintf(stderr, "profile: %s (%s), calibration %s\n", model_path.c_str(), model->describe().c_str(), calib.c_str());
  ProfileOutcome got = obtain_profile(*model, req, log);
  const SensitivityProfile& prof = got.profile;
  d.profile_reused = got.reused;
  if (got.reused)
    std::fprintf(stderr, "profile reused: %s (measured in %.1f s, %d forward passes; key %s)\n", req.path.c_str(),
                 prof.seconds, prof.forward_passes, profile_id(prof).c_str());
  else
    std::fprintf(stderr, "profile built in %.1f s (%d forward passes over the calibration text, %d threads; %s); saved %s\n",
                 prof.seconds, prof.forward_passes, threads, got.why_measured.c_str(), req.path.c_str());
  print_profile_summary(prof);

  MixInput in;
  in.costs = profile_costs(prof);
  if (!a.exclude_types.empty()) {
    std::vector<GgmlType> excluded;
    std::stringstream ss(a.exclude_types);
    for (std::string name; std::getline(ss, name, ',');) {
      const TypeGeometry* g = name.empty() ? nullptr : find_type(name);
      if (!g) throw UsageError("--exclude-types: unknown type '" + name + "'");
      excluded.push_back(g->id);
    }
    for (auto& [name, c] : in.costs) {
      MixCosts kept;
      for (size_t k = 0; k < c.types.size(); ++k)
        if (std::find(excluded.begin(), excluded.end(), c.types[k]) == excluded.end()) {
          kept.types.push_back(c.types[k]);
          kept.cost.push_back(c.cost[k]);
        }
      if (kept.types.empty()) throw UsageError("--exclude-types leaves tensor '" + name + "' no type");
      c = std::move(kept);
    }
  }
  const std::string pid = profile_id(prof);
  // The header with placeholder values of the final sizes (strings known now, f32 numbers).
  PlannedFile f = plan_file(mix_metadata_kv(d.target, pid, prof.calib_desc, 0.0, 0.0));
  in.tensors = f.tensors;
  in.data_offset = f.data_offset;
  in.alignment = f.alignment;
  d.plan = plan_mix(in, d.target);
  d.mix_kv = mix_metadata_kv(d.target, pid, prof.calib_desc, d.plan.predicted_kld, d.plan.bits_per_weight());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "target %s: %zu tensors allocated, file %llu bytes, %.4f bpw, predicted KLD %.6f (%.1f s)\n",
               d.target.text.c_str(), d.plan.rows.size(), static_cast<unsigned long long>(d.plan.file_size),
               d.plan.bits_per_weight(), d.plan.predicted_kld, secs);
  return d;
}

void check_target_met(const TargetDecision& d, uint64_t planned_file_size, double planned_bpw) {
  if (d.target.by_size && (planned_file_size != d.plan.file_size || planned_file_size > d.target.file_size))
    throw Error("internal: planned file of " + std::to_string(planned_file_size) + " bytes does not match the allocation (" +
                std::to_string(d.plan.file_size) + " bytes, target " + std::to_string(d.target.file_size) + ")");
  if (!d.target.by_size && planned_bpw > d.target.bpw + 1e-12)
    throw Error("internal: planned bits per weight exceed the target");
}

}  // namespace smolq::cli
