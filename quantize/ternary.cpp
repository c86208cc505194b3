// The tiny-alphabet formats: ternary TQ1_0 / TQ2_0 (w = d * t, t in {-1, 0, 1}), binary
// Q1_0 (w = +-d) and the four-level Q2_0 (w = d * (q - 1), q in 0..3).
//
//   TQ1_0 (1.6875 bpw, 256): t+1 packed five base-3 digits per byte: bytes 0-31 hold weights
//          n*32 + m (digit n of byte m, n = 0 most significant), bytes 32-47 weights
//          160 + n*16 + m, qh[0..3] weights 240 + n*4 + m (four digits, the fifth zero);
//          a byte stores ceil(v * 256 / 243) so a digit is read back as ((byte * 3^n) * 3) >> 8
//          in 8-bit arithmetic. Then d f16.
//   TQ2_0 (2.0625 bpw, 256): t+1 as 2-bit fields: weight 128 h + 32 l + m in bits 2l of byte
//          32 h + m. Then d f16.
//   Q1_0  (1.125 bpw, 128): d f16, then bit j (LSB first) of the 16 bytes: 1 -> +d, 0 -> -d.
//   Q2_0  (2.25 bpw, 64): d f16, then 2-bit codes, weight j in bits 2 (j % 4) of byte j / 4.
//
// ggml quantizes these with d = max |x| (or mean |x| for Q1_0), exact for weights that
// really are ternary/binary but far from the least-squares optimum otherwise. We find the
// weighted least-squares scale (a Lloyd iteration for the ternary alphabet, see ternary_scale;
// the exact mean for the binary one), which gives the same codes on truly ternary weights.
// Q2_0's search (a fan of starts with least-squares refits) is in quantize/q2_0_lanes.h, run
// on 16 or 32 blocks at once by ternary_avx2.cpp / ternary_avx512.cpp.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "formats/cpu_features.h"
#include "formats/half.h"
#include "quantize/blocks.h"
#include "quantize/iq_lattice.h"
#include "quantize/iq_rows.h"
#include "quantize/q2_0_lanes.h"
#include "quantize/quants_iq.h"

