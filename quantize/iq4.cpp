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
#include <array>
#include <iterator>
#include <cmath>
#include <cstring>
#include <limits>

#include "formats/cpu_features.h"
#include "formats/half.h"
#include "quantize/block_levels.h"
#include "quantize/blocks.h"
#include "quantize/iq_lattice.h"
#include "quantize/iq_rows.h"
#include "quantize/iq_scale_sweep.h"
#include "quantize/iq_tables.h"
#include "quantize/quant_search.h"
#include "quantize/quants_iq.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

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
  int q = 0;  // midpoints below t, counted without branches (a search mispredicts)
  for (int k = 0; k < 15; ++k) q += t > kMid[k];
  return q;
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
// sum w x^2 over a 32-weight block: the error of coding nothing.
double block_energy(const float* x, const float* w) {
  double e0 = 0.0;
  for (int i = 0; i < kQK; ++i) e0 += static_cast<double>(w[i]) * x[i] * x[i];
  return e0;
}
// Whether the best float scale leaves (almost) nothing but f16 rounding as error.
bool is_exact_fit(const float* x, const float* w, const iq::ScaleCandidate& best) {
  return best.error <= -block_energy(x, w) * (1.0 - kIq4ExactFit);
}

HalfScale settle_half(const float* x, const float* w, std::span<const iq::ScaleCandidate> cands, uint8_t* q) {
  HalfScale best{0, 0.0f};
  std::fill(q, q + kQK, 0);
  if (cands.empty()) return best;
  const double e0 = block_energy(x, w);
  double best_e = e0;
  const bool exact_fit = is_exact_fit(x, w, cands[0]);
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

void pack_nibbles(const uint8_t* q, uint8_t* qs) { levels::put_nibbles32(qs, q); }

}  // namespace

// ---- IQ4_NL -------------------------------------------------------------------------------

void quantize_iq4_nl_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                         std::span<const float> imatrix) {
  const std::vector<float> qw_raised = iq::importance_powers(imatrix, kScalarWeights);
  iq::encode_rows<BlockIQ4_NL, kQK>(src, dst, n_per_row, qw_raised, [](const float* x, const float* qw, BlockIQ4_NL& b) {
    float w[kQK];
    iq::iq_weights_raised({x, static_cast<size_t>(kQK)}, qw, {w, static_cast<size_t>(kQK)}, kScalarWeights);
    uint8_t q[kQK];
    iq::ScaleCandidate cands[kIq4Candidates];
    const std::span<const float> xs{x, static_cast<size_t>(kQK)}, ws{w, static_cast<size_t>(kQK)};
    // settle_half needs the runners-up only for an exact fit (rare): ask for the best scale
    // first (the sweep's bookkeeping is cheapest then) and for the whole list when needed.
    // The best candidate does not depend on the list length.
    int n = iq::best_scales(xs, ws, kValuesF, {cands, 1}, kIq4WindowMax, kIq4WindowMin);
    if (n > 0 && is_exact_fit(x, w, cands[0])) n = iq::best_scales(xs, ws, kValuesF, cands, kIq4WindowMax, kIq4WindowMin);
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

namespace {

// Error terms err(s, assign(s)) of nc non-zero scales s[c] for one 32-weight sub-block: the
// candidate scoring of the IQ4_XS super-block step. The reference scores one scale after the
// other with assign(); the AVX2 kernel scores eight at once, one per lane, repeating
// assign()'s arithmetic per lane (same products in the same order, no FMA), so both give the
// same floats.
struct ScalarIq4Score {
  static void run(const float* x, const float* w, const float* s, int nc, float* e) {
    uint8_t tq[kQK];
    for (int c = 0; c < nc; ++c) e[c] = err(s[c], assign(x, w, kQK, s[c], tq));
  }
};

#if defined(__x86_64__) || defined(__i386__)
struct Avx2Iq4Score {
  [[gnu::target("avx2")]] static void run(const float* x, const float* w, const float* s, int nc, float* e) {
    static constexpr auto kMid = [] {
      std::array<float, 15> m{};
      for (int i = 0; i < 15; ++i) m[i] = 0.5f * (kValuesIq4nl[i] + kValuesIq4nl[i + 1]);
      return m;
    }();
    alignas(32) float sv[8], P[8], Q[8];
    for (int k = 0; k < 8; ++k) sv[k] = s[std::min(k, nc - 1)];  // spare lanes repeat the last
    const __m256 vs = _mm256_load_ps(sv);
    const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), vs);
    // The table split in halves for an in-register lookup by code.
    const __m256 tab_lo = _mm256_loadu_ps(kValuesF.data()), tab_hi = _mm256_loadu_ps(kValuesF.data() + 8);
    const __m256i seven = _mm256_set1_epi32(7);
    __m256 p = _mm256_setzero_ps(), q = _mm256_setzero_ps();
    for (int i = 0; i < kQK; ++i) {
      const __m256 t = _mm256_mul_ps(_mm256_set1_ps(x[i]), inv);
      __m256i code = _mm256_setzero_si256();  // nearest_iq4(): midpoints below t
      for (int k = 0; k < 15; ++k)
        code = _mm256_sub_epi32(code, _mm256_castps_si256(_mm256_cmp_ps(t, _mm256_set1_ps(kMid[k]), _CMP_GT_OQ)));
      const __m256 hi = _mm256_castsi256_ps(_mm256_cmpgt_epi32(code, seven));
      const __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(tab_lo, code), _mm256_permutevar8x32_ps(tab_hi, code), hi);
      p = _mm256_add_ps(p, _mm256_mul_ps(_mm256_set1_ps(w[i] * x[i]), v));
      q = _mm256_add_ps(q, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(w[i]), v), v));
    }
    _mm256_store_ps(P, p);
    _mm256_store_ps(Q, q);
    for (int c = 0; c < nc; ++c) e[c] = err(s[c], Fit{P[c], Q[c]});
  }
};
#else
using Avx2Iq4Score = ScalarIq4Score;  // never selected off x86
#endif

