// IQ4_NL and IQ4_XS: 4-bit codes into the fixed non-uniform table kValuesIq4nl
// (-127 ... 113, denser near zero), scaled per block.
//
//   IQ4_NL (4.5 bpw, 32 weights): d f16, then 16 bytes; weight j in the low nibble of
//          qs[j], weight j+16 in the high nibble. w = d * kvalues[q].
//   IQ4_XS (4.25 bpw, 256 weights): d f16; 6-bit signed sub-block scales for 8 x 32
//          weights (low 4 bits in scales_l nibbles, high 2 bits in scales_h);
//          w = d * (ls - 32) * kvalues[q], nibbles laid out per 32 weights as IQ4_NL.
//
// For a fixed scale every weight's best code is simply its nearest table value, so the
// search is over scales only, and iq_scale_sweep finds the exact optimum over both signs
// (the table is asymmetric); the best few are then re-scored at their f16 roundings.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "formats/half.h"
#include "quantize/blocks.h"
#include "quantize/iq_lattice.h"
#include "quantize/iq_rows.h"
#include "quantize/iq_scale_sweep.h"
#include "quantize/iq_tables.h"
#include "quantize/quants_iq.h"

namespace smolq::kernels {
namespace {

// Importance profile (measured on the golden matrix): without an imatrix, a stronger
// preference for the large weights than the lattice types use.
constexpr iq::WeightProfile kScalarWeights{0.7f, 0.1f, 0.5f};

using iq::HalfScale;
using iq::kValuesIq4nl;

// The table as floats, for the exact scale sweep (iq_scale_sweep.h).
constexpr std::array<float, 16> kValuesF = [] {
  std::array<float, 16> v{};
  for (int i = 0; i < 16; ++i) v[i] = kValuesIq4nl[i];
  return v;
}();
// How many of the sweep's best float scales are kept for the f16 rounding step.
constexpr int kIq4Candidates = 16;
// A block counts as an exact fit when the best float scale leaves less than this fraction
// of its weighted energy as error.
constexpr float kIq4ExactFit = 1e-5f;
// Scale window of the sweep: the block's largest |x| lands on table position 95..145
// (|values| reach 127; beyond, it is clipped). Measured: widening to 55..160 changes the
// golden errors by < 0.5% and costs twice the time.
constexpr float kIq4WindowMax = 145.0f, kIq4WindowMin = 95.0f;
// IQ4_XS super-block scale candidates, as multiples of (largest |sub-block scale| / 31).
constexpr float kIq4xsSuperFactors[] = {1.0f, 0.97f, 0.94f, 0.91f};

// Index of the table value nearest to t (the table is ascending; ties to the lower value).
inline int nearest_iq4(float t) {
  static constexpr auto kMid = [] {
    std::array<float, 15> m{};
    for (int i = 0; i < 15; ++i) m[i] = 0.5f * (kValuesIq4nl[i] + kValuesIq4nl[i + 1]);
    return m;
  }();
  int lo = 0;
  for (int step = 8; step > 0; step >>= 1)  // binary search over the 16 cells
    if (t > kMid[lo + step - 1]) lo += step;
  return lo;
}

struct Fit {
  float P = 0, Q = 0;  // sum w x v, sum w v^2 (v = table value)
};

// Codes of n weights for scale s (s != 0), and their P, Q.
Fit assign(const float* x, const float* w, int n, float s, uint8_t* q) {
  const float inv = 1.0f / s;
  Fit f;
  for (int i = 0; i < n; ++i) {
    q[i] = static_cast<uint8_t>(nearest_iq4(x[i] * inv));
    const float v = kValuesIq4nl[q[i]];
    f.P += w[i] * x[i] * v;
    f.Q += w[i] * v * v;
  }
  return f;
}

// Weighted squared error minus its constant part, for scale s with fit f.
inline float err(float s, const Fit& f) { return s * (s * f.Q - 2.0f * f.P); }

// The f16 scale whose exact codes give the least error, written with the codes; {0, 0}
// when nothing beats all-zero. Normally only the best float scale is rounded: the rounding
// costs far less than the quantization itself. When the block fits (almost) exactly, as a
// constant block fits every table value, rounding is the only error left, so every
// candidate is tried at its rounding and at the two adjacent f16 values.
HalfScale settle_half(const float* x, const float* w, std::span<const iq::ScaleCandidate> cands, uint8_t* q) {
  HalfScale best{0, 0.0f};
  std::fill(q, q + kQK, 0);
  if (cands.empty()) return best;
  double e0 = 0.0;  // sum w x^2: the error of coding nothing
  for (int i = 0; i < kQK; ++i) e0 += static_cast<double>(w[i]) * x[i] * x[i];
  double best_e = e0;
  const bool exact_fit = cands[0].error <= -e0 * (1.0 - kIq4ExactFit);
  uint8_t tmp[kQK];
  for (size_t c = 0; c < (exact_fit ? cands.size() : 1); ++c) {
    const HalfScale h = iq::round_half(cands[c].scale);
    for (int delta : {0, -1, 1}) {
      if (delta != 0 && !exact_fit) break;  // the adjacent f16 values only matter for exact fits
      const uint16_t bits = static_cast<uint16_t>(h.bits + delta);
      if ((bits & 0x7fff) == 0 || (bits & 0x7c00) == 0x7c00 || ((bits ^ h.bits) & 0x8000)) continue;
      const float v = f16_to_f32(bits);
      assign(x, w, kQK, v, tmp);
      // The residual itself, not e0 - 2 v P + v^2 Q: near an exact fit that difference
      // cancels to noise.
      double e = 0.0;
      for (int i = 0; i < kQK; ++i) {
        const double r = x[i] - static_cast<double>(v * static_cast<float>(kValuesIq4nl[tmp[i]]));
        e += w[i] * r * r;
      }
      if (e < best_e) {
        best_e = e;
        best = {bits, v};
        std::copy(tmp, tmp + kQK, q);
      }
    }
  }
  return best;
}

void pack_nibbles(const uint8_t* q, uint8_t* qs) {
  for (int j = 0; j < kQK / 2; ++j) qs[j] = static_cast<uint8_t>(q[j] | (q[j + kQK / 2] << 4));
}

}  // namespace

// ---- IQ4_NL -------------------------------------------------------------------------------

void quantize_iq4_nl_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                         std::span<const float> imatrix) {
  iq::encode_rows<BlockIQ4_NL, kQK>(src, dst, n_per_row, imatrix, [](const float* x, const float* qw, BlockIQ4_NL& b) {
    float w[kQK];
    iq::iq_weights({x, static_cast<size_t>(kQK)}, qw, {w, static_cast<size_t>(kQK)}, kScalarWeights);
    uint8_t q[kQK];
    iq::ScaleCandidate cands[kIq4Candidates];
    const int n = iq::best_scales({x, static_cast<size_t>(kQK)}, {w, static_cast<size_t>(kQK)}, kValuesF, cands, kIq4WindowMax, kIq4WindowMin);
    const HalfScale d = settle_half(x, w, {cands, static_cast<size_t>(n)}, q);
    b.d = d.bits;
    pack_nibbles(q, b.qs);
  });
}

