// Integer matmul driver (activation quantization, weight panels, threads) and the portable
// reference kernel. The AVX-512 VNNI kernel is in matmul_int_avx512.cpp; matmul_int.h states
// the arithmetic both perform.
#include "eval/matmul_int.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "formats/cpu_features.h"
#include "formats/error.h"

namespace smolq {
namespace {

using detail::kPanelRows;
constexpr int kActBlock = 32;     // activations quantized per block of 32 (as Q8_0)
constexpr int kTilePanels = 2;    // panels per kernel call
constexpr int kTileTokens = 6;    // tokens per kernel call (2 x 6 int32 + 2 x 6 f32 accumulators)
// A packed weight tile and a block of quantized tokens should stay in a core's L2.
constexpr int64_t kWeightTileBytes = 128 << 10;
constexpr int64_t kTokenBlockBytes = 192 << 10;

// Round half to even for |v| <= 2^22 (here |v| <= 32767.5): adding and subtracting 1.5 * 2^23
// leaves the nearest integer under the default rounding mode; what nearbyint returns, without
// a library call.
inline float round_even(float v) {
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;  // IEEE arithmetic (no -ffast-math): not folded away
}

// Sum of n (16 or 32) floats in a halving tree: v[j] += v[j + n/2] for j < n/2, then n/4, ...
float tree_sum(const float* x, int n) {
  float v[32];
  std::copy(x, x + n, v);
  for (int h = n / 2; h >= 1; h /= 2)
    for (int j = 0; j < h; ++j) v[j] += v[j + h];
  return v[0];
}

// Byte layout of a token record and of a panel, for k columns in groups of `group`.
struct Layout {
  int64_t k, group, groups;
  int offset;
  bool bias;
  bool wide;    // F16/BF16 weights re-quantized per block (detail::requantize_block)
  float x_max;  // activations' integer bound: detail::kActMax, or kWideActMax for wide weights
  void (*requantize)(const float*, int16_t*, float*);  // wide: the reference or AVX-512 form
  int64_t token_bytes() const { return k * 2 + groups * 4 * 2; }  // q, scale, sum
  int64_t panel_bytes() const { return k * 2 * kPanelRows + groups * kPanelRows * 4 * (bias ? 2 : 1); }
  detail::IntToken token(std::byte* p) const {
    auto* f = reinterpret_cast<float*>(p + 2 * k);
    return {reinterpret_cast<const int16_t*>(p), f, f + groups};
  }
  detail::IntPanel panel(std::byte* p) const {
    auto* f = reinterpret_cast<float*>(p + 2 * k * kPanelRows);
    return {reinterpret_cast<const int16_t*>(p), f, bias ? f + groups * kPanelRows : nullptr};
  }
};

// Quantize one activation row into its token record.
void quantize_token(const float* x, const Layout& L, detail::QuantizeBlockFn qblock, std::byte* rec) {
  auto* q = reinterpret_cast<int16_t*>(rec);
  auto* scale = reinterpret_cast<float*>(rec + 2 * L.k);
  float* sum = scale + L.groups;
  for (int64_t b = 0; b < L.k; b += kActBlock) {
    float d;
    qblock(x + b, q + b, &d, L.x_max);
    for (int64_t g = b / L.group; g < (b + kActBlock) / L.group; ++g) scale[g] = d;
  }
  if (L.bias)
    for (int64_t g = 0; g < L.groups; ++g) sum[g] = tree_sum(x + g * L.group, static_cast<int>(L.group));
}

// Decode logical rows [r0, r0 + n) (n <= 16) of w into one panel. `qtmp`: k bytes; gscale,
// gbias: k / group floats.
// `f` is null for wide weights (decoded to f32 in `wtmp`, k floats, then re-quantized).
void pack_panel(const WeightMatrix& w, const IntWeightFormat* f, int64_t r0, int n, const Layout& L, uint8_t* qtmp,
                float* wtmp, float* gscale, float* gbias, std::byte* rec) {
  auto* q = reinterpret_cast<int16_t*>(rec);
  auto* scale = reinterpret_cast<float*>(rec + 2 * L.k * kPanelRows);
  float* bias = scale + L.groups * kPanelRows;
  if (n < kPanelRows) std::memset(rec, 0, static_cast<size_t>(L.panel_bytes()));
  if (L.wide) {
    int16_t qb[kActBlock];
    for (int r = 0; r < n; ++r) {
      w.dequantize_row(static_cast<uint64_t>(r0 + r), wtmp);
      for (int64_t g = 0; g < L.groups; ++g) {
        L.requantize(wtmp + g * kActBlock, qb, &scale[g * kPanelRows + r]);
        const int64_t k0 = g * kActBlock;
        for (int j = 0; j < kActBlock; ++j) q[((k0 + j) / 2) * 2 * kPanelRows + 2 * r + j % 2] = qb[j];
      }
    }
    return;
  }
  for (int r = 0; r < n; ++r) {
    f->decode(w.row_ptr(static_cast<uint64_t>(r0 + r)), L.k, qtmp, gscale, gbias);
    for (int64_t p = 0; p < L.k / 2; ++p) {
      q[p * 2 * kPanelRows + 2 * r] = static_cast<int16_t>(qtmp[2 * p] - L.offset);
      q[p * 2 * kPanelRows + 2 * r + 1] = static_cast<int16_t>(qtmp[2 * p + 1] - L.offset);
    }
    for (int64_t g = 0; g < L.groups; ++g) {
      scale[g * kPanelRows + r] = gscale[g];
      if (L.bias) bias[g * kPanelRows + r] = gbias[g];
    }
  }
}

// SMOLQ_EVAL_MATMUL: 0 unset, 1 "f32", 2 "int".
int matmul_env() {
  static const int v = [] {
    const char* env = std::getenv("SMOLQ_EVAL_MATMUL");
    if (env == nullptr || *env == '\0') return 0;
    const std::string_view s(env);
    if (s == "f32") return 1;
    if (s == "int") return 2;
    throw UsageError("SMOLQ_EVAL_MATMUL=" + std::string(s) + ": expected f32 or int");
  }();
  return v;
}

static_assert(static_cast<double>(detail::kWideWeightMax) * detail::kWideActMax * kActBlock < 2147483648.0,
              "a group's 32 products must fit int32");

}  // namespace

namespace detail {

void quantize_block_ref(const float* x, int16_t* q, float* d_out, float x_max) {
  float amax = 0.0f;
  bool finite = true;
  for (int j = 0; j < kActBlock; ++j) {
    amax = std::max(amax, std::fabs(x[j]));
    finite = finite && std::isfinite(x[j]);
  }
  // A NaN or Inf activation makes the block's scale NaN: the outputs it reaches are NaN, as in
  // an f32 evaluation (docs/perplexity.md, non-finite results).
  const float d = finite ? amax / x_max : std::numeric_limits<float>::quiet_NaN();
  const float id = finite && d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < kActBlock; ++j) {
    const float v = finite ? std::min(x_max, std::max(-x_max, round_even(x[j] * id))) : 0.0f;
    q[j] = static_cast<int16_t>(v);
  }
  *d_out = d;
}

void requantize_block(const float* w, int16_t* q, float* d_out) {
  float amax = 0.0f;
  bool finite = true;
  for (int j = 0; j < kActBlock; ++j) {
    amax = std::max(amax, std::fabs(w[j]));
    finite = finite && std::isfinite(w[j]);
  }
  // A non-finite weight: NaN scale, the row's outputs are NaN (as the f32 path's would be).
  const float d = finite ? amax / kWideWeightMax : std::numeric_limits<float>::quiet_NaN();
  // In double: 1 / d is finite even for BF16 blocks near the f32 underflow, and w * (1 / d)
  // is within a few ulps of the exact quotient (<= kWideWeightMax + tiny: the clamp).
  const double id = finite && d != 0.0f ? 1.0 / static_cast<double>(d) : 0.0;
  // Round half to even as round_even does, in double (|v| <= 8191 + tiny < 2^51): no libm call,
  // so the loop vectorizes.
  constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  for (int j = 0; j < kActBlock; ++j) {
    const double v = (static_cast<double>(w[j]) * id + kMagic) - kMagic;
    q[j] = static_cast<int16_t>(std::min<double>(kWideWeightMax, std::max<double>(-kWideWeightMax, v)));
  }
  *d_out = d;
}

void int_tile_ref(const IntPanel* w, int pm, const IntToken* x, int rn, int64_t groups, int group, bool bias, int rows,
                  float* y, int64_t ldy) {
  for (int t = 0; t < rn; ++t) {
    for (int row = 0; row < rows; ++row) {
      const IntPanel& P = w[row / kPanelRows];
      const int r = row % kPanelRows;
      float acc = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        int32_t isum = 0;
        for (int64_t k = g * group; k < (g + 1) * group; ++k)
          isum += static_cast<int32_t>(P.q[(k / 2) * 2 * kPanelRows + 2 * r + k % 2]) * x[t].q[k];
        acc = std::fma(static_cast<float>(isum), P.scale[g * kPanelRows + r] * x[t].scale[g], acc);
        if (bias) acc = std::fma(P.bias[g * kPanelRows + r], x[t].sum[g], acc);
      }
      y[t * ldy + row] = acc;
    }
  }
  (void)pm;
}

}  // namespace detail

