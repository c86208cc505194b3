// The f32 kernels with AVX-512's 32 registers of 512 bits: the same 8-lane arithmetic as
// matmul_avx2.cpp (eval/matmul_tile.h) with two weight rows per register — 8 packed rows x up to
// 6 tokens per call, so one load and one FMA instruction serve two rows — and the attention
// outputs of up to 6 queries at once. Every output is computed exactly as on AVX2 (same bits);
// matmul.cpp selects these when cpu::has_avx512(). Same linkage rules as matmul_avx2.cpp.
#include <immintrin.h>

#include <cstdint>

#include "eval/matmul.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx2,fma")
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_ps() and trip -Wuninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#if defined(__clang__)  // clang ignores the GCC pragma: the same target through its own
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma"))), apply_to = function)
#endif

namespace smolq::detail {
namespace {

// 8 packed weight rows x RN tokens in 512-bit registers: register p holds rows 2p (low 256 bits)
// and 2p + 1 (high 256 bits), so every lane still accumulates exactly what lane l of the 8-lane
// kernel above accumulates for its row, while one register load and one FMA instruction serve
// two rows (4 x RN accumulators + 4 weight registers + 1 broadcast token register <= 32).
template <int RN>
void tile8(const float* wp, int rm, const float* const* x, int64_t k, float* y, int64_t ldy) {
  __m512 acc[RN][4];
  for (int t = 0; t < RN; ++t)
    for (int p = 0; p < 4; ++p) acc[t][p] = _mm512_setzero_ps();
  const int64_t k8 = k - k % 8;
  const float* w = wp;
  for (int64_t i = 0; i < k8; i += 8, w += 64) {
    const __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16);
    const __m512 w2 = _mm512_loadu_ps(w + 32), w3 = _mm512_loadu_ps(w + 48);
    for (int t = 0; t < RN; ++t) {
      const __m512 xv = _mm512_broadcast_f32x8(_mm256_loadu_ps(x[t] + i));
      acc[t][0] = _mm512_fmadd_ps(w0, xv, acc[t][0]);
      acc[t][1] = _mm512_fmadd_ps(w1, xv, acc[t][1]);
      acc[t][2] = _mm512_fmadd_ps(w2, xv, acc[t][2]);
      acc[t][3] = _mm512_fmadd_ps(w3, xv, acc[t][3]);
    }
  }
  // Lane sums in hsum's order ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) for the 8 rows of a token at
  // once: the 128-bit halves of every row (4 row pairs -> 2 registers of 4 rows), then lanes
  // (0+2, 1+3) of each row, then their sum; lanes 4j and 4j + 2 end up holding rows j and j + 4.
  const int64_t tail = k - k8;
  const float* wt = wp + 8 * k8;
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0);
  for (int t = 0; t < RN; ++t) {
    const __m512* v = acc[t];
    const __m512 s03 = _mm512_add_ps(_mm512_shuffle_f32x4(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                     _mm512_shuffle_f32x4(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 s47 = _mm512_add_ps(_mm512_shuffle_f32x4(v[2], v[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                     _mm512_shuffle_f32x4(v[2], v[3], _MM_SHUFFLE(3, 1, 3, 1)));
    __m512 u = _mm512_add_ps(_mm512_shuffle_ps(s03, s47, _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(s03, s47, _MM_SHUFFLE(3, 2, 3, 2)));
    u = _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m256 sums = _mm512_castps512_ps256(_mm512_permutexvar_ps(order, u));
    float* yt = y + t * ldy;
    if (rm == 8 && tail == 0) {
      _mm256_storeu_ps(yt, sums);
      continue;
    }
    float s[8];
    _mm256_storeu_ps(s, sums);
    for (int r = 0; r < rm; ++r) {
      for (int64_t j = 0; j < tail; ++j) s[r] = __builtin_fmaf(wt[r * tail + j], x[t][k8 + j], s[r]);
      yt[r] = s[r];
    }
  }
}

// weighted_rows for NQ queries at once: 64 columns (4 registers) per query stay in registers
// while the keys stream by, each value v[j][c] loaded once for all queries; every output column
// is its own chain of fused multiply-adds over j in increasing order, as in weighted_rows_avx2.
template <int NQ>
void wrows(const float* p, int64_t ldp, const float* v, int64_t vs, int64_t n_keys, int64_t d, float* out, int64_t ldo) {
  for (int64_t c = 0; c < d; c += 64) {
    const int64_t w = d - c < 64 ? d - c : 64;
    __mmask16 m[4];
    for (int u = 0; u < 4; ++u) {
      const int64_t left = w - 16 * u;
      m[u] = left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
    }
    __m512 acc[NQ][4];
    for (int i = 0; i < NQ; ++i)
      for (int u = 0; u < 4; ++u) acc[i][u] = _mm512_setzero_ps();
    // Keys [0, n_keys) for every query, then the NQ - 1 keys only some see (query i sees i more
    // than query 0): a zero mask leaves those accumulators untouched.
    for (int64_t j = 0; j < n_keys + NQ - 1; ++j) {
      const float* vr = v + j * vs + c;
      __m512 vv[4];
      for (int u = 0; u < 4; ++u) vv[u] = _mm512_maskz_loadu_ps(m[u], vr + 16 * u);
      if (j < n_keys) {
        for (int i = 0; i < NQ; ++i) {
          const __m512 pj = _mm512_set1_ps(p[i * ldp + j]);
          for (int u = 0; u < 4; ++u) acc[i][u] = _mm512_fmadd_ps(pj, vv[u], acc[i][u]);
        }
      } else {
        for (int i = 0; i < NQ; ++i) {
          const __mmask16 use = j < n_keys + i ? __mmask16(0xFFFF) : __mmask16(0);
          const __m512 pj = _mm512_set1_ps(p[i * ldp + j]);
          for (int u = 0; u < 4; ++u) acc[i][u] = _mm512_mask3_fmadd_ps(pj, vv[u], acc[i][u], use);
        }
      }
    }
    for (int i = 0; i < NQ; ++i)
      for (int u = 0; u < 4; ++u) _mm512_mask_storeu_ps(out + i * ldo + c + 16 * u, m[u], acc[i][u]);
  }
}

using WRows = void (*)(const float*, int64_t, const float*, int64_t, int64_t, int64_t, float*, int64_t);
const WRows kWRows[6] = {wrows<1>, wrows<2>, wrows<3>, wrows<4>, wrows<5>, wrows<6>};

using Tile8 = void (*)(const float*, int, const float* const*, int64_t, float*, int64_t);
const Tile8 kTiles8[6] = {tile8<1>, tile8<2>, tile8<3>, tile8<4>, tile8<5>, tile8<6>};

}  // namespace

void tile8_avx512(const float* wp, int rm, const float* const* x, int rn, int64_t k, float* y, int64_t ldy) {
  kTiles8[rn - 1](wp, rm, x, k, y, ldy);
}

void weighted_rows_block_avx512(const float* p, int64_t ldp, int nq, const float* v, int64_t v_stride, int64_t n_keys,
                                int64_t d, float* out, int64_t ldo) {
  kWRows[nq - 1](p, ldp, v, v_stride, n_keys, d, out, ldo);
}

}  // namespace smolq::detail

#if defined(__clang__)
#pragma clang attribute pop
#endif
#pragma GCC pop_options

#else  // not x86 with GCC/Clang: never selected (cpu::has_avx512() is false), kept linkable.

namespace smolq::detail {
void tile8_avx512(const float*, int, const float* const*, int, int64_t, float*, int64_t) {}
void weighted_rows_block_avx512(const float*, int64_t, int, const float*, int64_t, int64_t, int64_t, float*, int64_t) {}
}  // namespace smolq::detail

#endif
