// AVX-512 VNNI kernel of the integer matmul (matmul_int.h), compiled for AVX-512 F/BW/VL/DQ +
// VNNI through a target pragma (the build has no -march flags) and selected at run time by
// uses_int_matmul(). Same rules as matmul_avx2.cpp: only internal-linkage code and the detail::
// entry point after the pragma, no standard-library templates instantiated here.
#include <immintrin.h>

#include <cstdint>

#include "eval/matmul_int.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")
#if defined(__clang__)  // clang ignores the GCC pragma: the same target through its own
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma"))), apply_to = function)
#endif
// GCC 12's AVX-512 headers build their pass-through operands from _mm512_undefined_*(), which
// its own uninitialized-use analysis then reports: not a real read.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace smolq::detail {
namespace {

// PM panels (16 rows each) x RN tokens, groups of G columns. Per group: G / 2 steps of PM
// weight loads, RN broadcasts of a token's column pair and PM * RN vpdpwssd into int32 sums
// (from zero); then per (panel, token) one conversion, one multiply of the rows' scales by the
// token's and one fma (two with a bias) into the f32 accumulator. 2 * PM * RN + PM registers:
// 26 of the 32 for 2 x 6.
template <int PM, int RN, int G, bool BIAS>
void tile(const IntPanel* w, const IntToken* x, int64_t groups, int rows, float* y, int64_t ldy) {
  __m512 acc[PM][RN];
  for (int p = 0; p < PM; ++p)
    for (int t = 0; t < RN; ++t) acc[p][t] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512i s[PM][RN];
    for (int p = 0; p < PM; ++p)
      for (int t = 0; t < RN; ++t) s[p][t] = _mm512_setzero_si512();
    const int64_t k0 = g * G;
    for (int j = 0; j < G / 2; ++j) {
      const int64_t k = k0 + 2 * j;
      __m512i wq[PM];
      for (int p = 0; p < PM; ++p) wq[p] = _mm512_load_si512(w[p].q + k * kPanelRows);
      for (int t = 0; t < RN; ++t) {
        int32_t pair;
        __builtin_memcpy(&pair, x[t].q + k, sizeof pair);
        const __m512i xb = _mm512_set1_epi32(pair);
        for (int p = 0; p < PM; ++p) s[p][t] = _mm512_dpwssd_epi32(s[p][t], wq[p], xb);
      }
    }
    for (int t = 0; t < RN; ++t) {
      const __m512 xs = _mm512_set1_ps(x[t].scale[g]);
      for (int p = 0; p < PM; ++p) {
        const __m512 sc = _mm512_mul_ps(_mm512_load_ps(w[p].scale + g * kPanelRows), xs);
        acc[p][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[p][t]), sc, acc[p][t]);
        if constexpr (BIAS)
          acc[p][t] = _mm512_fmadd_ps(_mm512_load_ps(w[p].bias + g * kPanelRows), _mm512_set1_ps(x[t].sum[g]), acc[p][t]);
      }
    }
  }
  for (int p = 0; p < PM; ++p) {
    const int n = rows - p * kPanelRows;
    const __mmask16 m = n >= kPanelRows ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1);
    for (int t = 0; t < RN; ++t) _mm512_mask_storeu_ps(y + t * ldy + p * kPanelRows, m, acc[p][t]);
  }
}

using Tile = void (*)(const IntPanel*, const IntToken*, int64_t, int, float*, int64_t);

template <int G, bool BIAS>
struct Table {
  // Indexed [pm - 1][rn - 1].
  static constexpr Tile k[2][6] = {
      {tile<1, 1, G, BIAS>, tile<1, 2, G, BIAS>, tile<1, 3, G, BIAS>, tile<1, 4, G, BIAS>, tile<1, 5, G, BIAS>,
       tile<1, 6, G, BIAS>},
      {tile<2, 1, G, BIAS>, tile<2, 2, G, BIAS>, tile<2, 3, G, BIAS>, tile<2, 4, G, BIAS>, tile<2, 5, G, BIAS>,
       tile<2, 6, G, BIAS>},
  };
};

}  // namespace

