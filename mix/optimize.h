// `--optimize` (issue 17, docs/optimize.md): a whole model quantized with error feedback.
//
// The per-tensor plan is the plain quantizer's (llama.cpp's mixtures, fallbacks for 576/960-wide
// rows, or the target allocator's types): this driver only changes HOW the weights of every
// matrix with a Gram matrix are rounded into their planned type. It runs the layer-by-layer
// calibration pass (verify/gram.h); at every site it reads the site's weights from the
// calibration model, rounds each with the tensor rounder (the error-feedback core,
// quantize/error_feedback.h) given H, and stores the bytes as the tensor's output. Tensors
// without a Gram matrix (token_embd, a tied output, norms) are written plainly as planned.
//
// Inputs seen by later layers ("sequential", the default): every site's weights are substituted
// into the calibration model as soon as they are rounded, so each later H is measured on the
// activations of the already-quantized model, and the rounding of a layer compensates what the
// layers before it lost. With sequential = false the pass stays in full precision. Asymmetric
// (sequential + asymmetric): the pass also carries the full-precision stream and the rounder aims
// each layer on the quantized inputs at the full-precision layer on the full-precision inputs
// (quantize/ef_asym.h); tensors of types the core does not handle are rounded plainly as usual.
//
// Importance for the scale searches: the --imatrix vector when one was given and it covers the
// tensor (so a comparison "same imatrix as llama-quantize" holds literally), else diag(H)/n —
// the mean squared input, which is what llama-imatrix would measure on the same activations.
//
// Memory: with OptimizeRequest::write, every rounded tensor goes to the output file as soon as it
// is made and its bytes are held only while the pass is still in its layer; without, the bytes
// of all optimised tensors are held until the file is written (about the file's size). Plus the
// calibration pass (eval/gram.h). Output bytes do not depend on the thread count when the
// rounder's do not, nor on whether `write` is set.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "formats/ggml_types.h"
#include "quantize/error_feedback.h"
#include "quantize/model_writer.h"
#include "eval/gram.h"
#include "eval/model.h"