namespace smolq::kernels {
namespace {

// Importance profile: the ternary scale is one number for 256 weights, so full-strength
// column importance drags it towards a few heavy columns (on the golden outlier rows the
// plain error rose 15%); 0.3 keeps most of the weighted gain.
constexpr iq::WeightProfile kTernaryWeights{0.3f, 0.1f, 0.0f};

using iq::HalfScale;

// Ternary: for the set S of weights coded +-d, the best d is the weighted mean of |x| over S
// and the weighted error falls by gain(S) = (sum_S w|x|)^2 / sum_S w; for a given d the best
// S is {|x| > d/2}. The optimum is a fixed point of alternating the two (a Lloyd iteration,
// which never lowers the gain). We iterate from two starts and keep the larger gain:
//   - ggml's scale d = max |x| (so the result is never worse than ggml's codes, in the
//     weighted error before the f16 rounding);
//   - d = 1.2 * rms(x), near the optimum of a gaussian block (1.224 sigma), so that start
//     usually converges in a few steps.
// (An exact scan over the |x|-sorted weights found the global optimum: measured on
// SmolLM2-135M ffn_down rows and gaussian rows the two agree in rmse to 0.1%, and the
// iteration is ~10x cheaper than the sort.)
constexpr int kTernaryIterations = 12;

// Over the weights with a > thr: sum w and sum w*a, in eight interleaved partial sums (fixed
// order, so the loop vectorises without changing a result).
// The SSE2 form (x86-64's baseline: no dispatch) does lane k's operations of the portable
// loop in lane k % 4 of register k / 4, so both give the same sums.
void ternary_sums(const float* a, const float* w, int n, float thr, float& sw, float& swa) {
  alignas(16) float pw[8] = {}, pwa[8] = {};
#if defined(__SSE2__)
  const __m128 t = _mm_set1_ps(thr);
  __m128 w0 = _mm_setzero_ps(), w1 = w0, wa0 = w0, wa1 = w0;
  for (int i = 0; i < n; i += 8) {
    const __m128 a0 = _mm_loadu_ps(a + i), a1 = _mm_loadu_ps(a + i + 4);
    const __m128 in0 = _mm_and_ps(_mm_cmpgt_ps(a0, t), _mm_loadu_ps(w + i));
    const __m128 in1 = _mm_and_ps(_mm_cmpgt_ps(a1, t), _mm_loadu_ps(w + i + 4));
    w0 = _mm_add_ps(w0, in0);
    w1 = _mm_add_ps(w1, in1);
    wa0 = _mm_add_ps(wa0, _mm_mul_ps(in0, a0));
    wa1 = _mm_add_ps(wa1, _mm_mul_ps(in1, a1));
  }
  _mm_store_ps(pw, w0);
  _mm_store_ps(pw + 4, w1);
  _mm_store_ps(pwa, wa0);
  _mm_store_ps(pwa + 4, wa1);
#else
  for (int i = 0; i < n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const float in = a[i + k] > thr ? w[i + k] : 0.0f;
      pw[k] += in;
      pwa[k] += in * a[i + k];
    }
#endif
  sw = ((pw[0] + pw[1]) + (pw[2] + pw[3])) + ((pw[4] + pw[5]) + (pw[6] + pw[7]));
  swa = ((pwa[0] + pwa[1]) + (pwa[2] + pwa[3])) + ((pwa[4] + pwa[5]) + (pwa[6] + pwa[7]));
}

using TernarySums = void (*)(const float*, const float*, int, float, float&, float&);

// a = |x|, amax = max a and s2 = sum a^2 in eight interleaved partial sums (lane k: i % 8 == k,
// combined in a fixed tree).
void ternary_abs(const float* x, int n, float* a, float& amax, float& s2) {
  float p2[8] = {};
  amax = 0.0f;
  for (int i = 0; i < n; i += 8)
    for (int k = 0; k < 8; ++k) {
      a[i + k] = std::fabs(x[i + k]);
      amax = std::max(amax, a[i + k]);
      p2[k] += a[i + k] * a[i + k];
    }
  s2 = ((p2[0] + p2[1]) + (p2[2] + p2[3])) + ((p2[4] + p2[5]) + (p2[6] + p2[7]));
}
using TernaryAbs = void (*)(const float*, int, float*, float&, float&);

#if defined(__x86_64__)
// ternary_abs with lane k of the portable loop in lane k of one register (the maximum of
// finite values does not depend on the order).
[[gnu::target("avx2")]] void ternary_abs_avx2(const float* x, int n, float* a, float& amax, float& s2) {
  alignas(32) float p2[8], m[8];
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 vmax = _mm256_setzero_ps(), vs = vmax;
  for (int i = 0; i < n; i += 8) {
    const __m256 v = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i));
    _mm256_storeu_ps(a + i, v);
    vmax = _mm256_max_ps(vmax, v);
    vs = _mm256_add_ps(vs, _mm256_mul_ps(v, v));
  }
  _mm256_store_ps(p2, vs);
  _mm256_store_ps(m, vmax);
  amax = std::max(std::max(std::max(m[0], m[1]), std::max(m[2], m[3])), std::max(std::max(m[4], m[5]), std::max(m[6], m[7])));
  s2 = ((p2[0] + p2[1]) + (p2[2] + p2[3])) + ((p2[4] + p2[5]) + (p2[6] + p2[7]));
}

// The AVX2 form: lane k of one register does lane k of the portable loop (the SSE2 form's two
// registers side by side), so the same sums.
[[gnu::target("avx2")]] void ternary_sums_avx2(const float* a, const float* w, int n, float thr, float& sw,
                                               float& swa) {
  alignas(32) float pw[8], pwa[8];
  const __m256 t = _mm256_set1_ps(thr);
  __m256 w0 = _mm256_setzero_ps(), wa0 = w0;
  for (int i = 0; i < n; i += 8) {
    const __m256 a0 = _mm256_loadu_ps(a + i);
    const __m256 in0 = _mm256_and_ps(_mm256_cmp_ps(a0, t, _CMP_GT_OQ), _mm256_loadu_ps(w + i));
    w0 = _mm256_add_ps(w0, in0);
    wa0 = _mm256_add_ps(wa0, _mm256_mul_ps(in0, a0));
  }
  _mm256_store_ps(pw, w0);
  _mm256_store_ps(pwa, wa0);
  sw = ((pw[0] + pw[1]) + (pw[2] + pw[3])) + ((pw[4] + pw[5]) + (pw[6] + pw[7]));
  swa = ((pwa[0] + pwa[1]) + (pwa[2] + pwa[3])) + ((pwa[4] + pwa[5]) + (pwa[6] + pwa[7]));
}
#endif

// The two loops of the ternary scale: portable/SSE2 (the _ref quantizers) or AVX2 (the fast
// ones when the CPU has it, formats/cpu_features.h), same floats.
struct TernaryKernels {
  TernaryAbs abs;
  TernarySums sums;
};
constexpr TernaryKernels kRefTernary{ternary_abs, ternary_sums};
TernaryKernels fast_ternary() {
#if defined(__x86_64__)
  if (cpu::has_avx2()) return {ternary_abs_avx2, ternary_sums_avx2};
#endif
  return kRefTernary;
}

