// The 32-element legacy formats: Q4_0, Q5_0 (symmetric, w = d*(q - 8) / d*(q - 16)) and
// Q4_1, Q5_1 (affine, w = d*q + m). Block layouts are in quantize/blocks.h:
//   - nibbles: element j (j < 16) in the low nibble of qs[j], element j+16 in the high nibble;
//   - Q5_x fifth bit: bit j of the little-endian uint32 qh is the high bit of element j.
//
// Encoding (ours, not ggml's): per block, a scale search (quant_search.h) followed by a
// choice among stored f16 scales with every level re-rounded to the scale the decoder will
// really use. With an importance matrix: a weighted search and the f16 neighbours of the
// scale(s); ggml's imatrix path does not re-round after the f16 conversion. Without one
// (ggml: the bare "largest value maps to -8", or min/max, rule): a short search
// (kPlainSearches below: its measured error against ggml's and what it costs).
#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "formats/cpu_features.h"
#include "formats/half.h"
#include "quantize/block_levels.h"
#include "quantize/blocks.h"
#include "quantize/legacy_batch.h"
#include "quantize/quant_search.h"
#include "quantize/quant_search_kernels.h"  // lane_min_max: the scalar min/max the batch uses too
#include "quantize/quants_legacy_k.h"

namespace smolq::kernels {
namespace {

using qsearch::AffineSearch;
using qsearch::OffsetSign;
using qsearch::SymmetricSearch;
using legacy::f16_step;
using legacy::offset_step;
using legacy::F16Candidates;
using legacy::minmax_rule_f16;

// Candidate sweeps, one set per weighting.
// With an importance matrix (ggml's imatrix path is itself a search, so the full sweep is
// needed to beat it): symmetric, 7 scales per end of the level range (the largest value
// mapped to the end level +-0.3, +-0.6, +-0.9 levels), then 2 coordinate-descent passes;
// Q5_0's 32 levels make its error more sensitive to the exact scale (the golden sparse rows
// showed it): 19 candidates per end at 0.1-level spacing. Affine: the min/max rule plus 15
// inverse scales spanning nmax-1 .. nmax+1 levels over the range, then up to 4
// requantize/refit rounds. (Wider or denser sweeps measured no better on the golden data: the
// f16 neighbour search and refinement below do the fine work.)
// Without one (ggml rounds once with the max rule, or min/max, unweighted) a short search:
// symmetric: the weighted error, 5 candidates per end (the largest magnitude mapped to the
// end level, +-1 and +-2 steps), the least-squares scale of the best one's levels and its f16
// rounding (no descent, no f16 neighbours); affine: the squared error itself (every weight
// 1), the min/max rule and one more inverse scale, one requantize/refit round, then the f16
// rounding of the fit or, when better, the min/max rule's own f16 point (what ggml's plain
// path stores, so no block's error exceeds ggml's; on weights that sit on a Q4_1 grid it is
// exact). Chosen on SmolLM2-135M (Q4_0, KL-divergence from the F16 model over 6 x 256
// WikiText-2 tokens, smolq perplexity --base): the earlier full sweep 0.297, this one 0.302,
// llama-quantize 0.307; the unweighted 2-candidate search had the lowest rmse (0.93 of
// ggml's) but 0.331, and 6 weighted candidates 0.312, so rmse alone did not pick it. Speed
// (bench_kernels, one thread, plain): Q4_0 ~400 Mw/s (was ~210), Q4_1 ~620 (was ~155).
// With an imatrix the short sweep would lose to ggml's own imatrix search on weighted error
// (1.003 of it for Q4_0), so it stays full.
struct LegacySearches {
  SymmetricSearch sym4, sym5;  // Q4_0 (levels -8..7), Q5_0 (-16..15)
  AffineSearch affine;         // Q4_1, Q5_1
  bool weighted_symmetric, weighted_affine;  // element weights sqrt(sigma^2 + x^2) (* importance); else all 1
  F16Candidates sym_f16, affine_f16;  // stored scales tried after the fit (legacy_batch.h)
  const SymmetricSearch& symmetric(int hi) const { return hi > 7 ? sym5 : sym4; }
};
constexpr LegacySearches kImportanceSearches{
    .sym4 = {.ntry = 3, .step = 0.3f, .both_ends = true, .refine_passes = 2},
    .sym5 = {.ntry = 9, .step = 0.1f, .both_ends = true, .refine_passes = 2},
    .affine = {.rmin = -1.0f, .rdelta = 2.0f / 14, .nstep = 14, .alternations = 4},
    .weighted_symmetric = true,
    .weighted_affine = true,
    .sym_f16 = F16Candidates::kNeighbours,
    .affine_f16 = F16Candidates::kNeighbours};
constexpr LegacySearches kPlainSearches{
    .sym4 = {.ntry = 2, .step = 0.3f, .both_ends = true, .refine_passes = 0},
    .sym5 = {.ntry = 2, .step = 0.2f, .both_ends = true, .refine_passes = 0},
    .affine = {.rmin = -1.0f, .rdelta = 2.0f, .nstep = 0, .alternations = 1},
    .weighted_symmetric = true,
    .weighted_affine = false,
    .sym_f16 = F16Candidates::kRounded,
    .affine_f16 = F16Candidates::kMinMaxRule};
const LegacySearches& searches_for(std::span<const float> imatrix) {
  return imatrix.empty() ? kPlainSearches : kImportanceSearches;
}

// sigma^2 of the weighting: mean square of the whole row (ggml's choice for 32-element types).
// Summed in eight interleaved partial sums (qsearch::sum_squares' order, per 256 values) so
// the loop vectorises: a single running sum was a chain of dependent adds, 4 cycles a weight.
float row_sigma2(const float* x, int64_t n) {
  float s = 0;
  int64_t i = 0;
  for (; i + 256 <= n; i += 256) s += qsearch::sum_squares(x + i, 256);
  if (i < n) s += qsearch::sum_squares(x + i, static_cast<int>(n - i));  // n - i: a multiple of 32
  return s / static_cast<float>(n);
}

// The group fits of quant_search.h come in a scalar and an AVX2 flavour with identical
// results; the encoders take the pair to use.
// The AVX2 set also encodes eight whole blocks at once (legacy_batch.h), with the same bytes.
struct Fits {
  float (*symmetric)(const float*, const float*, int, int, int, int8_t*, const SymmetricSearch&);
  qsearch::AffineFit (*affine)(const float*, const float*, int, int, uint8_t*, OffsetSign, const AffineSearch&);
  void (*symmetric8)(const float*, const float*, const float*, int, int, const SymmetricSearch&, F16Candidates, uint16_t*,
                     int8_t*);
  bool (*affine8)(const float*, const float*, const float*, int, const AffineSearch&, F16Candidates, uint16_t*, uint16_t*,
                  uint8_t*);
};
constexpr Fits kScalarFits{qsearch::fit_symmetric, qsearch::fit_affine, nullptr, nullptr};
constexpr Fits kAvx2Fits{qsearch::fit_symmetric_avx2, qsearch::fit_affine_avx2, legacy::encode_symmetric8_avx2,
                         legacy::encode_affine8_avx2};
const Fits& fast_fits() { return cpu::has_avx2() ? kAvx2Fits : kScalarFits; }

// One symmetric block: returns the f16 scale and levels L in [lo, hi]. The search result d is
// rounded to f16, every level is re-rounded to that stored scale, and the two neighbouring
// f16 values are tried as well (the error as a function of d is jagged, so the nearest f16
// value is not always the best one).
uint16_t encode_symmetric(const Fits& fits, const LegacySearches& ls, const float* x, const float* w, int lo, int hi, int8_t* L) {
  const float d = fits.symmetric(x, w, kQK, lo, hi, L, ls.symmetric(hi));
  uint16_t best = qsearch::scale_to_f16(d);
  if (d == 0.0f) {
    std::memset(L, 0, kQK);
    return 0;
  }
  int8_t Lt[kQK];
  float best_err = qsearch::requantize_symmetric(x, w, kQK, lo, hi, f16_to_f32(best), L);
  if (ls.sym_f16 != F16Candidates::kNeighbours) return best;
  // The f16 neighbours: the rounding of d need not be the best stored scale once the levels
  // are re-rounded to it.
  const uint16_t center = best;
  for (int dir : {-1, 1}) {
    const uint16_t h = f16_step(center, dir);
    if (h == 0) continue;
    const float err = qsearch::requantize_symmetric(x, w, kQK, lo, hi, f16_to_f32(h), Lt);
    if (err < best_err) {
      best_err = err;
      best = h;
      std::memcpy(L, Lt, kQK);
    }
  }
  return best;
}

// One affine block: returns the f16 scale and offset (value = d*l + m) and levels in [0, nmax].
// As above, with the 3 x 3 grid of f16 neighbours of (d, m). The offset is free in sign
// (Q4_1/Q5_1 store it as a signed f16), unlike ggml's imatrix path which clamps it to <= 0 and
// so loses accuracy on rows with only positive values (the golden ramp and constant rows).
void encode_affine(const Fits& fits, const LegacySearches& ls, const float* x, const float* w, int nmax, uint8_t* L, uint16_t& d16,
                   uint16_t& m16) {
  const qsearch::AffineFit fit = fits.affine(x, w, kQK, nmax, L, OffsetSign::kFree, ls.affine);
  d16 = fit.d == 0.0f ? 0 : qsearch::scale_to_f16(fit.d);
  m16 = f32_to_f16(fit.m);
  uint8_t Lt[kQK];
  float best_err = qsearch::requantize_affine(x, w, kQK, nmax, f16_to_f32(d16), -f16_to_f32(m16), L);
  if (d16 == 0) return;  // constant block: the offset alone is the best we can do
  if (ls.affine_f16 == F16Candidates::kMinMaxRule) {
    float lo, hi;
    qsearch::detail::lane_min_max(x, kQK, lo, hi);
    uint16_t hd, hm;
    minmax_rule_f16(lo, hi, static_cast<float>(nmax), hd, hm);
    if (hd != 0 && qsearch::requantize_affine(x, w, kQK, nmax, f16_to_f32(hd), -f16_to_f32(hm), Lt) < best_err) {
      d16 = hd;
      m16 = hm;
      std::memcpy(L, Lt, kQK);
    }
  }
  if (ls.affine_f16 != F16Candidates::kNeighbours) return;
  // 3 x 3 f16 neighbourhood of (d, m), levels re-rounded each time.
  const uint16_t dc = d16, mc = m16;
  for (int dd = -1; dd <= 1; ++dd) {
    const uint16_t hd = dd == 0 ? dc : f16_step(dc, dd);
    if (hd == 0) continue;
    for (int dm = -1; dm <= 1; ++dm) {
      if (dd == 0 && dm == 0) continue;
      const uint16_t hm = offset_step(mc, dm);
      if (dm != 0 && hm == 0) continue;
      const float err = qsearch::requantize_affine(x, w, kQK, nmax, f16_to_f32(hd), -f16_to_f32(hm), Lt);
      if (err < best_err) {
        best_err = err;
        d16 = hd;
        m16 = hm;
        std::memcpy(L, Lt, kQK);
      }
    }
  }
}

// Row driver shared by the four types: the weighting's sigma^2 per row and the weights of
// every block first, then the blocks in groups of eight (across row ends) through
// `encode8(x, w, blocks)` where it can (it returns false otherwise), the rest one by one
// through `encode(x, w, block)`. A block's bytes depend only on its values and weights.
template <class Block, class Encode, class Encode8>
void quantize_rows_legacy(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                          std::span<const float> imatrix, bool weighted, Encode encode, Encode8 encode8) {
  assert(n_per_row % kQK == 0 && src.size() % static_cast<size_t>(n_per_row) == 0);
  assert(imatrix.empty() || imatrix.size() == static_cast<size_t>(n_per_row));
  const int64_t nrows = static_cast<int64_t>(src.size()) / n_per_row;
  const int64_t nb = n_per_row / kQK;
  assert(dst.size() == static_cast<size_t>(nrows * nb) * sizeof(Block));
  // Weights: with an imatrix all of them up front ([nrows * nb blocks][kQK]); without one the
  // batch makes them from each block's row sigma^2 (encode8 gets w null and s2), and without
  // weighting there are none (both null; the one-block encoder gets ones).
  const bool buffered = weighted && !imatrix.empty();
  std::vector<float> weights(buffered ? src.size() : 0), sigma2(weighted && !buffered ? nrows : 0);
  static constexpr std::array<float, kQK> kOnes = [] {
    std::array<float, kQK> a{};
    a.fill(1.0f);
    return a;
  }();
  for (int64_t r = 0; weighted && r < nrows; ++r) {
    const float* row = src.data() + r * n_per_row;
    const float s2 = row_sigma2(row, n_per_row);
    if (!buffered) {
      sigma2[r] = s2;
      continue;
    }
    for (int64_t b = 0; b < nb; ++b)
      qsearch::element_weights(row + b * kQK, imatrix.data() + b * kQK, s2, kQK, weights.data() + (r * nb + b) * kQK);
  }
  const int64_t total = nrows * nb;
  Block blk[8];
  for (int64_t b = 0; b < total;) {
    const float* x = src.data() + b * kQK;
    const float* w = buffered ? weights.data() + b * kQK : nullptr;
    float s2[8];
    const bool full = b + 8 <= total;
    if (!sigma2.empty() && full)
      for (int j = 0; j < 8; ++j) s2[j] = sigma2[static_cast<size_t>((b + j) / nb)];
    const int n = full && encode8(x, w, sigma2.empty() ? nullptr : s2, blk) ? 8 : 1;
    if (n == 1) {
      float wb[kQK];
      if (!w && !sigma2.empty()) qsearch::element_weights(x, nullptr, sigma2[static_cast<size_t>(b / nb)], kQK, wb);
      encode(x, w ? w : !sigma2.empty() ? wb : kOnes.data(), blk[0]);
    }
    std::memcpy(dst.data() + b * sizeof(Block), blk, n * sizeof(Block));
    b += n;
  }
}

// Pack 32 values of up to 5 bits: low nibbles into qs, fifth bits into the 32-bit mask `qh`
// (layouts in quantize/block_levels.h).
void pack_nibbles(const uint8_t* q, uint8_t* qs, uint32_t* qh) {
#if defined(__x86_64__)
  // SSE2 (part of x86-64): low nibbles by a masked shift-or, fifth bits by a byte movemask.
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16));
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i packed = _mm_or_si128(_mm_and_si128(lo, m4), _mm_slli_epi16(_mm_and_si128(hi, m4), 4));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), packed);
  if (qh) {
    // bit 4 of each level moved to bit 7, where movemask reads it
    const uint32_t l = static_cast<uint32_t>(_mm_movemask_epi8(_mm_slli_epi16(lo, 3)));
    const uint32_t h = static_cast<uint32_t>(_mm_movemask_epi8(_mm_slli_epi16(hi, 3)));
    *qh = l | (h << 16);
  }
  return;
