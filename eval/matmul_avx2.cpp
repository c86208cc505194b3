// AVX2/FMA micro-kernels of the forward pass, compiled for x86-64-v3 through a target pragma
// (the build has no -march flags) and selected at run time by matmul.cpp.
//
// Everything after the pragma has internal linkage or is one of the detail:: entry points, and
// no standard-library template is instantiated there: an AVX2 copy of an inline library
// function could otherwise be picked by the linker for callers on machines without AVX2.
#include <immintrin.h>

#include <cstdint>

#include "eval/matmul.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#if defined(__clang__)  // clang ignores the GCC pragma: the same target through its own
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#endif

#include "eval/matmul_tile.h"

namespace smolq::detail {
namespace {

using Tile = void (*)(const float* const*, const float* const*, int64_t, float*, int64_t);
// Indexed [rm - 1][rn - 1].
const Tile kTiles[4][3] = {
    {tile<1, 1>, tile<1, 2>, tile<1, 3>},
    {tile<2, 1>, tile<2, 2>, tile<2, 3>},
    {tile<3, 1>, tile<3, 2>, tile<3, 3>},
    {tile<4, 1>, tile<4, 2>, tile<4, 3>},
};

}  // namespace

void tile_avx2(const float* const* w, int rm, const float* const* x, int rn, int64_t k, float* y, int64_t ldy) {
  kTiles[rm - 1][rn - 1](w, x, k, y, ldy);
}

void dot_rows_avx2(const float* const* q, int nq, const float* k, int64_t k_stride, int64_t n_keys, int64_t d, float* out,
                   int64_t ldo) {
  // Keys are the weight side of the tile (four at a time), queries the token side.
  int64_t j = 0;
  for (; j + 4 <= n_keys; j += 4) {
    const float* kr[4] = {k + j * k_stride, k + (j + 1) * k_stride, k + (j + 2) * k_stride, k + (j + 3) * k_stride};
    kTiles[3][nq - 1](kr, q, d, out + j, ldo);
  }
  for (; j < n_keys; ++j) {
    const float* kr = k + j * k_stride;
    kTiles[0][nq - 1](&kr, q, d, out + j, ldo);
  }
}

void weighted_rows_avx2(const float* p, const float* v, int64_t v_stride, int64_t n_rows, int64_t d, float* out) {
  // Columns in groups of 64 (8 registers) stay in registers across all rows; the rows are
  // accumulated in increasing order for every column, as the portable loop does.
  int64_t i = 0;
  for (; i + 64 <= d; i += 64) {
    __m256 acc[8];
    for (int c = 0; c < 8; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t j = 0; j < n_rows; ++j) {
      const __m256 pj = _mm256_set1_ps(p[j]);
      const float* vr = v + j * v_stride + i;
      for (int c = 0; c < 8; ++c) acc[c] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr + 8 * c), acc[c]);
    }
    for (int c = 0; c < 8; ++c) _mm256_storeu_ps(out + i + 8 * c, acc[c]);
  }
  for (; i + 8 <= d; i += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < n_rows; ++j)
      acc = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + j * v_stride + i), acc);
    _mm256_storeu_ps(out + i, acc);
  }
  for (; i < d; ++i) {
    float s = 0.0f;
    for (int64_t j = 0; j < n_rows; ++j) s = __builtin_fmaf(p[j], v[j * v_stride + i], s);
    out[i] = s;
  }
}

}  // namespace smolq::detail

#if defined(__clang__)
#pragma clang attribute pop
#endif
#pragma GCC pop_options

#else  // not x86 with GCC/Clang: never selected (cpu::has_avx2() is false), kept linkable.

namespace smolq::detail {
void tile_avx2(const float* const* w, int rm, const float* const* x, int rn, int64_t k, float* y, int64_t ldy) {
  tile_portable(w, rm, x, rn, k, y, ldy);
}
void dot_rows_avx2(const float* const*, int, const float*, int64_t, int64_t, int64_t, float*, int64_t) {}
void weighted_rows_avx2(const float*, const float*, int64_t, int64_t, int64_t, float*) {}
}  // namespace smolq::detail

#endif
