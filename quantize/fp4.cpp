// The microscaling FP4 formats: 4-bit E2M1 values (sign bit 3, magnitudes 0, 0.5, 1, 1.5,
// 2, 3, 4, 6, stored doubled as kValuesMxfp4) times a shared 8-bit scale.
//
//   MXFP4 (4.25 bpw, 32 weights): an E8M0 exponent byte e (scale 2^(e-127); the decoder
//          returns half of it, 2^(e-128), to match the doubled values), then 16 bytes with
//          weight j in the low nibble of qs[j] and weight j+16 in the high nibble.
//   NVFP4 (4.5 bpw, 64 weights): four unsigned E4M3 scales (bias 7, subnormals, 0x7f = NaN
//          decodes to 0; the decoder again halves them), one per 16 weights, then 32 bytes:
//          sub-block s, weight j in the low nibble of qs[8 s + j], weight j+8 in the high one.
//
// For a given scale each weight simply takes its nearest value, so the search only tries a
// few scale codes around ggml's choice (which maps the largest weight near the top value)
// and keeps the one with the least weighted error. ggml ignores importance weights for
// these types; we use them to pick the scale.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "formats/half.h"
#include "quantize/blocks.h"
#include "quantize/iq_lattice.h"
#include "quantize/iq_rows.h"
#include "quantize/iq_tables.h"
#include "quantize/quants_iq.h"

namespace smolq::kernels {
namespace {

// Importance profiles (measured on the golden matrix): plain MXFP4 minimises the plain
// squared error; NVFP4's finer scales do better with a slight preference for large weights.
constexpr iq::WeightProfile kMxfp4Weights{0.7f, 0.1f, 0.0f};
constexpr iq::WeightProfile kNvfp4Weights{0.7f, 0.1f, 0.25f};

// E8M0 scale as ggml decodes it: 2^(e-128) (half the format's 2^(e-127)); e < 2 gives
// float subnormals.
inline float e8m0_half(uint8_t e) {
  const uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
  return bits_f32(bits);
}

// Unsigned E4M3 as ggml decodes it (half the format's value); 0 and 0x7f (NaN) give 0.
inline float ue4m3_half(uint8_t x) {
  if (x == 0 || x == 0x7f) return 0.0f;
  const int exp = (x >> 3) & 0xf, man = x & 0x7;
  const float raw = exp == 0 ? std::ldexp(static_cast<float>(man), -9)
                             : std::ldexp(1.0f + static_cast<float>(man) / 8.0f, exp - 7);
  return raw * 0.5f;
}

// FP4 code of the value nearest to t (in doubled units): magnitude by thresholds halfway
// between 0,1,2,3,4,6,8,12 (ties to the smaller magnitude, as ggml), sign in bit 3; zero is
// always code 0.
inline uint8_t fp4_code(float t) {
  static constexpr float kMid[7] = {0.5f, 1.5f, 2.5f, 3.5f, 5.0f, 7.0f, 10.0f};
  const float a = std::fabs(t);
  uint8_t m = 0;
  for (float mid : kMid) m += a > mid;
  return m == 0 ? 0 : static_cast<uint8_t>(m | (t < 0 ? 8 : 0));
}

// Weighted squared error of n weights coded at scale d (codes written to q).
double fp4_error(const float* x, const float* w, int n, float d, uint8_t* q) {
  double e = 0;
  const float inv = d > 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < n; ++i) {
    q[i] = d > 0.0f ? fp4_code(x[i] * inv) : 0;
    const float diff = x[i] - static_cast<float>(iq::kValuesMxfp4[q[i]]) * d;
    e += static_cast<double>(w[i]) * diff * diff;
  }
  return e;
}

// Scale codes tried around the starting code (the error is not monotone in the scale,
// and the top value 12 of the largest weight is not always worth keeping unclipped).
constexpr int kMxfp4Span = 1;  // e0-1 .. e0+1
constexpr int kNvfp4Span = 3;  // u0-3 .. u0+3 (E4M3 steps are 1/8 octave)

}  // namespace

// ---- MXFP4 --------------------------------------------------------------------------------

