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
// weighted least-squares scale (an exact scan for the ternary and binary alphabets), which
// gives the same codes on truly ternary weights.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "formats/half.h"
#include "quantize/blocks.h"
#include "quantize/iq_lattice.h"
#include "quantize/iq_rows.h"
#include "quantize/quants_iq.h"

namespace smolq::kernels {
namespace {

// Importance profile: the ternary scale is one number for 256 weights, so full-strength
// column importance drags it towards a few heavy columns (on the golden outlier rows the
// plain error rose 15%); 0.3 keeps most of the weighted gain.
constexpr iq::WeightProfile kTernaryWeights{0.3f, 0.1f, 0.0f};
// Q2_0's four levels leave more freedom: the lattice types' profile works.
constexpr iq::WeightProfile kQ20Weights = iq::kLatticeWeights;

using iq::HalfScale;

// Ternary: the optimal code set is "the k largest |x| are +-d, the rest 0" for some k, and
// for a given k the best d is the weighted mean of those |x|. Scan k (weights sorted by |x|).
// The order is |x| descending, index ascending on ties: sorted as one 64-bit key per weight,
// (complemented bits of |x|) << 32 | index (for non-negative floats the bit patterns order
// like the values), which is the same strict total order without a comparator call per step.
float ternary_scale(const float* x, const float* w, int n) {
  uint64_t key[kQKK];
  for (int i = 0; i < n; ++i)
    key[i] = (static_cast<uint64_t>(~f32_bits(std::fabs(x[i]))) << 32) | static_cast<uint32_t>(i);
  std::sort(key, key + n);
  double sw = 0, swa = 0, best_gain = 0;
  float best_d = 0.0f;
  for (int k = 0; k < n; ++k) {
    const int i = static_cast<int>(key[k] & 0xffffffffu);
    sw += w[i];
    swa += w[i] * std::fabs(x[i]);
    if (!(sw > 0)) continue;
    const double gain = swa * swa / sw;  // error reduction from coding the top k+1 weights
    if (gain > best_gain) {
      best_gain = gain;
      best_d = static_cast<float>(swa / sw);
    }
  }
  return best_d;
}

// Ternary codes (t + 1, i.e. 0..2) for scale d: the nearest of -d, 0, d.
void ternary_codes(const float* x, int n, float d, uint8_t* q) {
  const float half = 0.5f * d;
  for (int i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(d > 0.0f && x[i] > half ? 2 : d > 0.0f && x[i] < -half ? 0 : 1);
}

HalfScale ternary_fit(const float* x, const float* qw, uint8_t* q) {
  float w[kQKK];
  iq::iq_weights({x, static_cast<size_t>(kQKK)}, qw, {w, static_cast<size_t>(kQKK)}, kTernaryWeights);
  const HalfScale d = iq::round_half(ternary_scale(x, w, kQKK));
  ternary_codes(x, kQKK, d.value, q);
  return d;
}

// Q2_0: levels {-1, 0, 1, 2} * d; both signs of d, a fan of starts, least-squares refits.
constexpr float kQ20Trials[] = {1.0f, 0.9f, 0.8f, 0.7f, 0.6f, 0.5f};
constexpr int kQ20Refine = 2;

inline int q20_code(float t) {  // nearest of -1, 0, 1, 2 as a code 0..3
  return std::clamp(static_cast<int>(std::floor(t + 0.5f)), -1, 2) + 1;
}

float q20_error(const float* x, const float* w, int n, float d, float& P, float& Q) {
  P = Q = 0.0f;
  const float inv = 1.0f / d;
  for (int i = 0; i < n; ++i) {
    const float v = static_cast<float>(q20_code(x[i] * inv) - 1);
    P += w[i] * x[i] * v;
    Q += w[i] * v * v;
  }
  return d * (d * Q - 2.0f * P);
}

}  // namespace

// ---- TQ1_0 --------------------------------------------------------------------------------

void quantize_tq1_0_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                        std::span<const float> imatrix) {
  iq::encode_rows<BlockTQ1_0, kQKK>(src, dst, n_per_row, imatrix, [](const float* x, const float* qw, BlockTQ1_0& b) {
    uint8_t q[kQKK];
    b.d = ternary_fit(x, qw, q).bits;
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

void quantize_tq2_0_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                        std::span<const float> imatrix) {
  iq::encode_rows<BlockTQ2_0, kQKK>(src, dst, n_per_row, imatrix, [](const float* x, const float* qw, BlockTQ2_0& b) {
    uint8_t q[kQKK];
    b.d = ternary_fit(x, qw, q).bits;
    std::memset(b.qs, 0, sizeof b.qs);
    for (int e = 0; e < kQKK; ++e) b.qs[(e / 128) * 32 + e % 32] |= static_cast<uint8_t>(q[e] << (2 * ((e % 128) / 32)));
  });
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
  constexpr int kN = 64;
  iq::encode_rows<BlockQ2_0, kN>(src, dst, n_per_row, imatrix, [](const float* x, const float* qw, BlockQ2_0& b) {
    float w[kN];
    iq::iq_weights({x, static_cast<size_t>(kN)}, qw, {w, static_cast<size_t>(kN)}, kQ20Weights);
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < kN; ++i)
      if (std::fabs(x[i]) > amax) {
        amax = std::fabs(x[i]);
        max = x[i];
      }
    float best_d = 0.0f, best_e = 0.0f;
    if (amax > 1e-30f) {
      // The largest weight goes to level 2 (same sign as d) or to level -1 (d of the
      // opposite sign), at a fan of fractions of that level.
      for (float end : {2.0f, -1.0f})
        for (float f : kQ20Trials) {
          float d = max / (end * f);
          for (int it = 0; it <= kQ20Refine; ++it) {
            float P, Q;
            const float e = q20_error(x, w, kN, d, P, Q);
            if (e < best_e) {
              best_e = e;
              best_d = d;
            }
            if (!(Q > 0.0f) || P == 0.0f) break;
            d = P / Q;
          }
        }
    }
    const HalfScale d = iq::round_half(best_d);
    b.d = d.bits;
    std::memset(b.qs, 0, sizeof b.qs);
    for (int j = 0; j < kN; ++j) {
      const int code = d.value != 0.0f ? q20_code(x[j] / d.value) : 1;
      b.qs[j / 4] |= static_cast<uint8_t>(code << (2 * (j % 4)));
    }
  });
}

void dequantize_q2_0(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockQ2_0, 64>(src, dst, [](const BlockQ2_0& b, float* y) {
    const float d = f16_to_f32(b.d);
    for (int j = 0; j < 64; ++j) y[j] = static_cast<float>(static_cast<int>((b.qs[j / 4] >> (2 * (j % 4))) & 3) - 1) * d;
  });
}

}  // namespace smolq::kernels
