// Integer matmul driver (activation quantization, weight-tile decoding, threads) and the
// portable reference kernel. The AVX-512 VNNI kernel is in matmul_int_avx512.cpp; matmul_int.h
// states the arithmetic both perform.
#include "eval/matmul_int.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <limits>
#include <vector>

#include "formats/cpu_features.h"

namespace smolq {
namespace {

constexpr int64_t kGroupsPerStep = 16;  // weight groups per kernel super-step (one per lane)
constexpr int kActBlock = 32;           // activations quantized per block of 32 (as Q8_0)
constexpr int kTileRows = 4;            // weight rows per kernel call
constexpr int kTileTokens = 2;          // tokens per kernel call (3 x 4 x 2 ints + floats spill)
// A decoded weight tile and a block of quantized tokens should stay in a core's L2.
constexpr int64_t kWeightTileBytes = 128 << 10;
constexpr int64_t kTokenBlockBytes = 192 << 10;
constexpr int64_t kMaxTileRows = 256;

// (l_i + l_{i+8}) for i < 8, then matmul.cpp's 8-lane order: the AVX-512 kernel's hsum.
float lane_sum16(const float* l) {
  float h[8];
  for (int i = 0; i < 8; ++i) h[i] = l[i] + l[i + 8];
  const float a0 = h[0] + h[4], a1 = h[1] + h[5], a2 = h[2] + h[6], a3 = h[3] + h[7];
  return (a0 + a2) + (a1 + a3);
}

// Round half to even for |v| <= 2^22 (here |v| <= 127.5): adding and subtracting 1.5 * 2^23
// leaves the nearest integer under the default rounding mode; what nearbyint returns, without
// a library call.
inline float round_even(float v) {
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;  // IEEE arithmetic (no -ffast-math): not folded away
}

// Where the kernel finds weight k of a row (and activation k of a token): super-step u = k / S
// (S = 16 groups of G) holds its 16 groups side by side, 4 bytes of each per 64-byte vector:
// byte (j / 4) * 64 + g * 4 + j % 4 of the super-step is element j of group g. One vpdpbusd
// per 64 bytes then adds 4 products of every group into that group's int32 lane.
struct Layout {
  int64_t k, group, k_pad, groups;  // k_pad = k rounded up to whole super-steps
  bool offset, bias;
  int64_t step() const { return kGroupsPerStep * group; }
  // Copy the k values of `src` (natural order, 1 byte each) into that layout.
  template <class T>
  void scatter(const T* src, T* dst) const {
    for (int64_t g = 0; g < k / group; ++g) {
      T* base = dst + (g / kGroupsPerStep) * step() + (g % kGroupsPerStep) * 4;
      for (int64_t v = 0; v < group / 4; ++v) std::memcpy(base + 64 * v, src + g * group + 4 * v, 4);
    }
  }
  int64_t row_bytes() const { return k_pad + groups * 4 * (bias ? 2 : 1); }
  int64_t token_bytes() const { return 2 * k_pad + groups * 4 * 3; }
  detail::IntRow row(std::byte* p) const {
    auto* f = reinterpret_cast<float*>(p + k_pad);
    return {reinterpret_cast<const uint8_t*>(p), f, bias ? f + groups : nullptr};
  }
  detail::IntToken token(std::byte* p) const {
    auto* f = reinterpret_cast<float*>(p + 2 * k_pad);
    const auto* q = reinterpret_cast<const int8_t*>(p);
    return {q, q + k_pad, f, reinterpret_cast<const int32_t*>(f + groups), f + 2 * groups};
  }
};

// Sum of n (16 or 32) floats in a halving tree: v[j] += v[j + n/2] for j < n/2, then n/4, ...
// (the order the AVX-512 quantizer uses).
float tree_sum(const float* x, int n) {
  float v[32];
  std::copy(x, x + n, v);
  for (int h = n / 2; h >= 1; h /= 2)
    for (int j = 0; j < h; ++j) v[j] += v[j + h];
  return v[0];
}

}  // namespace

namespace detail {

void quantize_block_ref(const float* x, int8_t* hi, int8_t* lo, float* d_out) {
  float amax = 0.0f;
  bool finite = true;
  for (int j = 0; j < kActBlock; ++j) {
    amax = std::max(amax, std::fabs(x[j]));
    finite = finite && std::isfinite(x[j]);
  }
  // A NaN or Inf activation makes the block's scale NaN: the outputs it reaches are NaN, as in
  // an f32 evaluation (docs/perplexity.md, non-finite results).
  const float d = finite ? amax / 127.0f : std::numeric_limits<float>::quiet_NaN();
  const float id = finite && d != 0.0f ? 1.0f / d : 0.0f;
  const float id256 = id * 256.0f;
  for (int j = 0; j < kActBlock; ++j) {
    // x ~ d * hi + (d / 256) * lo: hi = round(x / d), lo = round((x - d * hi) * 256 / d).
    const float h = round_even(x[j] * id);
    const float r = std::fma(-d, h, x[j]);
    const float l = std::min(127.0f, std::max(-127.0f, round_even(r * id256)));
    hi[j] = static_cast<int8_t>(h);
    lo[j] = static_cast<int8_t>(l);
  }
  *d_out = d;
}

}  // namespace detail

namespace {

// Quantize one activation row (see matmul_int.h) into its token record. `qtmp`: 2 * k int8.
void quantize_token(const float* x, const Layout& L, int offset, detail::QuantizeBlockFn qblock, int8_t* qtmp,
                    std::byte* rec) {
  auto* hi = reinterpret_cast<int8_t*>(rec);
  int8_t* lo = hi + L.k_pad;
  auto* scale = reinterpret_cast<float*>(rec + 2 * L.k_pad);
  auto* off = reinterpret_cast<int32_t*>(scale + L.groups);
  float* sum = scale + 2 * L.groups;
  std::fill(hi, hi + 2 * L.k_pad, int8_t{0});
  std::fill(scale, scale + 3 * L.groups, 0.0f);  // padding groups: all zero (off too)
  int8_t* qh = qtmp;
  int8_t* ql = qtmp + L.k;
  for (int64_t b = 0; b < L.k; b += kActBlock) {
    float d;
    qblock(x + b, qh + b, ql + b, &d);
    for (int64_t g = b / L.group; g < (b + kActBlock) / L.group; ++g) scale[g] = d * (1.0f / 256.0f);
  }
  for (int64_t g = 0; g < L.k / L.group; ++g) {
    int32_t qs = 0;
    for (int64_t i = g * L.group; i < (g + 1) * L.group; ++i) qs += 256 * qh[i] + ql[i];
    off[g] = -offset * qs;
    if (L.bias) sum[g] = tree_sum(x + g * L.group, L.group);
  }
  L.scatter(qh, hi);
  L.scatter(ql, lo);
}

// Decode logical row r of w into its row record. `qtmp`: k bytes; gscale, gbias: k / group.
void decode_row(const WeightMatrix& w, const IntWeightFormat& f, uint64_t r, const Layout& L, uint8_t* qtmp,
                float* gscale, float* gbias, std::byte* rec) {
  f.decode(w.row_ptr(r), L.k, qtmp, gscale, gbias);
  auto* q = reinterpret_cast<uint8_t*>(rec);
  auto* scale = reinterpret_cast<float*>(rec + L.k_pad);
  std::fill(q, q + L.k_pad, uint8_t{0});
  std::fill(scale, scale + L.groups * (L.bias ? 2 : 1), 0.0f);
  L.scatter(qtmp, q);
  std::copy(gscale, gscale + L.k / L.group, scale);
  if (L.bias) std::copy(gbias, gbias + L.k / L.group, scale + L.groups);
}

}  // namespace

namespace detail {

void int_tile_ref(const IntRow* w, int rm, const IntToken* x, int rn, int64_t steps, int group, bool offset, bool bias,
                  float* y, int64_t ldy) {
  const int64_t S = kGroupsPerStep * group;
  for (int t = 0; t < rn; ++t) {
    for (int r = 0; r < rm; ++r) {
      float acc[kGroupsPerStep] = {};
      for (int64_t u = 0; u < steps; ++u) {
        for (int64_t l = 0; l < kGroupsPerStep; ++l) {
          const int64_t g = u * kGroupsPerStep + l;
          int32_t hi = 0, lo = offset ? x[t].off[g] : 0;
          for (int64_t v = 0; v < group / 4; ++v)
            for (int i = 0; i < 4; ++i) {
              const int64_t k = u * S + v * 64 + l * 4 + i;
              hi += static_cast<int32_t>(w[r].q[k]) * x[t].hi[k];
              lo += static_cast<int32_t>(w[r].q[k]) * x[t].lo[k];
            }
          const int32_t isum = hi * 256 + lo;
          acc[l] = std::fma(static_cast<float>(isum), w[r].scale[g] * x[t].scale[g], acc[l]);
          if (bias) acc[l] = std::fma(w[r].bias[g], x[t].sum[g], acc[l]);
        }
      }
      y[t * ldy + r] = lane_sum16(acc);
    }
  }
}

}  // namespace detail

bool int_matmul_enabled() {
  static const bool on = [] {
    const char* env = std::getenv("SMOLQ_EVAL_MATMUL");
    return env != nullptr && std::string_view(env) == "int";
  }();
  return on;
}

bool uses_int_matmul(const WeightMatrix& w) {
  return int_matmul_enabled() && cpu::has_avx512_vnni() && int_weight_format(w.type) != nullptr &&
         w.cols % kActBlock == 0;
}

void matmul_int(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int n_threads, bool reference) {
  const IntWeightFormat& f = *int_weight_format(w.type);
  const int64_t R = static_cast<int64_t>(w.rows);
  if (n_tokens <= 0 || R == 0) return;
  Layout L;
  L.k = static_cast<int64_t>(w.cols);
  L.group = f.group;
  L.k_pad = (L.k + L.step() - 1) / L.step() * L.step();
  L.groups = L.k_pad / L.group;
  L.offset = f.offset != 0;
  L.bias = f.has_bias;
  const int64_t steps = L.k_pad / L.step();
  const detail::IntTileFn tile = reference ? detail::int_tile_ref : detail::int_tile_avx512;
  const detail::QuantizeBlockFn qblock = reference ? detail::quantize_block_ref : detail::quantize_block_avx512;
  n_threads = std::max(1, n_threads);

  int64_t tile_rows = std::clamp<int64_t>(kWeightTileBytes / L.row_bytes(), kTileRows, kMaxTileRows);
  const int64_t per_thread = (R + 4 * n_threads - 1) / (4 * n_threads);
  tile_rows = std::min(tile_rows, std::max<int64_t>(kTileRows, per_thread));
  tile_rows = std::max<int64_t>(kTileRows, tile_rows / kTileRows * kTileRows);
  int64_t block_tokens = std::max<int64_t>(kTileTokens, kTokenBlockBytes / L.token_bytes());
  block_tokens = block_tokens / kTileTokens * kTileTokens;
  const int64_t n_tiles = (R + tile_rows - 1) / tile_rows;

  // Token records of the whole batch; reused between calls of one thread (no page faults per
  // matmul). 64-byte aligned records (k_pad and groups * 4 are multiples of 64).
  thread_local std::vector<std::byte> tokens_buf;
  const size_t tok_bytes = static_cast<size_t>(L.token_bytes());
  if (tokens_buf.size() < n_tokens * tok_bytes + 64) tokens_buf.resize(n_tokens * tok_bytes + 64);
  std::byte* tokens = tokens_buf.data() + (64 - reinterpret_cast<uintptr_t>(tokens_buf.data()) % 64) % 64;

#pragma omp parallel num_threads(n_threads)
  {
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n_tokens; ++t) {
      thread_local std::vector<int8_t> qtmp;
      qtmp.resize(static_cast<size_t>(2 * L.k));
      quantize_token(x + t * L.k, L, f.offset, qblock, qtmp.data(), tokens + t * tok_bytes);
    }

    std::vector<std::byte> wbuf(static_cast<size_t>(tile_rows * L.row_bytes()) + 64);
    std::byte* wtile = wbuf.data() + (64 - reinterpret_cast<uintptr_t>(wbuf.data()) % 64) % 64;
    std::vector<float> gscale(L.k / f.group), gbias(L.k / f.group);
    std::vector<uint8_t> qtmp(static_cast<size_t>(L.k));
    std::vector<detail::IntRow> rows(tile_rows);
#pragma omp for schedule(dynamic, 1)
    for (int64_t ti = 0; ti < n_tiles; ++ti) {
      const int64_t r0 = ti * tile_rows;
      const int64_t rt = std::min(tile_rows, R - r0);
      for (int64_t i = 0; i < rt; ++i) {
        std::byte* rec = wtile + i * L.row_bytes();
        decode_row(w, f, static_cast<uint64_t>(r0 + i), L, qtmp.data(), gscale.data(), gbias.data(), rec);
        rows[i] = L.row(rec);
      }
      for (int64_t t0 = 0; t0 < n_tokens; t0 += block_tokens) {
        const int64_t tn = std::min(block_tokens, n_tokens - t0);
        for (int64_t rg = 0; rg < rt; rg += kTileRows) {
          const int rm = static_cast<int>(std::min<int64_t>(kTileRows, rt - rg));
          for (int64_t tg = t0; tg < t0 + tn; tg += kTileTokens) {
            const int rn = static_cast<int>(std::min<int64_t>(kTileTokens, t0 + tn - tg));
            detail::IntToken xs[kTileTokens];
            for (int j = 0; j < rn; ++j) xs[j] = L.token(tokens + (tg + j) * tok_bytes);
            tile(rows.data() + rg, rm, xs, rn, steps, f.group, L.offset, L.bias, y + tg * R + r0 + rg, R);
          }
        }
      }
    }
  }
}

}  // namespace smolq