void quantize_block_avx512(const float* x, int16_t* q, float* d_out, float x_max) {
  const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
  const __m512 ax = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1));
  const float amax = _mm512_reduce_max_ps(ax);  // max is exact in any order
  // Non-finite: x - x is NaN for NaN and Inf, 0 otherwise.
  const __mmask16 bad = _mm512_cmp_ps_mask(_mm512_sub_ps(x0, x0), _mm512_sub_ps(x0, x0), _CMP_UNORD_Q) |
                        _mm512_cmp_ps_mask(_mm512_sub_ps(x1, x1), _mm512_sub_ps(x1, x1), _CMP_UNORD_Q);
  if (bad != 0) {
    for (int j = 0; j < 32; ++j) q[j] = 0;
    *d_out = __builtin_nanf("");
    return;
  }
  const float d = amax / x_max;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const __m512 vid = _mm512_set1_ps(id);
  const __m512 lim = _mm512_set1_ps(x_max), nlim = _mm512_set1_ps(-x_max);
  const __m512 xs[2] = {x0, x1};
  for (int i = 0; i < 2; ++i) {
    // Round half to even: the default MXCSR mode, as round_even.
    __m512 h = _mm512_roundscale_ps(_mm512_mul_ps(xs[i], vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    h = _mm512_min_ps(lim, _mm512_max_ps(nlim, h));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 16 * i), _mm512_cvtepi32_epi16(_mm512_cvttps_epi32(h)));
  }
  *d_out = d;
}

void requantize_block_avx512(const float* w, int16_t* q, float* d_out) {
  const __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(w0), _mm512_abs_ps(w1)));
  const __mmask16 bad = _mm512_cmp_ps_mask(_mm512_sub_ps(w0, w0), _mm512_sub_ps(w0, w0), _CMP_UNORD_Q) |
                        _mm512_cmp_ps_mask(_mm512_sub_ps(w1, w1), _mm512_sub_ps(w1, w1), _CMP_UNORD_Q);
  if (bad != 0) {
    for (int j = 0; j < 32; ++j) q[j] = 0;
    *d_out = __builtin_nanf("");
    return;
  }
  const float d = amax / kWideWeightMax;
  // As requantize_block: w * (1 / d) in double, rounded to nearest even, clamped.
  const __m512d vid = _mm512_set1_pd(d != 0.0f ? 1.0 / static_cast<double>(d) : 0.0);
  const __m512d lim = _mm512_set1_pd(kWideWeightMax), nlim = _mm512_set1_pd(-kWideWeightMax);
  for (int i = 0; i < 4; ++i) {
    const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(w + 8 * i));
    __m512d h = _mm512_roundscale_pd(_mm512_mul_pd(v, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    h = _mm512_min_pd(lim, _mm512_max_pd(nlim, h));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 8 * i), _mm256_cvtepi32_epi16(_mm512_cvttpd_epi32(h)));
  }
  *d_out = d;
}

void int_tile_avx512(const IntPanel* w, int pm, const IntToken* x, int rn, int64_t groups, int group, bool bias,
                     int rows, float* y, int64_t ldy) {
  Tile f;
  if (group == 16)
    f = bias ? Table<16, true>::k[pm - 1][rn - 1] : Table<16, false>::k[pm - 1][rn - 1];
  else
    f = bias ? Table<32, true>::k[pm - 1][rn - 1] : Table<32, false>::k[pm - 1][rn - 1];
  f(w, x, groups, rows, y, ldy);
}

}  // namespace smolq::detail

#if defined(__clang__)
#pragma clang attribute pop
#endif
#pragma GCC pop_options

#else  // not x86 with GCC/Clang: never selected (cpu::has_avx512_vnni() is false), kept linkable.

namespace smolq::detail {
void quantize_block_avx512(const float* x, int16_t* q, float* d, float x_max) { quantize_block_ref(x, q, d, x_max); }
void requantize_block_avx512(const float* w, int16_t* q, float* d) { requantize_block(w, q, d); }
void int_tile_avx512(const IntPanel* w, int pm, const IntToken* x, int rn, int64_t groups, int group, bool bias,
                     int rows, float* y, int64_t ldy) {
  int_tile_ref(w, pm, x, rn, groups, group, bias, rows, y, ldy);
}
}  // namespace smolq::detail

#endif