bool int_matmul_enabled() {
  // The default: the integer path (docs/evaluator.md, "The default pass").
  return matmul_env() != 1;
}

bool has_int_form(GgmlType t) {
  return int_weight_format(t) != nullptr || t == GgmlType::F16 || t == GgmlType::BF16;
}

bool uses_int_matmul(const WeightMatrix& w) {
  // BF16 only when asked (=int): the default keeps it exact (matmul_int.h).
  const bool type_ok = int_weight_format(w.type) != nullptr || w.type == GgmlType::F16 ||
                       (matmul_env() == 2 && has_int_form(w.type));
  return int_matmul_enabled() && cpu::has_avx512_vnni() && type_ok && w.cols % kActBlock == 0;
}

void attach_int_panel_cache(WeightMatrix& w, uint64_t* budget) {
  w.int_panels = nullptr;
  if (!has_int_form(w.type) || int_weight_format(w.type) != nullptr || !uses_int_matmul(w)) return;
  const uint64_t panels = (w.rows + kPanelRows - 1) / kPanelRows;
  const uint64_t bytes = panels * kPanelRows * (w.cols * 2 + w.cols / kActBlock * 4) + 64;
  if (bytes > *budget) return;
  *budget -= bytes;
  w.int_panels = std::make_shared<IntPanelCache>();
}

