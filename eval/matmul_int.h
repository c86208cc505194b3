// The integer matmul of block-quantized weights: y = x * W^T with W kept as small integers
// (quantize/weight_ints.h) and every activation row quantized to int16 per block of 32, so the
// products inside a weight group (32 weights; 16 for Q6_K) are one exact integer sum
// (AVX-512 VNNI vpdpwssd: 32 int16 products per instruction) and floats appear once per group,
// where the scales are applied.
//
// Layout: the 16 int32 lanes of a register are 16 weight rows (a "panel"). Weights are packed
// per panel as, for every pair of columns, the 16 rows' two values (64 bytes); a token's pair
// of activations is broadcast to all lanes, so one vpdpwssd adds two products to each of the 16
// rows' sums. Any row length that is a whole number of groups fills every lane (576 = 18
// groups costs 18 groups, not two 16-group steps), the outputs of 16 rows come out in one
// register (no horizontal sums), and only the last panel of a matrix whose row count is not a
// multiple of 16 has idle lanes.
//
// Numerics (docs/evaluator.md has the measured effect on perplexity and KL divergence):
//   activations: per block of 32, d = max|x| / 32767, xq = round_half_even(x * (1 / d)) as
//     int16, so |x - d * xq| <= d / 2 (+ the rounding of x * (1 / d)) = max|x| / 65534: the only
//     approximation of this path (llama.cpp quantizes its activations to 8 bits, max|x| / 254,
//     for these weight types);
//   weights: exact for the block types (the stored integers minus the type's offset, and the
//     dequantizer's f32 scales and biases). F16 (by default; BF16 with SMOLQ_EVAL_MATMUL=int,
//     as its exactness against f32 references is part of other contracts; F32 never: it is
//     the reference format, and eval/gram.cpp's f32 products go through matmul()) are
//     re-quantized per block of 32 of a row (detail::requantize_block):
//     d_w = max|w| / 8191, q = round_half_even(w / d_w), |w - d_w q| <= d_w / 2 = max|w| / 16382,
//     with activations of 14 bits (max|x| / 8191, error <= max|x| / 16382) so that a group's
//     32 products stay below 2^31: 8191 * 8191 * 32 = 2146959392. Of the splits that fit
//     (12/16, 13/15, 14/14 bits), 14/14 gave the smallest logit error on the real SmolLM2-135M
//     F16 (4 x 512 tokens against the f32 reference: rms |dlogit| 8.5e-3 / 4.9e-3 / 4.6e-3,
//     mean KLD 7.0e-6 / 1.8e-6 / 1.5e-6; the Q8_0 file is 1.3e-3 from the F16's reference) and
//     on the 256-aligned synthetic F16 (mean KLD 9.4e-9 / 4.2e-9). The panels are made once per
//     matrix and kept (IntPanelCache: 2 bytes per weight), by requantize_block_avx512 on the
//     AVX-512 path and requantize_block on the reference (the same bits);
//   per output (row r, token t), groups g in increasing order, one f32 accumulator from 0:
//     isum = sum over the group of (q - offset) * xq, exact in int32 (|isum| < 2^27; < 2^31
//     for the re-quantized types), then
//     acc = fma(float(isum), scale_w[r][g] * d_x[g], acc), then, for the asymmetric types,
//     acc = fma(bias_w[r][g], sum of the group's original activations (halving tree), acc).
//   float(isum) rounds to nearest (exact below 2^24; above, 2^-24 relative).
// Every output value is computed the same way whatever the tiling, the batch and the thread
// count, and the portable reference kernel performs the same operations (std::fma), so the
// results are bit-identical between the AVX-512 kernel and the reference, for any --threads
// and any batch split.
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

#include "eval/model.h"
#include "quantize/weight_ints.h"