#endif
  levels::put_nibbles32(qs, q);
  if (qh) levels::put_qh32(reinterpret_cast<uint8_t*>(qh), q);
}

// Eight blocks through the batched encoders of the fast fit set (false without one, or when
// the affine batch hands the blocks back), packed with `pack`.
template <class Block, class Pack>
bool encode_symmetric8(const Fits& fits, const LegacySearches& ls, const float* x, const float* w, const float* s2, int lo, int hi,
                       Block* b, Pack pack) {
  if (!fits.symmetric8) return false;
  uint16_t d[8];
  int8_t L[8 * kQK];
  fits.symmetric8(x, w, s2, lo, hi, ls.symmetric(hi), ls.sym_f16, d, L);
  for (int j = 0; j < 8; ++j) pack(d[j], L + j * kQK, b[j]);
  return true;
}
template <class Block, class Pack>
bool encode_affine8(const Fits& fits, const LegacySearches& ls, const float* x, const float* w, const float* s2, int nmax,
                    Block* b, Pack pack) {
  uint16_t d[8], m[8];
  uint8_t L[8 * kQK];
  if (!fits.affine8 || !fits.affine8(x, w, s2, nmax, ls.affine, ls.affine_f16, d, m, L)) return false;
  for (int j = 0; j < 8; ++j) pack(d[j], m[j], L + j * kQK, b[j]);
  return true;
}

