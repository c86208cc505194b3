// Shared scale searches for the legacy (Q4_0..Q5_1) and K-quant block formats.
//
// Every format in this family reconstructs a weight as either
//   symmetric: x ~= d * l            with integer l in [lo, hi] (lo <= 0 <= hi), or
//   affine:    x ~= d * l + m        with integer l in [0, nmax] and an offset m,
// and the quantizer must pick d (and m) plus the integers l that minimise the weighted squared
// error sum_i w_i (x_i - xhat_i)^2. The helpers here solve that problem for one group of up to
// 32 values; the format files add the second level (f16 super-block scales, 4/6/8-bit sub-block
// scales) on top.
//
// The search strategy (ideas from ggml's make_qx_quants / make_qkx3_quants, our own code):
//   1. a sweep of candidate inverse scales around "largest value maps to the extreme level";
//      each candidate rounds every value and scores the least-squares refit of d (and m) in
//      closed form, so a candidate costs one pass over the group;
//   2. local refinement of the best candidate: alternate "round every value to the nearest
//      level" and "least-squares refit of d (and m)" (never increases the error), and for the
//      symmetric case a coordinate-descent pass that moves single values to another level.
// Everything is allocation-free and deterministic. Each search exists twice with identical
// results: scored by scalar reference kernels, and by AVX2 kernels that score eight
// candidates at once (the `_avx2` functions; use them only when cpu::has_avx2()).
#pragma once
#include <cmath>
#include <cstdint>

