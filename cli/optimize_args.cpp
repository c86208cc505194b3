#include "cli/optimize_args.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>

#include "formats/error.h"
#include "quantize/error_feedback.h"
#include "eval/model.h"
#include "eval/perplexity_input.h"
#include "formats/content_hash.h"

namespace smolq::cli {
namespace {

ef::ColumnOrder parse_order(const std::string& s) {
  if (s == "act") return ef::ColumnOrder::kDescendingDiag;
  if (s == "natural") return ef::ColumnOrder::kNatural;
  throw UsageError("--opt-order must be act or natural, not '" + s + "'");
}

std::string number(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

}  // namespace

void add_optimize_options(po::options_description& opts, OptimizeArgs& a) {
  OptimizeSettings& s = a.settings;
  opts.add_options()
      ("optimize", "error-feedback rounding (docs/optimize.md): same types and size, lower error; needs --calib TEXT")
      ("opt-inputs", po::value<std::string>(&a.inputs)->default_value(a.inputs), "optimize: what later layers see while calibrating: sequential (the quantized earlier layers) or full (full precision)")
      ("opt-damp", po::value<double>(&s.damp)->default_value(s.damp), "optimize: dampening of H, as a fraction of its mean diagonal")
      ("opt-order", po::value<std::string>(&s.order)->default_value(s.order), "optimize: column order: act (largest mean square input first) or natural")
      ("opt-chunks", po::value<int64_t>(&s.n_chunks)->default_value(s.n_chunks), "optimize: calibration chunks")
      ("opt-ctx", po::value<int64_t>(&s.n_ctx)->default_value(s.n_ctx), "optimize: calibration tokens per chunk");
}

void finish_optimize_args(const po::variables_map& vm, OptimizeArgs& a) {
  a.optimize = vm.count("optimize") > 0;
  if (a.inputs != "sequential" && a.inputs != "full")
    throw UsageError("--opt-inputs must be sequential or full, not '" + a.inputs + "'");
  a.settings.sequential = a.inputs == "sequential";
  if (!(a.settings.damp > 0.0 && a.settings.damp < 1.0)) throw UsageError("--opt-damp must be in (0, 1)");
  parse_order(a.settings.order);
  if (a.settings.n_chunks < 1 || a.settings.n_ctx < 16)
    throw UsageError("--opt-chunks must be at least 1 and --opt-ctx at least 16");
  if (!a.optimize) {
    for (const char* k : {"opt-inputs", "opt-damp", "opt-order", "opt-chunks", "opt-ctx"})
      if (vm.count(k) && !vm[k].defaulted()) throw UsageError(std::string("--") + k + " needs --optimize");
  }
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
  const OptimizeSettings& s = a.settings;
  const std::string p = "smolq.optimize.";
  return {
      p + "method=str:error-feedback",
      p + "calib.file=str:" + std::filesystem::path(calib_path).filename().string(),
      p + "calib.xxh3=str:" + hex64(fingerprint_file(calib_path)),
      p + "calib.chunks=int:" + std::to_string(s.n_chunks),
      p + "calib.ctx=int:" + std::to_string(s.n_ctx),
      p + "inputs=str:" + a.inputs,
      p + "damp=float:" + number(s.damp),
      p + "order=str:" + s.order,
      p + "importance=str:" + (user_imatrix ? "imatrix file" : "diag(H)/n"),
  };
}

OptimizeOutcome run_optimize(const OptimizeArgs& a, const std::string& model_path, const std::string& calib_path,
                             std::vector<OutputTensor>& outputs, int threads, bool quiet) {
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
  ef::Settings es;
  es.damp = a.settings.damp;
  es.order = parse_order(a.settings.order);
  // One factorisation of H per site and block size, shared by q/k/v and by gate/up.
  struct FactorCache {
    int64_t layer = -2;
    GramSite site = GramSite::kAttnIn;
    std::map<int, ef::Factor> by_block;
  };
  auto cache = std::make_shared<FactorCache>();
  req.round = [es, cache](GgmlType type, std::span<const float> w, int64_t rows, int64_t d, const GramMatrix& g,
                          std::span<const float> imp, std::span<std::byte> out, int n_threads) {
    if (cache->layer != g.layer || cache->site != g.site) {
      cache->by_block.clear();
      cache->layer = g.layer;
      cache->site = g.site;
    }
    const int be = static_cast<int>(type_info(type).block_elems);
    auto it = cache->by_block.find(be);
    if (it == cache->by_block.end()) it = cache->by_block.emplace(be, ef::prepare(g.h, d, be, es, n_threads)).first;
    ef::quantize_tensor(type, w, rows, d, it->second, imp, out, n_threads);
  };
  req.supports = [](GgmlType t) { return ef::supports(t); };
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