namespace smolq {

// The settings recorded in the file (smolq.optimize.*) and shown by `smolq inspect`.
struct OptimizeSettings {
  int64_t n_ctx = 512;       // calibration tokens per chunk
  int64_t n_chunks = 8;      // calibration chunks (from the start of the text)
  bool sequential = true;    // later layers see the quantized earlier ones
  // With sequential: round each layer towards the full-precision layer on the full-precision
  // inputs (the asymmetric target of quantize/ef_asym.h, `--opt-inputs asym`).
  bool asymmetric = true;
  double asym_alpha = 1.0;   // with asymmetric: the fraction of the shift to w* applied (ef_asym.h)
  // The same for the lattice families (IQ2 / IQ3); < 0 = asym_alpha. Recorded as
  // smolq.optimize.lattice_asym_alpha when it differs (docs/optimize.md, "What was tried").
  double lattice_asym_alpha = 0.5;
  double damp = ef::Settings{}.damp;  // H += damp * mean(diag H) * I (the core's measured default)
  std::string order = "act"; // column order name understood by the core ("act": by diag(H), "natural")
  int refit_rounds = ef::Settings{}.refit_rounds;  // scale refits after the sweep (0 = none)
  int cd_iters = ef::Settings{}.cd_iters;  // coordinate-descent passes after the sweep (0 = none; quantize/ef_cd.h)
};

// Rounds one matrix given its input's Gram matrix g (g.h: d_in x d_in floats) into `out`
// (rows * row_bytes(type, d_in)). Called for every weight of a site in turn with the same g, so
// a rounder may reuse work per (g.layer, g.site), e.g. one factorisation of H for q, k and v.
using TensorRounder = std::function<void(GgmlType type, std::span<const float> w, int64_t rows, int64_t d_in,
                                         const GramMatrix& g, std::span<const float> importance,
                                         std::span<std::byte> out, int n_threads)>;

// Called once per site before its tensors are rounded, with the types of the tensors the core
// will round there (those `supports` accepts): a rounder may make everything it needs from H
// at once and take g.h (then empty for the TensorRounder calls that follow; g.dim stays).
using SitePreparer = std::function<void(GramMatrix& g, std::span<const GgmlType> types, int n_threads)>;

struct OptimizeRequest {
  std::vector<int32_t> tokens;     // the calibration text, tokenized for the model
  GramOptions gram;                // chunking, BOS, threads
  bool sequential = true;
  bool asymmetric = false;         // with sequential: the pass also sums GramMatrix::c (eval/gram.h)
  TensorRounder round;             // the error-feedback core
  SitePreparer prepare;            // its per-site preparation (may be empty)
  std::function<bool(GgmlType)> supports;  // types the core handles; others are rounded plainly
  std::function<void(const std::string&)> log;  // one line per site (may be empty)
  // When set, each rounded tensor is handed here as soon as it is made (`quantize --optimize`
  // writes it at its final offset of the output: quantize/model_writer.h place_tensor) and its
  // passthrough stays empty; the bytes are freed once the pass has left the tensor's layer.
  // When empty, the bytes become the tensor's passthrough, owned by OptimizeOutcome::storage.
  std::function<void(const OutputTensor&, std::span<const std::byte>)> write;
};

struct OptimizeOutcome {
  int optimized = 0;       // tensors rounded with error feedback
  int plain = 0;           // tensors with H whose type the core does not handle (rounded plainly)
  int from_imatrix = 0;    // of those, importance from the --imatrix file (else diag(H)/n)
  int64_t calib_tokens = 0;
  double seconds = 0;
  double round_seconds = 0;  // of which rounding (the rest: calibration forward + Gram products)
  // Without OptimizeRequest::write: owns the bytes the OutputTensors' passthrough spans point
  // to; keep alive until written.
  std::vector<std::unique_ptr<std::vector<std::byte>>> storage;
};

// Rounds every output tensor that has a Gram matrix and a quantized planned type, replacing its
// source by the encoded bytes (OutputTensor::passthrough), or handing them to req.write. `model` is the calibration model: the
// same weights as the outputs' sources (it is modified by sequential substitution and restored
// before returning). Throws Error when a tensor that needs an importance matrix got none.
OptimizeOutcome optimize_outputs(Model& model, std::vector<OutputTensor>& outputs, const OptimizeRequest& req);

// The column order named `s` ("act" or "natural"); UsageError otherwise.
ef::ColumnOrder parse_column_order(const std::string& s);

// The error-feedback core with settings `s`: one factorisation of H per site and block size,
// shared by the site's tensors (q/k/v, gate/up). `prepare` makes all of a site's factors at
// once and consumes H with the last one (its rows are released as the factorisation's float
// copy takes them: H and the copy never both exist in full); `round` alone (no prepare) makes
// each factor when first needed from the intact H. With s.asymmetric and a GramMatrix carrying
// C, each tensor is shifted to its asymmetric target first (quantize/ef_asym.h): prepare forms
// C - H in C's storage before H is consumed and one shift operator per site and block size;
// at a site handed over in low-rank form (GramMatrix::xq, fewer tokens than inputs) it makes
// G = H~^-1 X~^T per block size instead (ef::AsymLowRank).
// Not thread-safe (one pass).
struct ErrorFeedbackCore {
  TensorRounder round;
  SitePreparer prepare;
};
ErrorFeedbackCore error_feedback_core(const OptimizeSettings& s);
TensorRounder error_feedback_rounder(const OptimizeSettings& s);  // error_feedback_core(s).round

// smolq.optimize.* as --override-kv specs (the file records what it was optimised on): method,
// calibration text name and its XXH3-64 (hex), chunks x tokens, inputs (sequential, full or
// asym), damping, column order,
// and where the scale searches' importance comes from. `smolq quantize/convert --optimize` and
// `smolq verify`'s TYPE+opt rows write the same keys.
std::vector<std::string> optimize_metadata_kv(const OptimizeSettings& s, const std::string& calib_name,
                                              const std::string& calib_xxh3, bool user_imatrix);

}  // namespace smolq
