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

// l_i + l_{i+8}, then (h0+h4, h1+h5, h2+h6, h3+h7) -> ((.0+.2), (.1+.3)) -> one float: the
// order of matmul_int.cpp's lane_sum16.
inline float hsum16(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// RM weight rows x RN tokens. Per super-step (16 groups) and pair: group / 4 vpdpbusd into
// 16 int32 lanes (one group per lane, starting from the token's offset correction), then one
// conversion, one multiply of the two scale vectors and one fma (two with a bias) into the 16
// float accumulators. 2 * RM * RN integer + RM * RN float registers: 24 of the 32 for 4 x 2.
template <int RM, int RN, bool OFF, bool BIAS>
void tile(const IntRow* w, const IntToken* x, int64_t steps, int group, float* y, int64_t ldy) {
  __m512 acc[RN][RM];
  for (int t = 0; t < RN; ++t)
    for (int r = 0; r < RM; ++r) acc[t][r] = _mm512_setzero_ps();
  const int64_t S = 16 * group, nv = group / 4;
  for (int64_t u = 0; u < steps; ++u) {
    __m512i hi[RN][RM], lo[RN][RM];
    for (int t = 0; t < RN; ++t) {
      const __m512i init = OFF ? _mm512_loadu_si512(x[t].off + 16 * u) : _mm512_setzero_si512();
      for (int r = 0; r < RM; ++r) {
        hi[t][r] = _mm512_setzero_si512();
        lo[t][r] = init;
      }
    }
    for (int64_t v = 0; v < nv; ++v) {
      const int64_t k = u * S + 64 * v;
      __m512i wq[RM];
      for (int r = 0; r < RM; ++r) wq[r] = _mm512_loadu_si512(w[r].q + k);
      for (int t = 0; t < RN; ++t) {
        const __m512i xh = _mm512_loadu_si512(x[t].hi + k), xl = _mm512_loadu_si512(x[t].lo + k);
        for (int r = 0; r < RM; ++r) {
          hi[t][r] = _mm512_dpbusd_epi32(hi[t][r], wq[r], xh);
          lo[t][r] = _mm512_dpbusd_epi32(lo[t][r], wq[r], xl);
        }
      }
    }
    for (int t = 0; t < RN; ++t) {
      const __m512 xs = _mm512_loadu_ps(x[t].scale + 16 * u);
      for (int r = 0; r < RM; ++r) {
        const __m512 sc = _mm512_mul_ps(_mm512_loadu_ps(w[r].scale + 16 * u), xs);
        const __m512i isum = _mm512_add_epi32(_mm512_slli_epi32(hi[t][r], 8), lo[t][r]);
        acc[t][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), sc, acc[t][r]);
        if constexpr (BIAS)
          acc[t][r] = _mm512_fmadd_ps(_mm512_loadu_ps(w[r].bias + 16 * u), _mm512_loadu_ps(x[t].sum + 16 * u), acc[t][r]);
      }
    }
  }
  for (int t = 0; t < RN; ++t)
    for (int r = 0; r < RM; ++r) y[t * ldy + r] = hsum16(acc[t][r]);
}

using Tile = void (*)(const IntRow*, const IntToken*, int64_t, int, float*, int64_t);

template <bool OFF, bool BIAS>
struct Table {
  // Indexed [rm - 1][rn - 1].
  static constexpr Tile k[4][3] = {
      {tile<1, 1, OFF, BIAS>, tile<1, 2, OFF, BIAS>, tile<1, 3, OFF, BIAS>},
      {tile<2, 1, OFF, BIAS>, tile<2, 2, OFF, BIAS>, tile<2, 3, OFF, BIAS>},
      {tile<3, 1, OFF, BIAS>, tile<3, 2, OFF, BIAS>, tile<3, 3, OFF, BIAS>},
      {tile<4, 1, OFF, BIAS>, tile<4, 2, OFF, BIAS>, tile<4, 3, OFF, BIAS>},
  };
};

}  // namespace

void quantize_block_avx512(const float* x, int8_t* hi, int8_t* lo, float* d_out) {
  const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
  const __m512 ax = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1));
  const float amax = _mm512_reduce_max_ps(ax);  // max is exact in any order
  // Non-finite: x - x is NaN for NaN and Inf, 0 otherwise.
  const __mmask16 bad = _mm512_cmp_ps_mask(_mm512_sub_ps(x0, x0), _mm512_sub_ps(x0, x0), _CMP_UNORD_Q) |
                        _mm512_cmp_ps_mask(_mm512_sub_ps(x1, x1), _mm512_sub_ps(x1, x1), _CMP_UNORD_Q);
  const bool finite = bad == 0;
  const float d = finite ? amax / 127.0f : __builtin_nanf("");
  const float id = finite && d != 0.0f ? 1.0f / d : 0.0f;
  const __m512 vd = _mm512_set1_ps(d), vid = _mm512_set1_ps(id), vid256 = _mm512_set1_ps(id * 256.0f);
  const __m512 lim = _mm512_set1_ps(127.0f), nlim = _mm512_set1_ps(-127.0f);
  const __m512 xs[2] = {x0, x1};
  for (int i = 0; i < 2; ++i) {
    // Round half to even: the default MXCSR mode, as round_even.
    const __m512 h = _mm512_roundscale_ps(_mm512_mul_ps(xs[i], vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 r = _mm512_fnmadd_ps(vd, h, xs[i]);
    __m512 l = _mm512_roundscale_ps(_mm512_mul_ps(r, vid256), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    l = _mm512_min_ps(lim, _mm512_max_ps(nlim, l));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(hi + 16 * i), _mm512_cvtsepi32_epi8(_mm512_cvttps_epi32(h)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(lo + 16 * i), _mm512_cvtsepi32_epi8(_mm512_cvttps_epi32(l)));
  }
  *d_out = d;
}

void int_tile_avx512(const IntRow* w, int rm, const IntToken* x, int rn, int64_t steps, int group, bool offset,
                     bool bias, float* y, int64_t ldy) {
  Tile f;
  if (offset)
    f = bias ? Table<true, true>::k[rm - 1][rn - 1] : Table<true, false>::k[rm - 1][rn - 1];
  else
    f = bias ? Table<false, true>::k[rm - 1][rn - 1] : Table<false, false>::k[rm - 1][rn - 1];
  f(w, x, steps, group, y, ldy);
}

}  // namespace smolq::detail

#if defined(__clang__)
#pragma clang attribute pop
#endif
#pragma GCC pop_options

#else  // not x86 with GCC/Clang: never selected (cpu::has_avx512_vnni() is false), kept linkable.

namespace smolq::detail {
void quantize_block_avx512(const float* x, int8_t* hi, int8_t* lo, float* d) { quantize_block_ref(x, hi, lo, d); }
void int_tile_avx512(const IntRow* w, int rm, const IntToken* x, int rn, int64_t steps, int group, bool offset,
                     bool bias, float* y, int64_t ldy) {
  int_tile_ref(w, rm, x, rn, steps, group, offset, bias, y, ldy);
}
}  // namespace smolq::detail

#endif