// Blocks are read with memcpy: a row of blocks inside a mapped file need not be aligned.
template <class Block>
void load_block(std::span<const std::byte> src, size_t b, Block& blk) {
  std::memcpy(&blk, src.data() + b * sizeof(Block), sizeof blk);
}

}  // namespace

// ---- Q4_0: w = d * (q - 8) -------------------------------------------------------------------

namespace {
// Levels -8..7 are stored as q = l + 8 in the nibbles.
void pack_q4_0(uint16_t d, const int8_t* L, BlockQ4_0& b) {
  uint8_t q[kQK];
  b.d = d;
  for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(L[j] + 8);
  pack_nibbles(q, b.qs, nullptr);
}
void encode_q4_0(const Fits& fits, const LegacySearches& ls, const float* x, const float* w, BlockQ4_0& b) {
  int8_t L[kQK];
  pack_q4_0(encode_symmetric(fits, ls, x, w, -8, 7, L), L, b);
}
void quantize_q4_0_with(const Fits& fits, std::span<const float> src, std::span<std::byte> dst,
                       int64_t n_per_row, std::span<const float> imatrix) {
  const LegacySearches& ls = searches_for(imatrix);
  quantize_rows_legacy<BlockQ4_0>(
      src, dst, n_per_row, imatrix, ls.weighted_symmetric,
      [&](const float* x, const float* w, BlockQ4_0& b) { encode_q4_0(fits, ls, x, w, b); },
      [&](const float* x, const float* w, const float* s2, BlockQ4_0* b) { return encode_symmetric8(fits, ls, x, w, s2, -8, 7, b, pack_q4_0); });
}
}  // namespace

