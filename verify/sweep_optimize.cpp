// Error-feedback rows of `smolq verify` ("Q4_K_M+opt", docs/optimize.md): the standard mixture's
// file, every matrix with a calibrated input rounded by the error-feedback core (mix/optimize.h)
// instead of block by block, so the report shows optimised and plain files of the same type and
// size side by side. Calibration: the sweep's calibration tokens (a separate --calib, or the first
// half of the evaluation text, which is then not evaluated), in chunks of the sweep's context;
// the file records it in smolq.optimize.* like `smolq quantize --optimize` does.
#include <algorithm>
#include <string>

#include "formats/content_hash.h"
#include "formats/error.h"
#include "mix/optimize.h"
#include "verify/sweep_cache.h"
#include "verify/sweep_internal.h"

namespace smolq::sweep {
namespace {

// The core's defaults, with chunks of the sweep's context (at most the default count).
OptimizeSettings row_settings(const Context& c) {
  OptimizeSettings s;
  s.n_ctx = c.eval.n_ctx;
  s.n_chunks = std::clamp<int64_t>(static_cast<int64_t>(c.calib_tokens.size()) / std::max<int64_t>(1, s.n_ctx), 1,
                                   s.n_chunks);
  return s;
}

}  // namespace

uint64_t optimize_settings_fp(const Context& c) {
  const OptimizeSettings s = row_settings(c);
  ContentHasher h;
  h.add("optimize").add(c.calib_fp).add(static_cast<uint64_t>(s.n_ctx)).add(static_cast<uint64_t>(s.n_chunks))
      .add(std::to_string(s.damp)).add(s.order).add(static_cast<uint64_t>(s.sequential));
  if (s.asymmetric) h.add("asym").add(std::to_string(s.asym_alpha));  // absent otherwise: the rows cached before it keep their keys
  if (s.asymmetric && s.lattice_asym_alpha >= 0.0 && s.lattice_asym_alpha != s.asym_alpha)
    h.add("lattice-alpha").add(std::to_string(s.lattice_asym_alpha));  // the IQ2 / IQ3 families' own shift
  if (s.cd_iters > 0) h.add("cd").add(static_cast<uint64_t>(s.cd_iters));  // the coordinate-descent passes
  return h.digest();
}

WriteResult build_optimized_quant(Context& c, FileType ft, const std::string& out, const std::string& stage,
                                  int& imatrix_used) {
  if (c.calib_tokens.empty()) throw Error("internal: +opt rows need calibration tokens");
  const OptimizeSettings s = row_settings(c);
  QuantizeOptions q = quant_options(c, ft);
  q.importance_from_calibration = !c.imatrix;  // IQ2/IQ3 take diag(H)/n from the Gram pass
  const auto kv = optimize_metadata_kv(s, c.calib_desc, hex64(c.calib_fp), c.imatrix.has_value());
  q.override_kv.insert(q.override_kv.end(), kv.begin(), kv.end());
  BuildPlan plan = build_source(c).plan(q);

  OptimizeRequest req;
  req.tokens = c.calib_tokens;
  req.gram.n_ctx = s.n_ctx;
  req.gram.n_chunks = s.n_chunks;
  req.gram.add_bos = c.eval.add_bos;
  req.gram.bos_id = c.eval.bos_id;
  req.gram.n_threads = c.eval.n_threads;
  req.sequential = s.sequential;
  req.asymmetric = s.asymmetric;
  const ErrorFeedbackCore core = error_feedback_core(s);
  req.round = core.round;
  req.prepare = core.prepare;
  req.supports = [](GgmlType t) { return ef::supports(t); };
  c.log("  optimize: " + std::to_string(s.n_chunks) + " x " + std::to_string(s.n_ctx) + " tokens of " + c.calib_desc);
  // The outcome owns the optimised tensors' bytes until the file is written.
  const OptimizeOutcome o = optimize_outputs(*c.base, plan.outputs, req);
  c.log("  optimize: " + std::to_string(o.optimized) + " tensors with error feedback, " + std::to_string(o.plain) +
        " plain, " + std::to_string(static_cast<int>(o.seconds)) + " s");
  return write_quant(c, plan, out, stage, imatrix_used);
}

}  // namespace smolq::sweep
