// Calibration for error-feedback quantization (issue 17, docs/optimize.md): the Gram matrix
// H = sum_t x_t x_t^T of the input of every linear layer, over calibration tokens.
//
// The pass runs the model LAYER BY LAYER over all calibration tokens at once, not token batch
// by token batch through the whole model, so that only one layer's matrices exist at a time
// (ffn_down's H alone is n_ff^2 floats: 256 MiB at n_ff = 8192). Per layer, in graph order:
//
//   xn = rms_norm(x) * attn_norm        -> H(attn_in)   for attn_q, attn_k, attn_v
//   a  = attention(xn Wq^T, xn Wk^T, xn Wv^T)   (per chunk, causal, RoPE)
//                                       -> H(attn_out)  for attn_output
//   x += a Wo^T
//   xn = rms_norm(x) * ffn_norm         -> H(ffn_in)    for ffn_gate, ffn_up
//   g  = silu(xn Wgate^T) * (xn Wup^T)  -> H(ffn_down)  for ffn_down
//   x += g Wdown^T
//   after the last layer: rms_norm(x) * output_norm -> H(output) for an untied output.weight
//
// Each matrix is handed to a GramConsumer as soon as it is complete, BEFORE the pass uses the
// weights it feeds. A consumer that quantizes those weights and substitutes them into the model
// (Model::substitute_weight) makes every later site see the quantized earlier layers — the
// "sequential" calibration of GPTQ; one that does not leaves the pass in full precision. Either
// way the calibration costs one forward pass plus the Gram products.
//
// Asymmetric calibration (GramOptions::cross, `--opt-inputs asym`, docs/optimize.md): the pass
// also carries the FULL-PRECISION model's activations next to those of the partly quantized one
// (the original weights, never the substitutions) and hands over, with H = sum x~ x~^T of the
// quantized stream, the cross Gram matrix C = sum_t x~_t x_t^T of the two streams' inputs at the
// same site. The rounding can then aim the quantized layer on x~ at the full-precision layer on
// x (GPTAQ, Li et al. 2025). Cost: a second forward pass through the original weights, twice the
// activation memory, and C's full d x d products (H's are then full rows too: C - H needs both
// triangles of H in double, row by row; without C they are a lower triangle).
//
// Memory: each layer's stored weights are released from the resident set once the pass is past
// them (Model::release_pages), so the model file counts about one layer at a time; the residual stream, one normalised copy, the attention output and the gated FFN
// activations of all calibration tokens (N x (2 n_embd + q_dim + n_ff) floats), one H in float
// (and C - H in float), a group of their rows in double and a block of their products at a
// time. Arithmetic: f32 products through the forward pass's fixed-order matmul, summed in double
// per block of tokens, each element rounded to float once — the result does not depend on the
// thread count.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "eval/model.h"

namespace smolq {

// The input a group of weights shares.
enum class GramSite { kAttnIn, kAttnOut, kFfnIn, kFfnDown, kOutput };
const char* gram_site_name(GramSite s);

struct GramMatrix {
  GramSite site = GramSite::kAttnIn;
  int64_t layer = -1;                 // -1 for the output site
  std::vector<std::string> weights;   // GGUF names of the matrices reading this input
  int64_t dim = 0;                    // d_in
  int64_t n_tokens = 0;               // tokens summed
  // dim x dim, row-major, symmetric: sum_t x_t x_t^T, every element summed in double and rounded
  // to float once (the factorisation works in float; at d_in = 8192 this is 256 MB, not 512).
  std::vector<float> h;
  std::vector<double> h_diag;         // H's diagonal as summed, in double (dampening, importance)
  // With GramOptions::cross: dim x dim, row-major, C - H with C = sum_t x~_t x_t^T (x~: this
  // site's input in the partly quantized model, the one H is summed over; x: the same input in
  // the full-precision model), both summed in double, the difference taken in double and rounded
  // to float once. Not symmetric; exactly zero while nothing before the site was substituted.
  // Empty otherwise.
  std::vector<float> c_minus_h;
  // With GramOptions::cross at a site where gram_low_rank(n_tokens, dim): instead of C - H (left
  // empty), the two streams' inputs themselves, n_tokens x dim row-major each (xq: the partly
  // quantized model's, the one H is summed over; xf: the full-precision model's), from which
  // C - H = xq^T (xf - xq) has rank <= n_tokens < dim. They point into the pass's buffers:
  // valid during on_gram only.
  std::span<const float> xq, xf;
  // diag(H) / n_tokens: the mean squared input per column (the imatrix of these weights).
  std::vector<float> mean_square() const;
};

class GramConsumer {
 public:
  virtual ~GramConsumer() = default;
  // Called once per site, in graph order, with the complete matrix. May substitute the site's
  // weights in the model; the pass then continues with them. The pass does not read g after
  // the call: the consumer may take g.h and g.c_minus_h (the error-feedback driver releases H
  // row by row while it factorises: at d_in = 8192 it is 256 MB).
  virtual void on_gram(GramMatrix& g) = 0;
};

struct GramOptions {
  int64_t n_ctx = 512;     // tokens per chunk (attention is causal within a chunk)
  int64_t n_chunks = 8;    // chunks taken from the start of the token stream
  bool add_bos = false;    // replace each chunk's first token by bos_id (as perplexity does)
  int32_t bos_id = 1;
  bool output = true;      // also the output site, when output.weight is a separate tensor
  bool cross = false;      // also carry the full-precision stream and sum GramMatrix::c
  bool cross_low_rank = true;  // with cross: hand over the streams' inputs where gram_low_rank() (GramMatrix::xq)
  int n_threads = 1;
};

// Whether a cross site of dim inputs over n_tokens tokens is handed over in low-rank form
// (GramMatrix::xq, xf) rather than as C - H: n_tokens < dim, where C - H has rank < dim and its
// factors are smaller (2 n_tokens dim floats) and cheaper to sum and apply than the matrix.
inline bool gram_low_rank(int64_t n_tokens, int64_t dim) { return n_tokens < dim; }

// Chunks the pass will use from `n_tokens` tokens; throws UsageError when the text has not even
// one whole chunk.
int64_t gram_chunks(int64_t n_tokens, const GramOptions& o);

// Runs the layer-by-layer pass over the first gram_chunks() chunks of `tokens`.
void run_gram_pass(const Model& model, std::span<const int32_t> tokens, const GramOptions& o, GramConsumer& consumer);

// The Gram sums of one site over n tokens of d floats (row-major): H = sum xq_t xq_t^T and, with
// xf (the full-precision stream's tokens; nullptr for none), C - H with C = sum xq_t xf_t^T.
// f32 products through the forward pass's fixed-order matmul in blocks of tokens, summed in
// double for a group of rows of H (and C) at a time; each finished row is rounded to float
// (C - H: the difference in double, then rounded), so that only the float matrices and one
// group of double rows exist. Deterministic for any thread count. Fills g.h, g.h_diag and (with
// xf) g.c_minus_h for g.dim = d.
void gram_sums(GramMatrix& g, const float* xq, const float* xf, int64_t n, int n_threads);

}  // namespace smolq