namespace {

// The 64-byte aligned panels of `w` in `c` (n_panels of `pb` bytes), and whether this call must
// fill them (first call, or `w` no longer what they were filled from). Caller holds c.mutex.
std::byte* cached_panels(IntPanelCache& c, const WeightMatrix& w, int64_t n_panels, size_t pb, bool* fill) {
  const size_t need = static_cast<size_t>(n_panels) * pb + 64;
  *fill = !c.filled || c.data != w.data || c.type != w.type || c.rows != w.rows || c.cols != w.cols ||
          c.row_order != w.row_order || c.buf.size() != need;
  if (*fill) {
    c.filled = false;
    c.buf.assign(need, std::byte{0});
    c.data = w.data;
    c.type = w.type;
    c.rows = w.rows;
    c.cols = w.cols;
    c.row_order = w.row_order;
  }
  return c.buf.data() + (64 - reinterpret_cast<uintptr_t>(c.buf.data()) % 64) % 64;
}

}  // namespace

void matmul_int(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int n_threads, bool reference) {
  const IntWeightFormat* f = int_weight_format(w.type);
  const int64_t R = static_cast<int64_t>(w.rows);
  if (n_tokens <= 0 || R == 0) return;
  Layout L;
  L.k = static_cast<int64_t>(w.cols);
  L.wide = f == nullptr;  // F16/BF16 (has_int_form)
  L.group = L.wide ? kActBlock : f->group;
  L.groups = L.k / L.group;
  L.offset = L.wide ? 0 : f->offset;
  L.bias = !L.wide && f->has_bias;
  L.x_max = L.wide ? detail::kWideActMax : detail::kActMax;
  L.requantize = reference ? detail::requantize_block : detail::requantize_block_avx512;
  const detail::IntTileFn tile = reference ? detail::int_tile_ref : detail::int_tile_avx512;
  const detail::QuantizeBlockFn qblock = reference ? detail::quantize_block_ref : detail::quantize_block_avx512;
  n_threads = std::max(1, n_threads);

  // Row tiles: whole panels, about kWeightTileBytes each, at least two per thread and a
  // multiple of the thread count when the matrix allows (dynamic scheduling balances the rest).
  const int64_t n_panels = (R + kPanelRows - 1) / kPanelRows;
  const int64_t budget_panels = std::max<int64_t>(1, kWeightTileBytes / L.panel_bytes());
  int64_t n_tiles = std::max<int64_t>((n_panels + budget_panels - 1) / budget_panels, 2 * n_threads);
  n_tiles = (n_tiles + n_threads - 1) / n_threads * n_threads;
  const int64_t tile_panels = std::max<int64_t>(1, (n_panels + n_tiles - 1) / n_tiles);
  n_tiles = (n_panels + tile_panels - 1) / tile_panels;
  int64_t block_tokens = std::max<int64_t>(kTileTokens, kTokenBlockBytes / L.token_bytes());
  block_tokens = block_tokens / kTileTokens * kTileTokens;

  // Token records of the whole batch; reused between calls of one thread (no page faults per
  // matmul). Panels are 64-byte aligned (their sizes are multiples of 64); token records are
  // only read by 4-byte broadcasts.
  thread_local std::vector<std::byte> tokens_buf;
  const size_t tok_bytes = static_cast<size_t>(L.token_bytes());
  if (tokens_buf.size() < n_tokens * tok_bytes + 64) tokens_buf.resize(n_tokens * tok_bytes + 64);
  std::byte* tokens = tokens_buf.data() + (64 - reinterpret_cast<uintptr_t>(tokens_buf.data()) % 64) % 64;
  // F16/BF16 with a cache: the tiles are read from (or, on the first call, packed into) it.
  const size_t pb = static_cast<size_t>(L.panel_bytes());
  std::unique_lock<std::mutex> lock;
  std::byte* cached = nullptr;
  bool fill = true;
  if (L.wide && w.int_panels) {
    lock = std::unique_lock<std::mutex>(w.int_panels->mutex);
    cached = cached_panels(*w.int_panels, w, n_panels, pb, &fill);
  }

#pragma omp parallel num_threads(n_threads)
  {
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n_tokens; ++t) quantize_token(x + t * L.k, L, qblock, tokens + t * tok_bytes);

    thread_local std::vector<std::byte> wbuf;
    thread_local std::vector<float> gscale, gbias;
    thread_local std::vector<uint8_t> qtmp;
    thread_local std::vector<float> wtmp;
    if (!cached && wbuf.size() < tile_panels * pb + 64) wbuf.resize(tile_panels * pb + 64);
    std::byte* const wscratch = wbuf.data() + (64 - reinterpret_cast<uintptr_t>(wbuf.data()) % 64) % 64;
    gscale.resize(L.groups);
    gbias.resize(L.groups);
    qtmp.resize(static_cast<size_t>(L.k));
    if (L.wide) wtmp.resize(static_cast<size_t>(L.k));
#pragma omp for schedule(dynamic, 1)
    for (int64_t ti = 0; ti < n_tiles; ++ti) {
      const int64_t p0 = ti * tile_panels;
      const int64_t pt = std::min(tile_panels, n_panels - p0);
      std::byte* const wtile = cached ? cached + p0 * pb : wscratch;
      for (int64_t i = 0; i < pt && fill; ++i) {
        const int64_t r0 = (p0 + i) * kPanelRows;
        const int n = static_cast<int>(std::min<int64_t>(kPanelRows, R - r0));
        pack_panel(w, f, r0, n, L, qtmp.data(), wtmp.data(), gscale.data(), gbias.data(), wtile + i * pb);
      }
      for (int64_t t0 = 0; t0 < n_tokens; t0 += block_tokens) {
        const int64_t tn = std::min(block_tokens, n_tokens - t0);
        for (int64_t pg = 0; pg < pt; pg += kTilePanels) {
          const int pm = static_cast<int>(std::min<int64_t>(kTilePanels, pt - pg));
          const int64_t r0 = (p0 + pg) * kPanelRows;
          const int rows = static_cast<int>(std::min<int64_t>(pm * kPanelRows, R - r0));
          detail::IntPanel pw[kTilePanels];
          for (int j = 0; j < pm; ++j) pw[j] = L.panel(wtile + (pg + j) * pb);
          for (int64_t tg = t0; tg < t0 + tn; tg += kTileTokens) {
            const int rn = static_cast<int>(std::min<int64_t>(kTileTokens, t0 + tn - tg));
            detail::IntToken xs[kTileTokens];
            for (int j = 0; j < rn; ++j) xs[j] = L.token(tokens + (tg + j) * tok_bytes);
            tile(pw, pm, xs, rn, L.groups, static_cast<int>(L.group), L.bias, rows, y + tg * R + r0, R);
          }
        }
      }
    }
  }
  if (cached) w.int_panels->filled = true;
}

}  // namespace smolq