void quantize_q4_0_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                       std::span<const float> imatrix) {
  quantize_q4_0_with(kScalarFits, src, dst, n_per_row, imatrix);
}
void quantize_q4_0(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix) {
  quantize_q4_0_with(fast_fits(), src, dst, n_per_row, imatrix);
}

// ggml's order: the integer q - 8 converted to float, times d.
void dequantize_q4_0(std::span<const std::byte> src, std::span<float> dst) {
  const size_t nb = dst.size() / kQK;
  assert(dst.size() % kQK == 0 && src.size() >= nb * sizeof(BlockQ4_0));
  for (size_t b = 0; b < nb; ++b) {
    BlockQ4_0 blk;
    load_block(src, b, blk);
    const float d = f16_to_f32(blk.d);
    float* y = dst.data() + b * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>((blk.qs[j] & 0x0f) - 8) * d;
      y[j + 16] = static_cast<float>((blk.qs[j] >> 4) - 8) * d;
    }
  }
}

// ---- Q4_1: w = d * q + m -----------------------------------------------------------------------

namespace {
// Levels 0..15 are stored as they are.
void pack_q4_1(uint16_t d, uint16_t m, const uint8_t* L, BlockQ4_1& b) {
  b.d = d;
  b.m = m;
  pack_nibbles(L, b.qs, nullptr);
}
void encode_q4_1(const Fits& fits, const LegacySearches& ls, const float* x, const float* w, BlockQ4_1& b) {
  uint8_t L[kQK];
  uint16_t d, m;
  encode_affine(fits, ls, x, w, 15, L, d, m);
  pack_q4_1(d, m, L, b);
}
void quantize_q4_1_with(const Fits& fits, std::span<const float> src, std::span<std::byte> dst,
                       int64_t n_per_row, std::span<const float> imatrix) {
  const LegacySearches& ls = searches_for(imatrix);
  quantize_rows_legacy<BlockQ4_1>(
      src, dst, n_per_row, imatrix, ls.weighted_affine,
      [&](const float* x, const float* w, BlockQ4_1& b) { encode_q4_1(fits, ls, x, w, b); },
      [&](const float* x, const float* w, const float* s2, BlockQ4_1* b) { return encode_affine8(fits, ls, x, w, s2, 15, b, pack_q4_1); });
}
}  // namespace

