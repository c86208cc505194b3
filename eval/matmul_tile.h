// The f32 micro-kernel of matmul.cpp, written once for every x86 level that runs it: included
// by matmul_avx2.cpp (16 vector registers: up to 4 x 3 tiles) and matmul_avx512.cpp (AVX-512VL:
// 32 registers, up to 4 x 6 tiles), each after its own target pragma and inside an anonymous
// namespace. The arithmetic of one output value does not depend on the tile it is computed in,
// so both files produce the same bits.
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
// Columns [k0, k1) of rows of length k (k0 a multiple of 8; k1 too unless it is k). A call that
// does not start at 0 takes its accumulators from `acc` (RN x RM 8-lane vectors), one that does
// not end at k leaves them there: a long row cut into slices (so each slice's operands stay in
// L1) accumulates every lane in the same order as one call over the whole row, so the bits do
// not depend on the slicing. The call that reaches k sums the lanes and writes y[t * ldy + r].
template <int RM, int RN>
void tile(const float* const* w, const float* const* x, int64_t k0, int64_t k1, int64_t k, float* acc, float* y,
          int64_t ldy) {
  __m256 a[RN][RM];
  for (int t = 0; t < RN; ++t)
    for (int r = 0; r < RM; ++r) a[t][r] = k0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(acc + 8 * (t * RM + r));
  const int64_t k8 = k - k % 8;
  const int64_t end = k1 == k ? k8 : k1;
  for (int64_t i = k0; i < end; i += 8) {
    __m256 wv[RM];
    for (int r = 0; r < RM; ++r) wv[r] = _mm256_loadu_ps(w[r] + i);
    for (int t = 0; t < RN; ++t) {
      const __m256 xv = _mm256_loadu_ps(x[t] + i);
      for (int r = 0; r < RM; ++r) a[t][r] = _mm256_fmadd_ps(wv[r], xv, a[t][r]);
    }
  }
  if (k1 != k) {
    for (int t = 0; t < RN; ++t)
      for (int r = 0; r < RM; ++r) _mm256_storeu_ps(acc + 8 * (t * RM + r), a[t][r]);
    return;
  }
  for (int t = 0; t < RN; ++t) {
    for (int r = 0; r < RM; ++r) {
      float s = hsum(a[t][r]);
      for (int64_t i = k8; i < k; ++i) s = __builtin_fmaf(w[r][i], x[t][i], s);
      y[t * ldy + r] = s;
    }
  }
}

}  // namespace
}  // namespace smolq::detail