void dequantize_iq4_nl(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockIQ4_NL, kQK>(src, dst, [](const BlockIQ4_NL& b, float* y) {
    const float d = f16_to_f32(b.d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * static_cast<float>(kValuesIq4nl[b.qs[j] & 0xf]);
      y[j + kQK / 2] = d * static_cast<float>(kValuesIq4nl[b.qs[j] >> 4]);
    }
  });
}

// ---- IQ4_XS -------------------------------------------------------------------------------

void quantize_iq4_xs_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                         std::span<const float> imatrix) {
  iq::encode_rows<BlockIQ4_XS, kQKK>(src, dst, n_per_row, imatrix, [](const float* x, const float* qw, BlockIQ4_XS& b) {
    constexpr int kSub = kQKK / kQK;
    float w[kQKK];
    iq::iq_weights({x, static_cast<size_t>(kQKK)}, qw, {w, static_cast<size_t>(kQKK)}, kScalarWeights);
    float sb[kSub];
    float smax = 0.0f;
    for (int ib = 0; ib < kSub; ++ib) {
      iq::ScaleCandidate c[1];
      const int n = iq::best_scales({x + kQK * ib, static_cast<size_t>(kQK)}, {w + kQK * ib, static_cast<size_t>(kQK)},
                                    kValuesF, c, kIq4WindowMax, kIq4WindowMin);
      sb[ib] = n ? c[0].scale : 0.0f;
      smax = std::max(smax, std::fabs(sb[ib]));
    }
    uint8_t q[kQKK] = {};
    int ls[kSub];
    std::fill(ls, ls + kSub, 32);  // code 32: sub-block scale 0
    HalfScale d{0, 0.0f};
    if (smax > 0.0f) {
      // Super-block scale: each candidate d is scored with every sub-block's best integer
      // multiplier (of the two around its free scale), codes exact.
      float best_total = std::numeric_limits<float>::max();
      uint8_t tq[kQK];
      for (float f : kIq4xsSuperFactors) {
        const HalfScale dc = iq::round_half(smax / 31.0f * f);
        if (!(dc.value > 0.0f) || !std::isfinite(dc.value)) continue;
        float total = 0.0f;
        int cls[kSub];
        for (int ib = 0; ib < kSub; ++ib) {
          // The two integer multipliers either side of the free scale.
          const int k0 = static_cast<int>(std::floor(sb[ib] / dc.value));
          float eb = 0.0f;  // multiplier 0: the sub-block decodes to zeros
          cls[ib] = 0;
          for (int k = std::max(-32, k0); k <= std::min(31, k0 + 1); ++k) {
            if (k == 0) continue;
            const float s = dc.value * static_cast<float>(k);
            const float e = err(s, assign(x + kQK * ib, w + kQK * ib, kQK, s, tq));
            if (e < eb) {
              eb = e;
              cls[ib] = k;
            }
          }
          total += eb;
        }
        if (total < best_total) {
          best_total = total;
          d = dc;
          for (int ib = 0; ib < kSub; ++ib) ls[ib] = cls[ib] + 32;
        }
      }
      for (int ib = 0; ib < kSub; ++ib)
        if (ls[ib] != 32) assign(x + kQK * ib, w + kQK * ib, kQK, d.value * static_cast<float>(ls[ib] - 32), q + kQK * ib);
    }
    b.d = d.bits;
    b.scales_h = 0;
    std::memset(b.scales_l, 0, sizeof b.scales_l);
    for (int ib = 0; ib < kSub; ++ib) {
      b.scales_l[ib / 2] |= static_cast<uint8_t>((ls[ib] & 0xf) << (4 * (ib % 2)));
      b.scales_h |= static_cast<uint16_t>((ls[ib] >> 4) << (2 * ib));
      pack_nibbles(q + kQK * ib, b.qs + (kQK / 2) * ib);
    }
  });
}

void dequantize_iq4_xs(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockIQ4_XS, kQKK>(src, dst, [](const BlockIQ4_XS& b, float* y) {
    const float d = f16_to_f32(b.d);
    const uint8_t* qs = b.qs;
    for (int ib = 0; ib < kQKK / kQK; ++ib) {
      const int ls = ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) | (((b.scales_h >> (2 * ib)) & 3) << 4);
      const float dl = d * static_cast<float>(ls - 32);
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * static_cast<float>(kValuesIq4nl[qs[j] & 0xf]);
        y[j + 16] = dl * static_cast<float>(kValuesIq4nl[qs[j] >> 4]);
      }
      y += kQK;
      qs += kQK / 2;
    }
  });
}

}  // namespace smolq::kernels