void quantize_q4_1_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                       std::span<const float> imatrix) {
  quantize_q4_1_with(kScalarFits, src, dst, n_per_row, imatrix);
}
void quantize_q4_1(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix) {
  quantize_q4_1_with(fast_fits(), src, dst, n_per_row, imatrix);
}

// ggml's order: q * d + m (a multiply then an add, never fused).
void dequantize_q4_1(std::span<const std::byte> src, std::span<float> dst) {
  const size_t nb = dst.size() / kQK;
  assert(dst.size() % kQK == 0 && src.size() >= nb * sizeof(BlockQ4_1));
  for (size_t b = 0; b < nb; ++b) {
    BlockQ4_1 blk;
    load_block(src, b, blk);
    const float d = f16_to_f32(blk.d), m = f16_to_f32(blk.m);
    float* y = dst.data() + b * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>(blk.qs[j] & 0x0f) * d + m;
      y[j + 16] = static_cast<float>(blk.qs[j] >> 4) * d + m;
    }
  }
}

// ---- Q5_0: w = d * (q - 16), q = 4 low bits in qs + fifth bit in qh --------------------------

namespace {
// Levels -16..15 are stored as q = l + 16: four bits in qs, the fifth in qh.
void pack_q5_0(uint16_t d, const int8_t* L, BlockQ5_0& b) {
  uint8_t q[kQK];
  b.d = d;
  for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(L[j] + 16);
  uint32_t qh;
  pack_nibbles(q, b.qs, &qh);
  std::memcpy(b.qh, &qh, 4);
}
void encode_q5_0(const Fits& fits, const LegacySearches& ls, const float* x, const float* w, BlockQ5_0& b) {
  int8_t L[kQK];
  pack_q5_0(encode_symmetric(fits, ls, x, w, -16, 15, L), L, b);
}
void quantize_q5_0_with(const Fits& fits, std::span<const float> src, std::span<std::byte> dst,
                       int64_t n_per_row, std::span<const float> imatrix) {
  const LegacySearches& ls = searches_for(imatrix);
  quantize_rows_legacy<BlockQ5_0>(
      src, dst, n_per_row, imatrix, ls.weighted_symmetric,
      [&](const float* x, const float* w, BlockQ5_0& b) { encode_q5_0(fits, ls, x, w, b); },
      [&](const float* x, const float* w, const float* s2, BlockQ5_0* b) { return encode_symmetric8(fits, ls, x, w, s2, -16, 15, b, pack_q5_0); });
}
}  // namespace