float ternary_scale(const float* x, const float* w, int n, const TernaryKernels& k) {
  float a[kQKK], amax, s2;
  k.abs(x, n, a, amax, s2);
  if (!(amax > 0.0f)) return 0.0f;
  float best_d = 0.0f;
  double best_gain = 0.0;
  for (float d : {amax, 1.2f * std::sqrt(s2 / static_cast<float>(n))}) {
    for (int it = 0; it < kTernaryIterations; ++it) {
      float sw, swa;
      k.sums(a, w, n, 0.5f * d, sw, swa);
      if (!(sw > 0.0f)) break;
      const double gain = static_cast<double>(swa) * swa / sw;
      const float nd = swa / sw;
      if (gain > best_gain) {
        best_gain = gain;
        best_d = nd;
      }
      if (nd == d) break;  // fixed point
      d = nd;
    }
  }
  return best_d;
}

// Ternary codes (t + 1, i.e. 0..2) for scale d: the nearest of -d, 0, d.
void ternary_codes(const float* x, int n, float d, uint8_t* q) {
  if (!(d > 0.0f)) {
    std::memset(q, 1, static_cast<size_t>(n));
    return;
  }
  const float half = 0.5f * d;
  for (int i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(1 + (x[i] > half) - (x[i] < -half));  // branch-free: vectorises
}

HalfScale ternary_fit(const float* x, const float* qw, uint8_t* q, const TernaryKernels& k) {
  float w[kQKK];
  static_assert(kTernaryWeights.magnitude_plain == 0.0f, "without an imatrix every weight is 1");
  if (qw) iq::iq_weights({x, static_cast<size_t>(kQKK)}, qw, {w, static_cast<size_t>(kQKK)}, kTernaryWeights);
  else std::fill(w, w + kQKK, 1.0f);
  const HalfScale d = iq::round_half(ternary_scale(x, w, kQKK, k));
  ternary_codes(x, kQKK, d.value, q);
  return d;
}

}  // namespace

// ---- TQ1_0 --------------------------------------------------------------------------------

namespace {

void quantize_tq1_0_with(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                         std::span<const float> imatrix, const TernaryKernels& k) {
  iq::encode_rows<BlockTQ1_0, kQKK>(src, dst, n_per_row, imatrix, [&k](const float* x, const float* qw, BlockTQ1_0& b) {
    uint8_t q[kQKK];
    b.d = ternary_fit(x, qw, q, k).bits;
    // Pack five (or four) base-3 digits, most significant first, then store the fraction
    // v / 243 as a rounded-up byte.
    auto pack = [](const uint8_t* digits, int count, int stride) {
      int v = 0;
      for (int n = 0; n < 5; ++n) v = 3 * v + (n < count ? digits[n * stride] : 0);
      return static_cast<uint8_t>((v * 256 + 242) / 243);
    };
    for (int m = 0; m < 32; ++m) b.qs[m] = pack(q + m, 5, 32);
    for (int m = 0; m < 16; ++m) b.qs[32 + m] = pack(q + 160 + m, 5, 16);
    for (int m = 0; m < 4; ++m) b.qh[m] = pack(q + 240 + m, 4, 4);
  });
}

}  // namespace

void quantize_tq1_0_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                        std::span<const float> imatrix) {
  quantize_tq1_0_with(src, dst, n_per_row, imatrix, kRefTernary);
}

void quantize_tq1_0(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                    std::span<const float> imatrix) {
  quantize_tq1_0_with(src, dst, n_per_row, imatrix, fast_ternary());
}

void dequantize_tq1_0(std::span<const std::byte> src, std::span<float> dst) {
  static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  iq::decode_rows<BlockTQ1_0, kQKK>(src, dst, [](const BlockTQ1_0& b, float* y) {
    const float d = f16_to_f32(b.d);
    auto digit = [](uint8_t byte, int n) {
      const uint8_t q = static_cast<uint8_t>(byte * kPow3[n]);
      return static_cast<int16_t>((static_cast<uint16_t>(q) * 3) >> 8);
    };
    for (int n = 0; n < 5; ++n)
      for (int m = 0; m < 32; ++m) *y++ = static_cast<float>(digit(b.qs[m], n) - 1) * d;
    for (int n = 0; n < 5; ++n)
      for (int m = 0; m < 16; ++m) *y++ = static_cast<float>(digit(b.qs[32 + m], n) - 1) * d;
    for (int n = 0; n < 4; ++n)
      for (int m = 0; m < 4; ++m) *y++ = static_cast<float>(digit(b.qh[m], n) - 1) * d;
  });
}