namespace smolq::qsearch {

// Groups whose largest magnitude is below this are treated as all-zero (ggml's GROUP_MAX_EPS).
constexpr float kGroupMaxEps = 1e-15f;

// Round to nearest, ties to even, for |v| < 2^22: adding 1.5 * 2^23 pushes the fraction out of
// the mantissa (the FPU rounds to nearest even), subtracting it back leaves the integer. This is
// the same rounding as ggml's nearest_int(), so ties resolve identically. It stays in float so
// candidate loops vectorise.
inline float round_nearest(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (v + kMagic) - kMagic;
}
// Clamp to [lo, hi] first (keeps round_nearest in its valid range), then round.
inline float round_clamped(float v, float lo, float hi) {
  return round_nearest(v < lo ? lo : (v > hi ? hi : v));
}
inline int round_int(float v) { return static_cast<int>(round_nearest(v)); }

// Per-element weights for one group: w_i = importance_i * sqrt(sigma2 + x_i^2).
// `importance` may be null (then 1). The sqrt(sigma2 + x^2) factor is ggml's choice for
// imatrix quantization: it keeps some emphasis on large weights (which dominate a dot
// product's error) without letting tiny weights get zero attention. We use it for both the
// imatrix and the plain path (plain == all-ones importance).
void element_weights(const float* x, const float* importance, float sigma2, int n, float* w);
// sum x_i^2 over a block of n <= 256 values (n a multiple of 8), in a fixed vectorisable order.
float sum_squares(const float* x, int n);

// ---- symmetric: x ~= d * l, l in [lo, hi] ------------------------------------------------

struct SymmetricSearch {
  int ntry;          // candidates on each side of the "max maps to the extreme level" scale
  float step;        // spacing of candidates, in levels of the extreme (ggml uses 0.1)
  bool both_ends;    // also try mapping the largest magnitude to the opposite extreme
  int refine_passes; // coordinate-descent passes (0 = none)
};

// Group sizes: n is a multiple of 8 and at most 256 in every helper of this header.

// Returns d; writes l into L[0..n). All-zero input gives d = 0 and L = 0. The result's
// weighted error is never worse than that of the plain "max maps to the extreme" rule.
float fit_symmetric(const float* x, const float* w, int n, int lo, int hi, int8_t* L,
                    const SymmetricSearch& cfg);
// The same search scored with AVX2 kernels: identical result; call only when cpu::has_avx2().
float fit_symmetric_avx2(const float* x, const float* w, int n, int lo, int hi, int8_t* L,
                         const SymmetricSearch& cfg);

// Weighted squared error of reconstructing x with scale s and levels rounded to nearest
// (clamped to [lo, hi]); writes those levels. `s` is the decoder's float scale.
float requantize_symmetric(const float* x, const float* w, int n, int lo, int hi, float s, int8_t* L);

// ---- affine: x ~= d * l + m, l in [0, nmax] ---------------------------------------------

// Which offsets the format can store. Q4_1/Q5_1 store m as a signed f16 (kFree). K-quants
// store an unsigned integer min times one super-block dmin, so within a super-block every
// offset has the same sign: kNonPositive (the usual "w = d*q - dmin*m" with m >= 0) or
// kNonNegative (dmin < 0, for super-blocks with no negative value).
enum class OffsetSign { kFree, kNonPositive, kNonNegative };

struct AffineSearch {
  float rmin, rdelta; // candidate inverse scales (nmax + rmin + rdelta*k) / (max - min)
  int nstep;          // k = 0..nstep
  int alternations;   // max "requantize / refit" rounds after the sweep
};

struct AffineFit {
  float d = 0, m = 0; // x ~= d * l + m
};

// Returns the fit; writes l into L[0..n). Constant input gives d = 0, m = the constant (when
// the offset sign allows it).
AffineFit fit_affine(const float* x, const float* w, int n, int nmax, uint8_t* L, OffsetSign sign,
                     const AffineSearch& cfg);
AffineFit fit_affine_avx2(const float* x, const float* w, int n, int nmax, uint8_t* L, OffsetSign sign,
                          const AffineSearch& cfg);  // AVX2 kernels, identical result

// Weighted squared error of reconstructing x as s*l - mm (decoder form, mm = dmin*min) with
// levels rounded to nearest in [0, nmax]; writes those levels. s == 0 gives l = 0.
float requantize_affine(const float* x, const float* w, int n, int nmax, float s, float mm, uint8_t* L);

// ---- f16 scale helpers ----------------------------------------------------------------

// f16 bits for a scale; a non-zero value that would underflow to zero becomes the smallest
// subnormal of the same sign instead (a zero scale would throw the whole group away, while
// the smallest subnormal can still carry tiny weights such as 1e-6).
uint16_t scale_to_f16(float v);

// ---- two-level (K-quant) super-blocks ----------------------------------------------------
// A super-block of nsub sub-blocks x sub elements stores one f16 scale d (and for the affine
// formats one f16 dmin) and a small integer scale (and min) per sub-block. The engines below
// choose all of them (implementation: quant_search.cpp):
//   1. fit every sub-block on its own (fit_symmetric / fit_affine);
//   2. quantize the sub-block scales (and mins) to integers with a weighted fit (weight of a
//      sub-block = sum of its element weights), giving d (and dmin), rounded to f16;
//   3. per sub-block, search the integers in a +-radius neighbourhood with every level
//      re-rounded under the decoder's own products (d*sc, dmin*m) and keep the best;
//   4. refit d (and dmin) by least squares to the chosen integers and levels, round to f16,
//      and go back to 3 while the total error drops (at most `rounds` times).

struct SymmetricSuperConfig {
  int sub, nsub;            // elements per sub-block, sub-blocks per super-block
  int lo, hi;               // element levels
  int slo, shi;             // integer sub-block scales
  SymmetricSearch element;  // first-level search
  SymmetricSearch scale;    // second-level search over the sub-block scales
  int radius, rounds;
};
struct SymmetricSuperBlock {
  uint16_t d = 0;           // f16 bits
  int8_t sc[16] = {};       // integer sub-block scales in [slo, shi]
  int8_t L[256] = {};       // levels in [lo, hi]
};
void encode_symmetric_super(const float* x, const float* w, const SymmetricSuperConfig& cfg,
                            SymmetricSuperBlock& out);

struct AffineSuperConfig {
  int sub, nsub;            // elements per sub-block, sub-blocks per super-block
  int nmax;                 // element levels 0..nmax
  int smax;                 // integer sub-block scales and mins 0..smax
  AffineSearch element;     // first-level search
  SymmetricSearch scale;    // second-level search over the sub-block scales and mins
  int radius, rounds;
};
struct AffineSuperBlock {
  uint16_t d = 0, dmin = 0; // f16 bits; value = d*sc*l - dmin*m (dmin may be negative)
  uint8_t sc[16] = {}, m[16] = {};
  uint8_t L[256] = {};
};
void encode_affine_super(const float* x, const float* w, const AffineSuperConfig& cfg, AffineSuperBlock& out);

// The same engines scored with AVX2 kernels (identical output bytes); call only when
// cpu::has_avx2() (formats/cpu_features.h).
void encode_symmetric_super_avx2(const float* x, const float* w, const SymmetricSuperConfig& cfg,
                                 SymmetricSuperBlock& out);
void encode_affine_super_avx2(const float* x, const float* w, const AffineSuperConfig& cfg, AffineSuperBlock& out);

}  // namespace smolq::qsearch