void quantize_mxfp4_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                        std::span<const float> imatrix) {
  iq::encode_rows<BlockMXFP4, kQK>(src, dst, n_per_row, imatrix, [](const float* x, const float* qw, BlockMXFP4& b) {
    float w[kQK];
    iq::iq_weights({x, static_cast<size_t>(kQK)}, qw, {w, static_cast<size_t>(kQK)}, kMxfp4Weights);
    float amax = 0.0f;
    for (int i = 0; i < kQK; ++i) amax = std::max(amax, std::fabs(x[i]));
    uint8_t q[kQK] = {}, tq[kQK];
    b.e = 0;
    if (amax > 0.0f) {
      // ggml's exponent: 2^(e-128) * 8 <= amax < 2^(e-128) * 16.
      const int e0 = static_cast<int>(std::floor(std::log2(amax))) - 2 + 127;
      double best = std::numeric_limits<double>::max();
      for (int e = std::max(0, e0 - kMxfp4Span); e <= std::min(254, e0 + kMxfp4Span); ++e) {
        const double err = fp4_error(x, w, kQK, e8m0_half(static_cast<uint8_t>(e)), tq);
        if (err < best) {
          best = err;
          b.e = static_cast<uint8_t>(e);
          std::copy(tq, tq + kQK, q);
        }
      }
    }
    for (int j = 0; j < kQK / 2; ++j) b.qs[j] = static_cast<uint8_t>(q[j] | (q[j + kQK / 2] << 4));
  });
}

void dequantize_mxfp4(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockMXFP4, kQK>(src, dst, [](const BlockMXFP4& b, float* y) {
    const float d = e8m0_half(b.e);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>(iq::kValuesMxfp4[b.qs[j] & 0x0f]) * d;
      y[j + kQK / 2] = static_cast<float>(iq::kValuesMxfp4[b.qs[j] >> 4]) * d;
    }
  });
}

// ---- NVFP4 --------------------------------------------------------------------------------

void quantize_nvfp4_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                        std::span<const float> imatrix) {
  constexpr int kN = 64, kSub = 16;
  // Decoded (halved) value of every finite non-zero E4M3 code 1..0x7e: increasing in the code.
  static const std::array<float, 127> kScale = [] {
    std::array<float, 127> t{};
    for (int u = 0; u < 127; ++u) t[u] = ue4m3_half(static_cast<uint8_t>(u));
    return t;
  }();
  iq::encode_rows<BlockNVFP4, kN>(src, dst, n_per_row, imatrix, [](const float* x, const float* qw, BlockNVFP4& b) {
    float w[kN];
    iq::iq_weights({x, static_cast<size_t>(kN)}, qw, {w, static_cast<size_t>(kN)}, kNvfp4Weights);
    for (int s = 0; s < kN / kSub; ++s) {
      const float* xs = x + kSub * s;
      const float* ws = w + kSub * s;
      float amax = 0.0f;
      for (int i = 0; i < kSub; ++i) amax = std::max(amax, std::fabs(xs[i]));
      uint8_t q[kSub] = {}, tq[kSub];
      b.d[s] = 0;
      if (amax > 0.0f) {
        // Start at the code whose scale maps amax closest to the top value 12.
        const float target = amax / 12.0f;
        const int u0 = static_cast<int>(std::lower_bound(kScale.begin() + 1, kScale.end(), target) - kScale.begin());
        double best = std::numeric_limits<double>::max();
        for (int u = std::max(1, u0 - kNvfp4Span); u <= std::min(126, u0 + kNvfp4Span); ++u) {
          const double err = fp4_error(xs, ws, kSub, kScale[u], tq);
          if (err < best) {
            best = err;
            b.d[s] = static_cast<uint8_t>(u);
            std::copy(tq, tq + kSub, q);
          }
        }
      }
      for (int j = 0; j < kSub / 2; ++j) b.qs[8 * s + j] = static_cast<uint8_t>(q[j] | (q[j + kSub / 2] << 4));
    }
  });
}

void dequantize_nvfp4(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockNVFP4, 64>(src, dst, [](const BlockNVFP4& b, float* y) {
    for (int s = 0; s < 4; ++s) {
      const float d = ue4m3_half(b.d[s]);
      float* yb = y + 16 * s;
      for (int j = 0; j < 8; ++j) {
        yb[j] = static_cast<float>(iq::kValuesMxfp4[b.qs[8 * s + j] & 0x0f]) * d;
        yb[j + 8] = static_cast<float>(iq::kValuesMxfp4[b.qs[8 * s + j] >> 4]) * d;
      }
    }
  });
}

}  // namespace smolq::kernels
