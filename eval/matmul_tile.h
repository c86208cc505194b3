// The 8-lane f32 micro-kernel of matmul.cpp (16 vector registers: up to 4 x 3 tiles), included by
// matmul_avx2.cpp after its target pragma. matmul_avx512.cpp's 8-row kernel performs the same
// per-lane operations and the same lane sums (hsum's order), so every output has the same bits
// whichever kernel computes it.
// Not a public header: include it only after `#pragma GCC target(... "avx2,fma" ...)`.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace smolq::detail {
namespace {

// (l0+l4, l1+l5, l2+l6, l3+l7) -> ((l0+l4)+(l2+l6), (l1+l5)+(l3+l7)) -> one float: the order
// matmul.cpp's portable lane_sum mirrors.
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// RM weight rows x RN token rows: RM*RN independent accumulators hide the FMA latency
// (4 x 3 = 12 accumulators + 4 weight registers fill AVX2's 16 ymm registers; 4 x 6 = 24 + 4
// fit AVX-512VL's 32; token rows are read as memory operands).
template <int RM, int RN>
void tile(const float* const* w, const float* const* x, int64_t k, float* y, int64_t ldy) {
  __m256 acc[RN][RM];
  for (int t = 0; t < RN; ++t)
    for (int r = 0; r < RM; ++r) acc[t][r] = _mm256_setzero_ps();
  const int64_t k8 = k - k % 8;
  for (int64_t i = 0; i < k8; i += 8) {
    __m256 wv[RM];
    for (int r = 0; r < RM; ++r) wv[r] = _mm256_loadu_ps(w[r] + i);
    for (int t = 0; t < RN; ++t) {
      const __m256 xv = _mm256_loadu_ps(x[t] + i);
      for (int r = 0; r < RM; ++r) acc[t][r] = _mm256_fmadd_ps(wv[r], xv, acc[t][r]);
    }
  }
  for (int t = 0; t < RN; ++t) {
    for (int r = 0; r < RM; ++r) {
      float s = hsum(acc[t][r]);
      for (int64_t i = k8; i < k; ++i) s = __builtin_fmaf(w[r][i], x[t][i], s);
      y[t * ldy + r] = s;
    }
  }
}

}  // namespace
}  // namespace smolq::detail
