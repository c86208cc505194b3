// The integer matmul of block-quantized weights: y = x * W^T with W kept as small integers
// (quantize/weight_ints.h) and every activation row quantized to int8 per block of 32, so the
// products inside a weight group (32 weights; 16 for Q6_K) are one exact integer sum
// (AVX-512 VNNI vpdpbusd: 64 byte products per instruction) and floats appear once per group,
// where the scales are applied. ggml's dot products for these types work the same way; the
// layout here puts 16 groups side by side in the 16 int32 lanes of a register, so a row of 512
// weights costs 8 vpdpbusd and 3 float operations per (row, token) instead of 32 f32 FMAs.
//
// Numerics (docs/evaluator.md has the measured effect on perplexity and KL divergence):
//   activations: per block of 32, d = max|x| / 127, xq = round_half_even(x * (1 / d)), so
//     |x - d * xq| <= d / 2: the only approximation of this path (llama.cpp quantizes its
//     activations the same way, to Q8_0 / Q8_K, for these weight types);
//   weights: exact (the stored integers and the dequantizer's f32 scales and mins);
//   per group g: isum = sum (q - offset) * xq exactly (|isum| < 2^21, converted exactly), then
//     acc[g mod 16] = fma(isum, scale_w[g] * d_x[g], acc[g mod 16]), then, for the asymmetric
//     types, acc[g mod 16] = fma(bias_w[g], sum of the group's original activations (in index
//     order), acc[g mod 16]); groups in increasing order; finally the 16 accumulators are summed
//     in a fixed tree (l + 8 first, then matmul.h's 8-lane order).
// Every output value is computed the same way whatever the tiling, the batch and the thread
// count, and the portable reference kernel performs the same operations (std::fma), so the
// results are bit-identical between the AVX-512 kernel and the reference, for any --threads
// and any batch split.
#pragma once
#include <cstdint>

#include "eval/model.h"
#include "quantize/weight_ints.h"

namespace smolq {

// Opt-in: SMOLQ_EVAL_MATMUL=int in the environment (read once). The default evaluation stays
// the f32 reference (docs/evaluator.md: this path is no faster than it on SmolLM2-135M's
// 576-wide shapes, 1.3-1.6x faster on 2048-wide ones, and moves logits by up to ~1e-2).
bool int_matmul_enabled();

// True when matmul() takes the integer path for `w` here: enabled, a type with an integer
// form, and AVX-512 VNNI (not capped by SMOLQ_SIMD).
bool uses_int_matmul(const WeightMatrix& w);

// The integer path with the chosen kernel: the AVX-512 VNNI one, or the portable reference
// (`reference` = true, any CPU). `w.type` must have an integer form.
void matmul_int(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int n_threads, bool reference);

namespace detail {

// One weight row decoded for the kernel (layout: matmul_int.cpp's Layout): q[k_pad] (padding
// 0), and per group its scale and bias (bias null for symmetric types).
struct IntRow {
  const uint8_t* q;
  const float* scale;
  const float* bias;
};
// One quantized activation row in the same layout: x ~ d * hi + (d / 256) * lo, hi[k_pad] and
// lo[k_pad]; per weight group d_x / 256, the offset correction -offset * sum(256 hi + lo) over
// the group (an int32) and the sum of the group's original activations.
struct IntToken {
  const int8_t* hi;
  const int8_t* lo;
  const float* scale;
  const int32_t* off;
  const float* sum;
};

// rm (1..4) weight rows x rn (1..3) tokens over `steps` super-steps of 16 groups of `group`
// (16 or 32) weights: y[t * ldy + r].
using IntTileFn = void (*)(const IntRow* w, int rm, const IntToken* x, int rn, int64_t steps, int group, bool offset,
                           bool bias, float* y, int64_t ldy);
// Quantize 32 activations: x ~ d * hi + (d / 256) * lo (see the numerics above).
using QuantizeBlockFn = void (*)(const float* x, int8_t* hi, int8_t* lo, float* d);
void quantize_block_ref(const float* x, int8_t* hi, int8_t* lo, float* d);
void quantize_block_avx512(const float* x, int8_t* hi, int8_t* lo, float* d);

void int_tile_ref(const IntRow* w, int rm, const IntToken* x, int rn, int64_t steps, int group, bool offset, bool bias,
                  float* y, int64_t ldy);
void int_tile_avx512(const IntRow* w, int rm, const IntToken* x, int rn, int64_t steps, int group, bool offset,
                     bool bias, float* y, int64_t ldy);

}  // namespace detail
}  // namespace smolq