// IQ4_XS super-block (qw: importance raised by importance_powers, or null): free per-sub-block
// scales from the exact sweep, then the f16 super scale d among a few candidates, each scored
// with every sub-block's best integer multiplier (of the two either side of its free scale),
// codes exact. Score is ScalarIq4Score or Avx2Iq4Score; both make the same choices.
template <class Score>
void encode_iq4_xs_block(const float* x, const float* qw, BlockIQ4_XS& b) {
  constexpr int kSub = kQKK / kQK;
  constexpr int kFactors = static_cast<int>(std::size(kIq4xsSuperFactors));
  float w[kQKK];
  iq::iq_weights_raised({x, static_cast<size_t>(kQKK)}, qw, {w, static_cast<size_t>(kQKK)}, kScalarWeights);
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
    HalfScale dc[kFactors];
    int nf = 0;
    for (float f : kIq4xsSuperFactors) {
      const HalfScale h = iq::round_half(smax / 31.0f * f);
      if (h.value > 0.0f && std::isfinite(h.value)) dc[nf++] = h;
    }
    // eb[f][ib], cls[f][ib]: the sub-block's least error under dc[f] (0 = all-zero codes,
    // multiplier 0) and its multiplier. Per sub-block, the (up to two) multipliers of every
    // candidate d are scored in one batch.
    float eb[kFactors][kSub];
    int cls[kFactors][kSub];
    for (int ib = 0; ib < kSub; ++ib) {
      float s[2 * kFactors], e[2 * kFactors];
      int kk[2 * kFactors], ff[2 * kFactors], nc = 0;
      for (int f = 0; f < nf; ++f) {
        const int k0 = static_cast<int>(std::floor(sb[ib] / dc[f].value));
        for (int k = std::max(-32, k0); k <= std::min(31, k0 + 1); ++k) {
          if (k == 0) continue;
          s[nc] = dc[f].value * static_cast<float>(k);
          kk[nc] = k;
          ff[nc++] = f;
        }
        eb[f][ib] = 0.0f;
        cls[f][ib] = 0;
      }
      if (nc > 0) Score::run(x + kQK * ib, w + kQK * ib, s, nc, e);
      for (int c = 0; c < nc; ++c)  // in multiplier order per d, first strict minimum wins
        if (e[c] < eb[ff[c]][ib]) {
          eb[ff[c]][ib] = e[c];
          cls[ff[c]][ib] = kk[c];
        }
    }
    float best_total = std::numeric_limits<float>::max();
    for (int f = 0; f < nf; ++f) {
      float total = 0.0f;
      for (int ib = 0; ib < kSub; ++ib) total += eb[f][ib];
      if (total < best_total) {
        best_total = total;
        d = dc[f];
        for (int ib = 0; ib < kSub; ++ib) ls[ib] = cls[f][ib] + 32;
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
}

}  // namespace

void quantize_iq4_xs_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                         std::span<const float> imatrix) {
  iq::encode_rows<BlockIQ4_XS, kQKK>(src, dst, n_per_row, iq::importance_powers(imatrix, kScalarWeights),
                                     encode_iq4_xs_block<ScalarIq4Score>);
}

void quantize_iq4_xs(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                     std::span<const float> imatrix) {
  if (!cpu::has_avx2()) return quantize_iq4_xs_ref(src, dst, n_per_row, imatrix);
  iq::encode_rows<BlockIQ4_XS, kQKK>(src, dst, n_per_row, iq::importance_powers(imatrix, kScalarWeights),
                                     encode_iq4_xs_block<Avx2Iq4Score>);
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
