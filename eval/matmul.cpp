// Matmul driver (tiling, dequantization, threads) and the portable micro-kernels.
// The AVX2/FMA kernels live in matmul_avx2.cpp; see matmul.h for the reduction order both keep.
#include "formats/cpu_features.h"
#include "eval/matmul.h"
#include "eval/matmul_int.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace smolq {
namespace {

constexpr int kLanes = 8;        // f32 lanes of one AVX2 register: the reduction's lane count
constexpr int kTileRows = 4;     // weight rows per micro-kernel call
constexpr int kMaxTileTokens = 6;  // token rows per micro-kernel call: 3 (AVX2, portable) or 6
// Cache budgets: a dequantized weight tile and a block of token rows should both stay in a
// core's L2 (1 MiB on the Zen 4 machines we bench); the bigger the tile, the more multiply-adds
// per token row streamed in (192 KiB measured ~8% faster than 96 KiB on SmolLM2-135M).
constexpr int64_t kWeightTileBytes = 192 << 10;
constexpr int64_t kTokenBlockBytes = 160 << 10;
constexpr int64_t kMaxTileRows = 256;

// Pairwise lane sum in the order the AVX2 horizontal add uses:
// (l0+l4, l1+l5, l2+l6, l3+l7) -> ((l0+l4)+(l2+l6), (l1+l5)+(l3+l7)) -> sum of the two.
inline float lane_sum(const float* l) {
  const float a0 = l[0] + l[4], a1 = l[1] + l[5], a2 = l[2] + l[6], a3 = l[3] + l[7];
  return (a0 + a2) + (a1 + a3);
}

}  // namespace

namespace detail {

void pack_group8(const float* const* rows, int n, int64_t k, float* out) {
  const int64_t k8 = k - k % kLanes, tail = k - k8;
  for (int64_t i = 0; i < k8; i += kLanes)
    for (int r = 0; r < 8; ++r) {
      float* o = out + i * 8 + r * kLanes;
      if (r < n) std::memcpy(o, rows[r] + i, kLanes * sizeof(float));
      else std::fill(o, o + kLanes, 0.0f);
    }
  float* ot = out + 8 * k8;
  for (int r = 0; r < 8; ++r)
    for (int64_t j = 0; j < tail; ++j) ot[r * tail + j] = r < n ? rows[r][k8 + j] : 0.0f;
}

void tile_portable(const float* const* w, int rm, const float* const* x, int rn, int64_t k, float* y, int64_t ldy) {
  const int64_t k8 = k - k % kLanes;
  for (int t = 0; t < rn; ++t) {
    for (int r = 0; r < rm; ++r) {
      float lanes[kLanes] = {};
      const float* a = w[r];
      const float* b = x[t];
      for (int64_t i = 0; i < k8; i += kLanes)
        for (int l = 0; l < kLanes; ++l) lanes[l] += a[i + l] * b[i + l];
      float s = lane_sum(lanes);
      for (int64_t i = k8; i < k; ++i) s += a[i] * b[i];
      y[t * ldy + r] = s;
    }
  }
}

}  // namespace detail

float dot_f32(const float* a, const float* b, int64_t n) {
  float out;
  dot_rows(&a, 1, b, 0, 1, n, &out, 1);
  return out;
}

void dot_rows(const float* const* q, int nq, const float* k, int64_t k_stride, int64_t n_keys, int64_t d, float* out,
              int64_t ldo) {
  if (cpu::has_avx2()) return detail::dot_rows_avx2(q, nq, k, k_stride, n_keys, d, out, ldo);
  for (int64_t j = 0; j < n_keys; ++j) {
    const float* kr = k + j * k_stride;
    detail::tile_portable(&kr, 1, q, nq, d, out + j, ldo);
  }
}

void weighted_rows(const float* p, const float* v, int64_t v_stride, int64_t n_rows, int64_t d, float* out) {
  if (cpu::has_avx2()) return detail::weighted_rows_avx2(p, v, v_stride, n_rows, d, out);
  std::fill(out, out + d, 0.0f);
  for (int64_t j = 0; j < n_rows; ++j) {
    const float* vr = v + j * v_stride;
    for (int64_t i = 0; i < d; ++i) out[i] += p[j] * vr[i];
  }
}

void dot_rows_packed(const float* const* q, int nq, const float* packed_keys, int64_t n_keys, int64_t d, float* out,
                     int64_t ldo) {
  for (int64_t j = 0; j < n_keys; j += 8)
    detail::tile8_avx512(packed_keys + j * d, static_cast<int>(std::min<int64_t>(8, n_keys - j)), q, nq, d, out + j, ldo);
}

