// Asymmetric calibration for error-feedback quantization (`--opt-inputs asym`, docs/optimize.md;
// the idea of GPTAQ, Li et al. 2025). In sequential calibration a layer's input x~ comes from the
// partly quantized model, while the model needs the quantized layer on x~ to reproduce the
// full-precision layer on the full-precision input x. Per row w, with H = sum x~ x~^T,
// C = sum x~ x^T (eval/gram.h: GramMatrix::c) and the sweep's dampening lambda:
//
//   |X~ w^ - X w|^2 + lambda |w^ - w|^2 = (w^ - w*)^T (H + lambda I) (w^ - w*) + const,
//   w* = (H + lambda I)^-1 (C w + lambda w) = w + (H + lambda I)^-1 (C - H) w,
//
// so the unchanged sweep (quantize/error_feedback.h), run on w* instead of w with the same damped
// H, minimises the asymmetric objective. (H + lambda I)^-1 = P U^T U P^T with the sweep's own
// factor U (visiting order P), so the shift costs three products per row (one dense, two
// triangular: 2 d_in^2 multiply-adds) and no second factorisation.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "quantize/error_feedback.h"

namespace smolq::ef {

// The operator w -> w + H~^-1 (C - H) w of one input site and factor, in the factor's visiting
// order: dt, a dense row-major d x d float matrix whose rows the deferred-update kernel streams
// (row b: column b of C - H), and copies of the factor's diagonal blocks of kShiftBatch rows
// with zeros below the diagonal. The rest of U is read in place from the factor's packed
// triangle (apply_asym_shift takes the factor). 4 d_in^2 + 1 KiB d_in bytes (at d_in = 8192:
// 264 MB; dense copies of U and U^T would add 512 MB).
inline constexpr int64_t kShiftBatch = 256;
struct AsymShift {
  int64_t d_in = 0;
  int block_elems = 0;
  std::vector<int64_t> col;  // visiting position a -> column of the original order
  std::vector<float> dt;
  // Block b (rows [b kShiftBatch, min(d, (b + 1) kShiftBatch))) at b kShiftBatch^2, rows of
  // kShiftBatch floats: diag[k][j - k0] = U[k][j] for j >= k, 0 below the diagonal.
  std::vector<float> diag;
};

// Builds the shift from H and C (d_in x d_in row-major doubles) and the factor prepare() made of
// H. Throws UsageError when the sizes do not match or C - H is not finite.
AsymShift prepare_asym_shift(std::span<const double> H, std::span<const double> C, const Factor& f, int n_threads);
// The same from D = float(C - H) (d_in x d_in row-major, as the calibration pass hands it over:
// eval/gram.h GramMatrix::c_minus_h). The vector overload consumes D: the shift's dense matrix
// is made in its storage, so D and the shift never both exist.
AsymShift prepare_asym_shift(std::span<const float> D, const Factor& f, int n_threads);
AsymShift prepare_asym_shift(std::vector<float> D, const Factor& f, int n_threads);

// The low-rank form (docs/optimize.md, "Cost"). C - H = X~^T (X - X~) over the N calibration
// tokens, so when N < d_in the shift of a row is G (D w) with D = X - X~ (N x d_in) and
// G = H~^-1 X~^T (d_in x N): 2 N d_in multiply-adds per row instead of 2 d_in^2, G made once per
// site and factor (N d_in^2: the two triangular products of AsymShift with the tokens as rows),
// and neither C nor C - H is summed or stored (8 N d_in bytes instead of 4 d_in^2). The same
// w* up to the order of the float operations.
struct AsymLowRank {
  int64_t d_in = 0;
  int64_t n = 0;           // tokens, padded to a multiple of 32 with zero rows
  std::vector<float> gt;   // n x d_in: row t = H~^-1 x~_t (original column order)
  std::vector<float> dxt;  // d_in x n: column t = x_t - x~_t
};

// From the two streams' inputs of one site (xq: the partly quantized model's, xf: the
// full-precision model's; n_tokens x d_in row-major each) and the factor of the site's H.
// G is made the cheaper of two ways (asym_push_through): with the factor (the tokens through
// U and U^T, N d_in^2 multiply-adds), or by the push-through identity
// (X~^T X~ + lambda I)^-1 X~^T = X~^T (X~ X~^T + lambda I)^-1 from the N x N token Gram matrix
// K (its Cholesky factor and inverse in float; about 1.5 N^2 d_in + N^3), which is much cheaper
// when N << d_in (ffn_down). Work goes in fixed tiles: the result does not depend on n_threads.
AsymLowRank prepare_asym_low_rank(std::span<const float> xq, std::span<const float> xf, int64_t n_tokens,
                                  const Factor& f, int n_threads);

// Whether prepare_asym_low_rank makes G by the push-through identity for n_tokens x d_in.
inline bool asym_push_through(int64_t n_tokens, int64_t d_in) {
  return 3 * n_tokens * d_in / 2 + n_tokens * n_tokens < d_in * d_in;
}

// W (rows x d_in, original column order) in place: w += alpha G (D w) (as apply_asym_shift).
void apply_asym_low_rank(const AsymLowRank& s, std::span<float> W, int64_t rows, int n_threads, float alpha = 1.0f);

// W (rows x d_in, original column order) in place: every row w becomes w + alpha (w* - w)
// (alpha = 1: w*; smaller values shrink the least-squares shift, as GPTAQ's reference code
// scales its asymmetric term). f: the factor the shift was made from. Rows go in fixed chunks:
// the result does not depend on n_threads.
void apply_asym_shift(const AsymShift& s, const Factor& f, std::span<float> W, int64_t rows, int n_threads,
                      float alpha = 1.0f);

}  // namespace smolq::ef
