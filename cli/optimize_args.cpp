#include "cli/optimize_args.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "formats/error.h"
#include "quantize/error_feedback.h"
#include "quantize/mixtures.h"
#include "eval/model.h"
#include "eval/perplexity_input.h"
#include "formats/content_hash.h"

namespace smolq::cli {

void add_optimize_options(po::options_description& opts, OptimizeArgs& a) {
  OptimizeSettings& s = a.settings;
  opts.add_options()
      ("optimize", "error-feedback rounding (docs/optimize.md): same types and size, lower error; needs --calib TEXT")
      ("opt-inputs", po::value<std::string>(&a.inputs)->default_value(a.inputs), "optimize: what later layers see while calibrating: sequential (the quantized earlier layers), full (full precision) or asym (sequential, each layer aimed at the full-precision layer on full-precision inputs)")
      ("opt-asym-alpha", po::value<double>(&s.asym_alpha)->default_value(s.asym_alpha), "optimize, --opt-inputs asym: fraction of the shift towards the asymmetric target applied (0..1)")
      ("opt-damp", po::value<double>(&s.damp)->default_value(s.damp), "optimize: dampening of H, as a fraction of its mean diagonal")
      ("opt-order", po::value<std::string>(&s.order)->default_value(s.order), "optimize: column order: act (largest mean square input first) or natural")
      ("opt-chunks", po::value<int64_t>(&s.n_chunks)->default_value(s.n_chunks), "optimize: calibration chunks (IQ2 / IQ3 file types: 16 unless given)")
      ("opt-ctx", po::value<int64_t>(&s.n_ctx)->default_value(s.n_ctx), "optimize: calibration tokens per chunk")
      ("opt-refit", po::value<int>(&s.refit_rounds)->default_value(s.refit_rounds), "optimize: least-squares refits of the block scales after the sweep (0 = none; docs/optimize.md)")
      ("opt-cd", po::value<int>(&s.cd_iters)->default_value(s.cd_iters), "optimize: coordinate-descent passes over the rounded levels after the sweep (0 = none; docs/optimize.md)");
}

void finish_optimize_args(const po::variables_map& vm, OptimizeArgs& a) {
  a.optimize = vm.count("optimize") > 0;
  if (a.inputs != "sequential" && a.inputs != "full" && a.inputs != "asym")
    throw UsageError("--opt-inputs must be sequential, full or asym, not '" + a.inputs + "'");
  a.settings.sequential = a.inputs != "full";
  a.settings.asymmetric = a.inputs == "asym";
  if (!(a.settings.asym_alpha >= 0.0 && a.settings.asym_alpha <= 1.0)) throw UsageError("--opt-asym-alpha must be in [0, 1]");
  if (vm.count("opt-asym-alpha") && !vm["opt-asym-alpha"].defaulted() && !a.settings.asymmetric)
    throw UsageError("--opt-asym-alpha needs --opt-inputs asym");
  if (!(a.settings.damp > 0.0 && a.settings.damp < 1.0)) throw UsageError("--opt-damp must be in (0, 1)");
  parse_column_order(a.settings.order);
  if (a.settings.n_chunks < 1 || a.settings.n_ctx < 16)
    throw UsageError("--opt-chunks must be at least 1 and --opt-ctx at least 16");
  if (a.settings.refit_rounds < 0 || a.settings.refit_rounds > 4) throw UsageError("--opt-refit must be 0 to 4");
  if (a.settings.cd_iters < 0 || a.settings.cd_iters > 16) throw UsageError("--opt-cd must be 0 to 16");
  if (!a.optimize) {
    for (const char* k : {"opt-inputs", "opt-asym-alpha", "opt-damp", "opt-order", "opt-chunks", "opt-ctx", "opt-refit", "opt-cd"})
      if (vm.count(k) && !vm[k].defaulted()) throw UsageError(std::string("--") + k + " needs --optimize");
  }
}

void lattice_default_chunks(const po::variables_map& vm, OptimizeArgs& a, FileType ft) {
  if (!a.optimize || (vm.count("opt-chunks") && !vm["opt-chunks"].defaulted())) return;
  if (ef::is_lattice(file_type_info(ft).default_type)) a.settings.n_chunks = kLatticeOptChunks;
}

std::string resolve_calib(const std::string& calib_arg) {
  std::string calib = calib_arg;
  if (calib.empty())
    if (const char* env = std::getenv("SMOLQ_CALIB")) calib = env;
  if (calib.empty())
    throw UsageError("--optimize needs calibration text: pass --calib FILE (e.g. WikiText-2's wiki.train.raw, never "
                     "the text you evaluate on) or set SMOLQ_CALIB");
  if (!std::filesystem::is_regular_file(calib)) throw UsageError("calibration text '" + calib + "' is not a file");
  return calib;
}

std::vector<std::string> optimize_metadata_kv(const OptimizeArgs& a, const std::string& calib_path, bool user_imatrix) {
  return smolq::optimize_metadata_kv(a.settings, std::filesystem::path(calib_path).filename().string(),
                                     hex64(fingerprint_file(calib_path)), user_imatrix);
}

OptimizeOutcome run_optimize(const OptimizeArgs& a, const std::string& model_path, const std::string& calib_path,
                             std::vector<OutputTensor>& outputs, int threads, bool quiet, GgufWriter* out) {
  std::unique_ptr<Model> model = Model::open(model_path);
  const EvalTokens calib = tokenize_text_file(*model, calib_path, /*parse_special=*/false);
  OptimizeRequest req;
  req.tokens = calib.ids;
  req.gram.n_ctx = a.settings.n_ctx;
  req.gram.n_chunks = a.settings.n_chunks;
  req.gram.add_bos = calib.add_bos;
  req.gram.bos_id = calib.bos_id;
  req.gram.n_threads = threads;
  req.sequential = a.settings.sequential;
  req.asymmetric = a.settings.asymmetric;
  const ErrorFeedbackCore core = error_feedback_core(a.settings);
  req.round = core.round;
  req.prepare = core.prepare;
  req.supports = [](GgmlType t) { return ef::supports(t); };
  if (out && out->can_place())
    req.write = [out](const OutputTensor& t, std::span<const std::byte> bytes) { place_tensor(*out, t, bytes); };
  if (!quiet) req.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  if (!quiet)
    std::fprintf(stderr, "optimize: calibrating on %s (%lld x %lld tokens, %s inputs), %d threads\n", calib_path.c_str(),
                 static_cast<long long>(gram_chunks(static_cast<int64_t>(calib.ids.size()), req.gram)),
                 static_cast<long long>(a.settings.n_ctx), a.inputs.c_str(), threads);
  OptimizeOutcome r = optimize_outputs(*model, outputs, req);
  if (!quiet)
    std::fprintf(stderr, "optimize: %d tensors with error feedback, %d rounded plainly (type not handled), %.1f s "
                 "(%.1f s rounding, %.1f s calibration pass)\n", r.optimized, r.plain, r.seconds, r.round_seconds,
                 r.seconds - r.round_seconds);
  return r;
}

}  // namespace smolq::cli
