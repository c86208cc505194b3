#include "mix/target_mix.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "formats/content_hash.h"
#include "formats/error.h"
#include "formats/interrupt.h"
#include "eval/model.h"
#include "eval/perplexity_input.h"
#include "mix/profile_target.h"

namespace smolq {
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

std::vector<GgmlType> parse_excluded_types(const std::string& list) {
  std::vector<GgmlType> excluded;
  std::stringstream ss(list);
  for (std::string name; std::getline(ss, name, ',');) {
    const TypeGeometry* g = name.empty() ? nullptr : find_type(name);
    if (!g) throw UsageError("--exclude-types: unknown type '" + name + "'");
    excluded.push_back(g->id);
  }
  return excluded;
}

// The profile for build_target: reused when it matches, else measured on the calibration text.
ProfileOutcome find_profile(const TargetArgs& a, const std::string& model_path, const std::string& output_path,
                            const ImatrixData* imatrix, const std::string& imatrix_path, int threads) {
  ProfileSettings settings;
  settings.n_ctx = a.calib_ctx;
  settings.n_chunks = a.calib_chunks;
  settings.max_group_passes = a.profile_groups;
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
  req.imatrix_fp = imatrix ? ContentHasher().add("imatrix").add(fingerprint_file(imatrix_path)).digest() : 0;
  req.threads = threads;
  auto log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  if (!calib.empty())
    std::fprintf(stderr, "profile: %s (%s), calibration %s\n", model_path.c_str(), model->describe().c_str(), calib.c_str());
  ProfileOutcome got = obtain_profile(*model, req, log);
  const SensitivityProfile& prof = got.profile;
  if (got.reused)
    std::fprintf(stderr, "profile reused: %s (measured in %.1f s, %d forward passes; key %s)\n", req.path.c_str(),
                 prof.seconds, prof.forward_passes, profile_id(prof).c_str());
  else
    std::fprintf(stderr, "profile built in %.1f s (%d forward passes over the calibration text, %d threads; %s); saved %s\n",
                 prof.seconds, prof.forward_passes, threads, got.why_measured.c_str(), req.path.c_str());
  print_profile_summary(prof);
  return got;
}

}  // namespace

bool target_requested(const TargetArgs& a) { return !a.target_bpw.empty() || !a.target_size.empty(); }

TargetBuild allocate_target(const SensitivityProfile& prof, const MixTarget& target, const ModelSource& src,
                            const QuantizeOptions& base, const std::vector<GgmlType>& excluded) {
  TargetBuild b;
  b.target = target;
  MixInput in;
  in.costs = profile_costs(prof);
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
  const std::string pid = profile_id(prof);
  // The file with placeholder values of the final sizes (strings known now, f32 numbers): its
  // tensors and where their data starts are what the allocator plans against.
  QuantizeOptions q = base;
  q.dry_run = true;
  const std::vector<std::string> placeholder = mix_metadata_kv(target, pid, prof.calib_desc, 0.0, 0.0);
  q.override_kv.insert(q.override_kv.end(), placeholder.begin(), placeholder.end());
  const BuildPlan draft = src.plan(q);
  in.tensors = draft.tensors;
  in.data_offset = draft.layout.data_offset;
  in.alignment = draft.alignment;
  b.plan = plan_mix(in, target);

  b.options = base;
  b.options.assigned_types = b.plan.types;
  b.options.ftype = b.plan.label;
  const std::vector<std::string> kv =
      mix_metadata_kv(target, pid, prof.calib_desc, b.plan.predicted_kld, b.plan.bits_per_weight());
  b.options.override_kv.insert(b.options.override_kv.end(), kv.begin(), kv.end());
  b.file = src.plan(b.options);
  // The exact file this will write must be the allocator's.
  const uint64_t size = b.file.layout.file_size;
  if (target.by_size && (size != b.plan.file_size || size > target.file_size))
    throw Error("internal: planned file of " + std::to_string(size) + " bytes does not match the allocation (" +
                std::to_string(b.plan.file_size) + " bytes, target " + std::to_string(target.file_size) + ")");
  if (!target.by_size && b.file.quant && b.file.quant->plan.bits_per_weight() > target.bpw + 1e-12)
    throw Error("internal: planned bits per weight exceed the target");
  return b;
}

TargetBuild build_target(const TargetArgs& a, const ModelSource& src, const QuantizeOptions& base,
                         const std::string& output_path, const std::string& imatrix_path, int threads) {
  if (!a.target_bpw.empty() && !a.target_size.empty()) throw UsageError("give --target-bpw or --target-size, not both");
  if (a.calib_ctx < 16 || a.calib_chunks < 1 || a.profile_groups < 1)
    throw UsageError("--calib-ctx must be at least 16, --calib-chunks and --profile-groups at least 1");
  MixTarget target = a.target_size.empty() ? parse_target_bpw(a.target_bpw) : parse_target_size(a.target_size);
  if (!a.exclude_types.empty()) target.text += " excluding " + a.exclude_types;
  const std::vector<GgmlType> excluded = parse_excluded_types(a.exclude_types);

  const auto t0 = std::chrono::steady_clock::now();
  ProfileOutcome got = find_profile(a, src.path(), output_path, base.imatrix, imatrix_path, threads);
  TargetBuild b = allocate_target(got.profile, target, src, base, excluded);
  b.profile_path = a.profile.empty() ? default_profile_path(src.path(), output_path) : a.profile;
  b.profile_reused = got.reused;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "target %s: %zu tensors allocated, file %llu bytes, %.4f bpw, predicted KLD %.6f (%.1f s)\n",
               b.target.text.c_str(), b.plan.rows.size(), static_cast<unsigned long long>(b.plan.file_size),
               b.plan.bits_per_weight(), b.plan.predicted_kld, secs);
  return b;
}

}  // namespace smolq