namespace smolq {

// Which matmul the forward pass uses for weights with an integer form: SMOLQ_EVAL_MATMUL=f32
// (the f32 reference path for every type), =int (the integer path, BF16 included),
// unset: the default (the integer path for the block types and F16; read once; any other
// value is a UsageError).
bool int_matmul_enabled();

// True when matmul() takes the integer path for `w` here: enabled, a type it takes (above),
// whole blocks of 32 columns, and AVX-512 VNNI (not capped by SMOLQ_SIMD).
bool uses_int_matmul(const WeightMatrix& w);

// Re-quantized panels of one F16/BF16 matrix, in panel order (2 bytes per weight and 4 per
// block of 32 and row): filled by the first matmul_int call on the matrix (by the threads that
// pack the tiles, so it costs what one call's packing costs), then read by every later call.
// Filled for the stored bytes at `data` in `row_order`; a call on a matrix whose type, data,
// shape or row order differ repacks it. Calls on one matrix are serialized by `mutex`.
struct IntPanelCache {
  std::mutex mutex;
  std::vector<std::byte> buf;
  bool filled = false;
  const std::byte* data = nullptr;
  GgmlType type = GgmlType::F32;
  uint64_t rows = 0, cols = 0;
  std::vector<uint32_t> row_order;
};
// Give `w` an empty IntPanelCache when it is F16/BF16, the integer path takes it and its panels
// fit in *budget bytes (then subtracted); else leave it null: matmul_int then re-quantizes
// and packs the panels on every call (the same bits, ~10-20% slower). Model::open gives a
// model kIntPanelCacheBudget, matrices in Model::matrices() order: all of a 135M-360M F16
// model, part of a 1.7B one (its F16 file alone is 3.4 GB).
constexpr uint64_t kIntPanelCacheBudget = uint64_t{1} << 30;
void attach_int_panel_cache(WeightMatrix& w, uint64_t* budget);

// The types the integer path takes: those with an integer form (quantize/weight_ints.h) and
// F16/BF16 (re-quantized per block of 32, see the numerics above; uses_int_matmul says
// which of them it takes here).
bool has_int_form(GgmlType t);

// The integer path with the chosen kernel: the AVX-512 VNNI one, or the portable reference
// (`reference` = true, any CPU). `w.type` must have an integer form and w.cols be a multiple of 32.
void matmul_int(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int n_threads, bool reference);

namespace detail {

constexpr int kPanelRows = 16;  // weight rows per panel: one per int32 lane of a 512-bit register
// Integer bounds: activations against the block types' weights (|q - offset| <= 128), and the
// F16/BF16 split (re-quantized weights, activations): |w| * |x| * 32 < 2^31 (see above).
constexpr float kActMax = 32767.0f;
constexpr float kWideWeightMax = 8191.0f;
constexpr float kWideActMax = 8191.0f;

// One panel of 16 weight rows (layout above): q[k * 16] int16 (pair p of columns at
// q + 32 * p: row r's two values at 2r, 2r + 1), per group g the 16 rows' scales at
// scale + 16 * g and biases at bias + 16 * g (bias null for symmetric types). Rows past the
// matrix are zeros.
struct IntPanel {
  const int16_t* q;
  const float* scale;
  const float* bias;
};
// One quantized activation row: q[k] int16 in natural order; per weight group its block's d
// and the sum of the group's original activations (asymmetric types only).
struct IntToken {
  const int16_t* q;
  const float* scale;
  const float* sum;
};

// pm (1..2) panels x rn (1..6) tokens over `groups` groups of `group` (16 or 32) columns:
// y[t * ldy + 16 * p + r] for the first `rows` (1..16 * pm) rows of the panels.
using IntTileFn = void (*)(const IntPanel* w, int pm, const IntToken* x, int rn, int64_t groups, int group, bool bias,
                           int rows, float* y, int64_t ldy);
// Quantize 32 activations: x ~ d * q (see the numerics above). A non-finite value gives
// d = NaN and q = 0.
using QuantizeBlockFn = void (*)(const float* x, int16_t* q, float* d, float x_max);
void quantize_block_ref(const float* x, int16_t* q, float* d, float x_max);
void quantize_block_avx512(const float* x, int16_t* q, float* d, float x_max);
// Re-quantize 32 F16/BF16 weights (decoded to f32): d = max|w| / kWideWeightMax,
// q = round_half_even(w * (1 / d)) in double, |q| <= kWideWeightMax. A non-finite weight gives
// d = NaN and q = 0; an all-zero block d = 0, q = 0.
void requantize_block(const float* w, int16_t* q, float* d);
void requantize_block_avx512(const float* w, int16_t* q, float* d);  // the same bits

void int_tile_ref(const IntPanel* w, int pm, const IntToken* x, int rn, int64_t groups, int group, bool bias, int rows,
                  float* y, int64_t ldy);
void int_tile_avx512(const IntPanel* w, int pm, const IntToken* x, int rn, int64_t groups, int group, bool bias,
                     int rows, float* y, int64_t ldy);

}  // namespace detail
}  // namespace smolq