void quantize_q5_0_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                       std::span<const float> imatrix) {
  quantize_q5_0_with(kScalarFits, src, dst, n_per_row, imatrix);
}
void quantize_q5_0(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix) {
  quantize_q5_0_with(fast_fits(), src, dst, n_per_row, imatrix);
}

// The fifth bits: element j takes bit j of qh, element j+16 bit j+16 (shifted into place).
void dequantize_q5_0(std::span<const std::byte> src, std::span<float> dst) {
  const size_t nb = dst.size() / kQK;
  assert(dst.size() % kQK == 0 && src.size() >= nb * sizeof(BlockQ5_0));
  for (size_t b = 0; b < nb; ++b) {
    BlockQ5_0 blk;
    load_block(src, b, blk);
    const float d = f16_to_f32(blk.d);
    uint32_t qh;
    std::memcpy(&qh, blk.qh, 4);
    float* y = dst.data() + b * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      const int h0 = static_cast<int>((qh >> j) << 4) & 0x10;
      const int h1 = static_cast<int>(qh >> (j + 12)) & 0x10;
      y[j] = static_cast<float>(((blk.qs[j] & 0x0f) | h0) - 16) * d;
      y[j + 16] = static_cast<float>(((blk.qs[j] >> 4) | h1) - 16) * d;
    }
  }
}

// ---- Q5_1: w = d * q + m, 5-bit q -------------------------------------------------------------