void weighted_rows_block(const float* p, int64_t ldp, int nq, const float* v, int64_t v_stride, int64_t n_keys,
                         int64_t d, float* out, int64_t ldo) {
  if (cpu::has_avx512()) return detail::weighted_rows_block_avx512(p, ldp, nq, v, v_stride, n_keys, d, out, ldo);
  for (int i = 0; i < nq; ++i) weighted_rows(p + i * ldp, v, v_stride, n_keys + i, d, out + i * ldo);
}

void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int n_threads) {
  if (uses_int_matmul(w)) return matmul_int(w, x, n_tokens, y, n_threads, false);
  matmul_f32(w, x, n_tokens, y, n_threads);
}

void matmul_f32(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int n_threads) {
  const int64_t K = static_cast<int64_t>(w.cols);
  const int64_t R = static_cast<int64_t>(w.rows);
  if (n_tokens <= 0 || R == 0) return;
  // AVX-512: 8-row groups packed for tile8_avx512; otherwise 4-row tiles read from the rows.
  const bool packed = cpu::has_avx512();
  const detail::TileFn tile = cpu::has_avx2() ? detail::tile_avx2 : detail::tile_portable;
  const int tile_tokens = packed ? 6 : 3;
  const int group_rows = packed ? 8 : kTileRows;
  n_threads = std::max(1, n_threads);

  // Weight tile: as many rows as fit the budget, a multiple of the kernel's rows, and small
  // enough that every thread gets several tiles (dynamic scheduling balances the rest).
  int64_t tile_rows = std::clamp<int64_t>(kWeightTileBytes / (K * 4), group_rows, kMaxTileRows);
  const int64_t per_thread = (R + 4 * n_threads - 1) / (4 * n_threads);
  tile_rows = std::min(tile_rows, std::max<int64_t>(group_rows, per_thread));
  tile_rows = std::max<int64_t>(group_rows, tile_rows / group_rows * group_rows);
  int64_t block_tokens = std::max<int64_t>(tile_tokens, kTokenBlockBytes / (K * 4));
  block_tokens = block_tokens / tile_tokens * tile_tokens;
  const int64_t n_tiles = (R + tile_rows - 1) / tile_rows;
  // f32 rows can be read in place when they are 4-byte aligned (safetensors need not be).
  const bool in_place = w.is_plain_f32() && reinterpret_cast<uintptr_t>(w.data) % alignof(float) == 0;

#pragma omp parallel num_threads(n_threads)
  {
    // Per-thread scratch kept across calls (a fresh ~100 KiB buffer per call costs page faults).
    thread_local std::vector<float> wbuf, pbuf;
    thread_local std::vector<const float*> wrows;
    const size_t tile_floats = static_cast<size_t>(tile_rows * K);
    if (!in_place && wbuf.size() < tile_floats) wbuf.resize(tile_floats);
    if (packed && pbuf.size() < tile_floats) pbuf.resize(tile_floats);
    if (wrows.size() < static_cast<size_t>(tile_rows)) wrows.resize(tile_rows);
#pragma omp for schedule(dynamic, 1)
    for (int64_t ti = 0; ti < n_tiles; ++ti) {
      const int64_t r0 = ti * tile_rows;
      const int64_t rt = std::min(tile_rows, R - r0);
      for (int64_t i = 0; i < rt; ++i) {
        if (in_place) {
          wrows[i] = reinterpret_cast<const float*>(w.row_ptr(r0 + i));
        } else {
          w.dequantize_row(r0 + i, wbuf.data() + i * K);
          wrows[i] = wbuf.data() + i * K;
        }
      }
      if (packed)
        for (int64_t rg = 0; rg < rt; rg += 8)
          detail::pack_group8(wrows.data() + rg, static_cast<int>(std::min<int64_t>(8, rt - rg)), K, pbuf.data() + rg * K);
      for (int64_t t0 = 0; t0 < n_tokens; t0 += block_tokens) {
        const int64_t tn = std::min(block_tokens, n_tokens - t0);
        for (int64_t rg = 0; rg < rt; rg += group_rows) {
          const int rm = static_cast<int>(std::min<int64_t>(group_rows, rt - rg));
          for (int64_t tg = t0; tg < t0 + tn; tg += tile_tokens) {
            const int rn = static_cast<int>(std::min<int64_t>(tile_tokens, t0 + tn - tg));
            const float* xr[kMaxTileTokens];
            for (int j = 0; j < rn; ++j) xr[j] = x + (tg + j) * K;
            if (packed) detail::tile8_avx512(pbuf.data() + rg * K, rm, xr, rn, K, y + tg * R + r0 + rg, R);
            else tile(wrows.data() + rg, rm, xr, rn, K, y + tg * R + r0 + rg, R);
          }
        }
      }
    }
  }
}

}  // namespace smolq