// ---- TQ2_0 --------------------------------------------------------------------------------

namespace {

void quantize_tq2_0_with(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                         std::span<const float> imatrix, const TernaryKernels& k) {
  iq::encode_rows<BlockTQ2_0, kQKK>(src, dst, n_per_row, imatrix, [&k](const float* x, const float* qw, BlockTQ2_0& b) {
    uint8_t q[kQKK];
    b.d = ternary_fit(x, qw, q, k).bits;
    // weight 128 h + 32 l + m -> bits 2l of byte 32 h + m
    for (int h = 0; h < 2; ++h)
      for (int m = 0; m < 32; ++m) {
        const uint8_t* e = q + 128 * h + m;
        b.qs[32 * h + m] = static_cast<uint8_t>(e[0] | (e[32] << 2) | (e[64] << 4) | (e[96] << 6));
      }
  });
}

}  // namespace

void quantize_tq2_0_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                        std::span<const float> imatrix) {
  quantize_tq2_0_with(src, dst, n_per_row, imatrix, kRefTernary);
}

void quantize_tq2_0(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                    std::span<const float> imatrix) {
  quantize_tq2_0_with(src, dst, n_per_row, imatrix, fast_ternary());
}

void dequantize_tq2_0(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockTQ2_0, kQKK>(src, dst, [](const BlockTQ2_0& b, float* y) {
    const float d = f16_to_f32(b.d);
    for (int j = 0; j < 64; j += 32)
      for (int l = 0; l < 4; ++l)
        for (int m = 0; m < 32; ++m) *y++ = static_cast<float>(static_cast<int8_t>((b.qs[j + m] >> (2 * l)) & 3) - 1) * d;
  });
}

// ---- Q1_0 ---------------------------------------------------------------------------------

void quantize_q1_0_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                       std::span<const float> imatrix) {
  constexpr int kN = 128;
  iq::encode_rows<BlockQ1_0, kN>(src, dst, n_per_row, imatrix, [](const float* x, const float*, BlockQ1_0& b) {
    // With the signs fixed to sign(x) (always the nearest code), d is the only free value
    // and its least-squares optimum is mean |x|, which is ggml's rule too. The imatrix is
    // deliberately not used: a weighted mean would trade plain error one for one against
    // weighted error (on the golden outlier rows +45% plain for -18% weighted).
    double sa = 0;
    for (int i = 0; i < kN; ++i) sa += std::fabs(x[i]);
    b.d = iq::round_half(static_cast<float>(sa / kN)).bits;
    std::memset(b.qs, 0, sizeof b.qs);
    for (int j = 0; j < kN; ++j)
      if (x[j] >= 0.0f) b.qs[j / 8] |= static_cast<uint8_t>(1u << (j % 8));
  });
}

void dequantize_q1_0(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockQ1_0, 128>(src, dst, [](const BlockQ1_0& b, float* y) {
    const float d = f16_to_f32(b.d);
    const float neg_d = -d;
    for (int j = 0; j < 128; ++j) y[j] = (b.qs[j / 8] >> (j % 8)) & 1 ? d : neg_d;
  });
}

// ---- Q2_0 ---------------------------------------------------------------------------------

void quantize_q2_0_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                       std::span<const float> imatrix) {
  q2_0::quantize_t<q2_0::Kernels<q2_0::ScalarV, 1>>(src, dst, n_per_row, imatrix);
}

// The same search with the candidate scoring of 32 (AVX-512) or 16 (AVX2) blocks in lanes.
void quantize_q2_0(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix) {
#if defined(__x86_64__)
  if (cpu::has_avx512()) return q2_0::quantize_avx512(src, dst, n_per_row, imatrix);
  if (cpu::has_avx2()) return q2_0::quantize_avx2(src, dst, n_per_row, imatrix);
#endif
  q2_0::quantize_t<q2_0::Kernels<q2_0::ScalarV, 1>>(src, dst, n_per_row, imatrix);
}

void dequantize_q2_0(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockQ2_0, 64>(src, dst, [](const BlockQ2_0& b, float* y) {
    const float d = f16_to_f32(b.d);
    for (int j = 0; j < 64; ++j) y[j] = static_cast<float>(static_cast<int>((b.qs[j / 4] >> (2 * (j % 4))) & 3) - 1) * d;
  });
}

}  // namespace smolq::kernels