namespace {
// Levels 0..31: four bits in qs, the fifth in qh.
void pack_q5_1(uint16_t d, uint16_t m, const uint8_t* L, BlockQ5_1& b) {
  b.d = d;
  b.m = m;
  uint32_t qh;
  pack_nibbles(L, b.qs, &qh);
  std::memcpy(b.qh, &qh, 4);
}
void encode_q5_1(const Fits& fits, const LegacySearches& ls, const float* x, const float* w, BlockQ5_1& b) {
  uint8_t L[kQK];
  uint16_t d, m;
  encode_affine(fits, ls, x, w, 31, L, d, m);
  pack_q5_1(d, m, L, b);
}
void quantize_q5_1_with(const Fits& fits, std::span<const float> src, std::span<std::byte> dst,
                       int64_t n_per_row, std::span<const float> imatrix) {
  const LegacySearches& ls = searches_for(imatrix);
  quantize_rows_legacy<BlockQ5_1>(
      src, dst, n_per_row, imatrix, ls.weighted_affine,
      [&](const float* x, const float* w, BlockQ5_1& b) { encode_q5_1(fits, ls, x, w, b); },
      [&](const float* x, const float* w, const float* s2, BlockQ5_1* b) { return encode_affine8(fits, ls, x, w, s2, 31, b, pack_q5_1); });
}
}  // namespace

void quantize_q5_1_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                       std::span<const float> imatrix) {
  quantize_q5_1_with(kScalarFits, src, dst, n_per_row, imatrix);
}
void quantize_q5_1(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix) {
  quantize_q5_1_with(fast_fits(), src, dst, n_per_row, imatrix);
}

// As Q4_1 with the fifth bit of each level taken from qh (see dequantize_q5_0).
void dequantize_q5_1(std::span<const std::byte> src, std::span<float> dst) {
  const size_t nb = dst.size() / kQK;
  assert(dst.size() % kQK == 0 && src.size() >= nb * sizeof(BlockQ5_1));
  for (size_t b = 0; b < nb; ++b) {
    BlockQ5_1 blk;
    load_block(src, b, blk);
    const float d = f16_to_f32(blk.d), m = f16_to_f32(blk.m);
    uint32_t qh;
    std::memcpy(&qh, blk.qh, 4);
    float* y = dst.data() + b * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      const int h0 = static_cast<int>((qh >> j) << 4) & 0x10;
      const int h1 = static_cast<int>(qh >> (j + 12)) & 0x10;
      y[j] = static_cast<float>((blk.qs[j] & 0x0f) | h0) * d + m;
      y[j + 16] = static_cast<float>((blk.qs[j] >> 4) | h1) * d + m;
    }
  }
}

// ---- one block at a time (the error-feedback quantizer) -------------------------------------

float legacy_row_sigma2(std::span<const float> row) { return row_sigma2(row.data(), static_cast<int64_t>(row.size())); }

void quantize_legacy_block(GgmlType t, const float* x, const float* imatrix, float sigma2, std::byte* out) {
  const Fits& fits = fast_fits();
  // The plain kernel's search for the same weighting: the full one with importance data.
  const LegacySearches& ls = searches_for(imatrix ? std::span<const float>(imatrix, kQK) : std::span<const float>());
  float w[kQK];
  const bool affine = t == GgmlType::Q4_1 || t == GgmlType::Q5_1;
  if (affine ? ls.weighted_affine : ls.weighted_symmetric) qsearch::element_weights(x, imatrix, sigma2, kQK, w);
  else std::fill(w, w + kQK, 1.0f);
  auto put = [out](const auto& blk) { std::memcpy(out, &blk, sizeof blk); };
  switch (t) {
    case GgmlType::Q4_0: { BlockQ4_0 b; encode_q4_0(fits, ls, x, w, b); put(b); return; }
    case GgmlType::Q4_1: { BlockQ4_1 b; encode_q4_1(fits, ls, x, w, b); put(b); return; }
    case GgmlType::Q5_0: { BlockQ5_0 b; encode_q5_0(fits, ls, x, w, b); put(b); return; }
    case GgmlType::Q5_1: { BlockQ5_1 b; encode_q5_1(fits, ls, x, w, b); put(b); return; }
    default: assert(false && "not a 32-element legacy type");
  }
}

}  // namespace smolq::kernels
