// Scale searches shared by the legacy and K-quant formats (see quant_search.h for the model).
//
// Structure. Every search spends its time scoring candidates: "round the group under this
// (inverse) scale and accumulate the least-squares sums" or "the weighted error of the group
// under this decoded scale". Those loops live in two interchangeable kernel sets
// (quant_search_kernels.h):
//   - ScalarKernels: one candidate at a time, elements summed in order (the reference);
//   - Avx2Kernels: eight candidates at a time, one per vector lane, elements summed in the
//     same order, with the same multiplies and adds (no FMA), so every lane reproduces the
//     scalar result bit for bit.
// The search logic (which candidates, which one wins, refinement) is written once as
// templates over the kernel set, so the reference and fast quantizers make identical choices.
// With AVX2, the symmetric engine runs its per-sub-block steps on eight 16-element sub-blocks
// at once where the shape allows (quant_search_batch.cpp), again with the scalar results.
#include "quantize/quant_search.h"


#include <algorithm>
#include <cstring>
#include <type_traits>

#include "formats/half.h"
#include "quantize/quant_search_kernels.h"

namespace smolq::qsearch {

// SSE's sqrtps is the correctly rounded square root, like std::sqrt, but unlike the library
// call (errno on negative input) it processes four values at once.
void element_weights(const float* x, const float* importance, float sigma2, int n, float* w) {
#ifndef SMOLQ_QSEARCH_X86
  for (int i = 0; i < n; ++i) {
    const float base = std::sqrt(sigma2 + x[i] * x[i]);
    w[i] = importance ? importance[i] * base : base;
  }
#else
  const __m128 s2 = _mm_set1_ps(sigma2);
  for (int i = 0; i < n; i += 4) {
    const __m128 xv = _mm_loadu_ps(x + i);
    __m128 base = _mm_sqrt_ps(_mm_add_ps(s2, _mm_mul_ps(xv, xv)));
    if (importance) base = _mm_mul_ps(_mm_loadu_ps(importance + i), base);
    _mm_storeu_ps(w + i, base);
  }
#endif
}

namespace detail {

// The level targets the largest magnitude of a symmetric group is mapped to, in candidate
// order (candidate inverse scale = target / vmax). Ends of the level range first, the longer
// side first (for the ggml formats lo = -(hi+1), so mapping the extreme value to lo gains
// one level); per end, the end itself, then alternately +step, -step, +2 step, ...
int symmetric_targets(int lo, int hi, const SymmetricSearch& cfg, float* targets) {
  const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
  float ends[2];
  int nends = 0;
  if (-lo >= hi) {
    if (lo < 0) ends[nends++] = flo;
    if (cfg.both_ends && hi > 0) ends[nends++] = fhi;
  } else {
    ends[nends++] = fhi;
    if (cfg.both_ends && lo < 0) ends[nends++] = flo;
  }
  int nc = 0;
  for (int e = 0; e < nends; ++e) {
    const float dir = ends[e] < 0 ? -1.0f : 1.0f;
    for (int k = 0; k <= 2 * cfg.ntry && nc < kMaxCandidates; ++k) {
      const int off = (k + 1) / 2 * ((k & 1) ? 1 : -1);
      const float target = ends[e] + dir * cfg.step * static_cast<float>(off);
      if (target * dir > 0.0f) targets[nc++] = target;
    }
  }
  return nc;
}

}  // namespace detail

namespace {

using namespace detail;  // kernel sets and shared helpers (quant_search_kernels.h)

// ---- symmetric fit -------------------------------------------------------------------------

// Is (slx1, sl21) a better fit than (slx0, sl20)? (cross-multiplied, sl2 > 0). For fixed levels
// the least-squares scale is slx / sl2 and it removes slx^2 / sl2 from sum w*x^2, so larger is
// better. A candidate must win by more than float noise: exact ties (a constant group fits
// any level exactly) keep the earlier, simpler candidate, whose scale is more often exact in f16.
inline bool better_symmetric(float slx1, float sl21, float slx0, float sl20) {
  return slx1 * slx1 * sl20 > kTieMargin * slx0 * slx0 * sl21;
}

template <class K>
float fit_symmetric_t(const float* x, const float* w, int n, int lo, int hi, int8_t* L, const SymmetricSearch& cfg) {
  // The value of largest magnitude (the positive one on a tie), from a branch-free min/max.
  float mn, mx;
  lane_min_max(x, n, mn, mx);
  const float vmax = mx >= -mn ? mx : mn;
  if (std::fabs(vmax) < kGroupMaxEps) {
    std::memset(L, 0, n);
    return 0.0f;
  }
  const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
  const float inv_vmax = 1.0f / vmax;
  float is[kMaxCandidates];
  const int nc = symmetric_targets(lo, hi, cfg, is);
  for (int c = 0; c < nc; ++c) is[c] *= inv_vmax;
  // Score all candidates at once, then take the best in candidate order (ties keep the
  // earlier one, see better_symmetric), so both kernel sets make the same choice.
  if (nc == 0) {  // cannot happen for a non-empty level range; keeps the invariant explicit
    std::memset(L, 0, n);
    return 0.0f;
  }
  float slx_c[kMaxCandidates], sl2_c[kMaxCandidates];
  K::score_symmetric(x, w, n, flo, fhi, is, nc, slx_c, sl2_c);
  int best = -1;
  for (int c = 0; c < nc; ++c) {
    if (!(sl2_c[c] > 0.0f)) continue;
    if (best < 0 || better_symmetric(slx_c[c], sl2_c[c], slx_c[best], sl2_c[best])) best = c;
  }
  const float best_is = best < 0 ? is[0] : is[best];
  K::levels_symmetric(x, n, flo, fhi, best_is, L);
  if (best < 0) return 1.0f / best_is;  // every weight is zero: any scale is "optimal"; keep the plain one

  float slx = slx_c[best], sl2 = sl2_c[best];
  // Coordinate descent: move one value to the level nearest to it under the scale fitted to
  // all the others; keep the move only when the least-squares error drops.
  for (int pass = 0; pass < cfg.refine_passes; ++pass) {
    bool changed = false;
    for (int i = 0; i < n; ++i) {
      const float wi = w[i];
      if (!(wi > 0.0f)) continue;
      const float l = L[i];
      const float slx_o = slx - wi * x[i] * l;
      const float sl2_o = sl2 - wi * l * l;
      if (!(sl2_o > 0.0f) || slx_o == 0.0f) continue;
      const float nl = round_clamped(x[i] * sl2_o / slx_o, flo, fhi);
      if (nl == l) continue;
      const float nslx = slx_o + wi * x[i] * nl;
      const float nsl2 = sl2_o + wi * nl * nl;
      if (nsl2 > 0.0f && better_symmetric(nslx, nsl2, slx, sl2)) {
        L[i] = static_cast<int8_t>(nl);
        slx = nslx;
        sl2 = nsl2;
        changed = true;
      }
    }
    if (!changed) break;
  }
  // One "round everything to the refitted scale" step (Lloyd iteration); it can only help.
  if (cfg.refine_passes > 0 && slx != 0.0f) {
    const float nis = sl2 / slx;
    float nslx, nsl2;
    K::score_symmetric(x, w, n, flo, fhi, &nis, 1, &nslx, &nsl2);
    if (nsl2 > 0.0f && better_symmetric(nslx, nsl2, slx, sl2)) {
      K::levels_symmetric(x, n, flo, fhi, nis, L);
      slx = nslx;
      sl2 = nsl2;
    }
  }
  return slx / sl2;
}

// ---- affine fit --------------------------------------------------------------------------

// Least-squares (d, m) for fixed levels (sums sl = sum w*l, sl2 = sum w*l^2, sxl = sum w*x*l)
// under the offset-sign constraint. Returns the score d*sxl + m*swx (= sum w*x^2 minus the
// weighted squared error), or -1 when the levels cannot carry a fit (all equal, or d <= 0).
inline float affine_solve(float sl, float sl2, float sxl, float sw, float swx, OffsetSign sign, float& d, float& m) {
  const float det = sw * sl2 - sl * sl;
  if (!(det > 0.0f)) return -1.0f;
  d = (sw * sxl - swx * sl) / det;
  m = (sl2 * swx - sl * sxl) / det;
  if ((sign == OffsetSign::kNonPositive && m > 0.0f) || (sign == OffsetSign::kNonNegative && m < 0.0f)) {
    m = 0.0f;
    d = sxl / sl2;
  }
  if (!(d > 0.0f)) return -1.0f;
  return d * sxl + m * swx;
}

// The same score as a fraction num / den (den > 0) without dividing; false when the levels
// cannot carry a fit. Used to rank many candidates cheaply.
inline bool affine_score(float sl, float sl2, float sxl, float sw, float swx, OffsetSign sign, float& num,
                         float& den) {
  const float det = sw * sl2 - sl * sl;
  if (!(det > 0.0f)) return false;  // all levels equal: no scale can be fitted
  const float dnum = sw * sxl - swx * sl, mnum = sl2 * swx - sl * sxl;  // d = dnum/det, m = mnum/det
  if ((sign == OffsetSign::kNonPositive && mnum > 0.0f) || (sign == OffsetSign::kNonNegative && mnum < 0.0f)) {
    if (!(sxl > 0.0f)) return false;  // m clamped to 0: d = sxl/sl2, score sxl^2/sl2
    num = sxl * sxl;
    den = sl2;
    return true;
  }
  if (!(dnum > 0.0f)) return false;
  num = dnum * sxl + mnum * swx;
  den = det;
  return true;
}

// Affine fit of one group: offset candidates start at the group minimum (clamped by the sign
// constraint), scales sweep around "the range spans nmax levels"; the best candidate's
// least-squares (d, m) then alternates with re-rounding. Mirrors make_qkx3_quants' sweep but
// ranks candidates in closed form and refines further.
template <class K>
AffineFit fit_affine_t(const float* x, const float* w, int n, int nmax, uint8_t* L, OffsetSign sign,
                       const AffineSearch& cfg) {
  float mn, mx, wx[256];
  lane_min_max(x, n, mn, mx);
  for (int i = 0; i < n; ++i) wx[i] = w[i] * x[i];
  const float sw = lane_sum(w, n), swx = lane_sum(wx, n);
  if (sign == OffsetSign::kNonPositive && mn > 0.0f) mn = 0.0f;
  if (sign == OffsetSign::kNonNegative && mn < 0.0f) mn = 0.0f;
  if (!(mx > mn)) {  // constant group (or nothing the offset sign can reach)
    std::memset(L, 0, n);
    return {0.0f, mn};
  }
  const float fnmax = static_cast<float>(nmax);
  const float range = mx - mn;

  // Sweep: the min/max rule first, then (nmax + rmin + rdelta*k) / range, all offset by mn.
  float is[kMaxCandidates];
  int nc = 0;
  is[nc++] = fnmax / range;
  for (int k = 0; k <= cfg.nstep && nc < kMaxCandidates; ++k) {
    const float v = (fnmax + cfg.rmin + cfg.rdelta * static_cast<float>(k)) / range;
    if (v > 0.0f) is[nc++] = v;
  }
  float sl[kMaxCandidates], sl2[kMaxCandidates], sxl[kMaxCandidates];
  K::score_affine(x, w, n, fnmax, mn, is, nc, sl, sl2, sxl);
  // Pick the best candidate by comparing scores as fractions (no division per candidate),
  // then solve for (d, m) once.
  int best_c = -1;
  float best_num = 0, best_den = 1;
  for (int c = 0; c < nc; ++c) {
    float num, den;
    if (!affine_score(sl[c], sl2[c], sxl[c], sw, swx, sign, num, den)) continue;
    if (best_c < 0 || num * best_den > best_num * den) {
      best_c = c;
      best_num = num;
      best_den = den;
    }
  }
  if (best_c < 0) {  // weights all zero: keep the min/max rule
    K::levels_affine(x, n, fnmax, mn, is[0], L);
    return {range / fnmax, mn};
  }
  AffineFit best;
  float best_score = affine_solve(sl[best_c], sl2[best_c], sxl[best_c], sw, swx, sign, best.d, best.m);
  K::levels_affine(x, n, fnmax, mn, is[best_c], L);

  // Alternate "round to the fitted (d, m)" and "refit (d, m) to those levels". Each half step
  // can only lower the weighted error; stop as soon as a round does not.
  for (int a = 0; a < cfg.alternations; ++a) {
    const float nis = 1.0f / best.d;
    float s1, s2, s3;
    K::score_affine(x, w, n, fnmax, best.m, &nis, 1, &s1, &s2, &s3);
    float d = 0, m = 0;
    const float score = affine_solve(s1, s2, s3, sw, swx, sign, d, m);
    if (!(score > best_score)) break;
    K::levels_affine(x, n, fnmax, best.m, nis, L);
    best_score = score;
    best = {d, m};
  }
  return best;
}

}  // namespace

float fit_symmetric(const float* x, const float* w, int n, int lo, int hi, int8_t* L, const SymmetricSearch& cfg) {
  return fit_symmetric_t<ScalarKernels>(x, w, n, lo, hi, L, cfg);
}

AffineFit fit_affine(const float* x, const float* w, int n, int nmax, uint8_t* L, OffsetSign sign,
                     const AffineSearch& cfg) {
  return fit_affine_t<ScalarKernels>(x, w, n, nmax, L, sign, cfg);
}
float fit_symmetric_avx2(const float* x, const float* w, int n, int lo, int hi, int8_t* L,
                         const SymmetricSearch& cfg) {
  return fit_symmetric_t<Avx2Kernels>(x, w, n, lo, hi, L, cfg);
}
AffineFit fit_affine_avx2(const float* x, const float* w, int n, int nmax, uint8_t* L, OffsetSign sign,
                          const AffineSearch& cfg) {
  return fit_affine_t<Avx2Kernels>(x, w, n, nmax, L, sign, cfg);
}

float requantize_symmetric(const float* x, const float* w, int n, int lo, int hi, float s, int8_t* L) {
  const float inv = s != 0.0f ? 1.0f / s : 0.0f, flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
  float err = 0;
  for (int i = 0; i < n; ++i) {
    const float l = round_clamped(x[i] * inv, flo, fhi);
    L[i] = static_cast<int8_t>(l);
    const float diff = x[i] - s * l;
    err += w[i] * diff * diff;
  }
  return err;
}

float requantize_affine(const float* x, const float* w, int n, int nmax, float s, float mm, uint8_t* L) {
  const float inv = s != 0.0f ? 1.0f / s : 0.0f, fnmax = static_cast<float>(nmax);
  float err = 0;
  for (int i = 0; i < n; ++i) {
    const float l = round_clamped((x[i] + mm) * inv, 0.0f, fnmax);
    L[i] = static_cast<uint8_t>(l);
    const float diff = s * l - mm - x[i];
    err += w[i] * diff * diff;
  }
  return err;
}

float sum_squares(const float* x, int n) {
  float sq[256];
  for (int i = 0; i < n; ++i) sq[i] = x[i] * x[i];
  return lane_sum(sq, n);
}

uint16_t scale_to_f16(float v) {
  uint16_t h = f32_to_f16(v);
  if ((h & 0x7fffu) == 0 && v != 0.0f) h = v < 0.0f ? 0x8001u : 0x0001u;  // smallest subnormal
  if ((h & 0x7c00u) == 0x7c00u) h = static_cast<uint16_t>((h & 0x8000u) | 0x7bffu);  // largest finite
  return h;
}

// ==== K-quant super-blocks ====================================================================
// One f16 super-block scale (and min) over small integer sub-block scales (and mins).
//
// Why a second refinement stage: ggml quantizes the sub-block scales once (rounding each to
// the nearest integer multiple of d) and then re-rounds the elements. The rounding of a 4- or
// 6-bit sub-block scale moves that sub-block's whole grid, and the nearest integer is often
// not the best one once the elements are re-rounded; nor is the least-squares d of the float
// scales the best d for the integer ones. Both are cheap to search, and each step below only
// keeps a change that lowers the weighted error of the decoded values.
namespace {

// Step 3 (symmetric): for every sub-block, the integer scale in center +- radius whose
// re-rounded levels give the least error under super-block scale D. The candidates are the
// decoded scales D*a; the error kernel scores them all, the first minimum wins, and the levels
// are recomputed for the winner only (same formula, so the same levels the error kernel
// rounded to). Returns the summed error.
template <class K>
float pick_symmetric(const float* x, const float* w, const SymmetricSuperConfig& c, float D, const int* center,
                     int8_t* sc, int8_t* L) {
  const float flo = static_cast<float>(c.lo), fhi = static_cast<float>(c.hi);
  float total = 0;
  for (int j = 0; j < c.nsub; ++j) {
    const float* xj = x + j * c.sub;
    const float* wj = w + j * c.sub;
    const int a0 = clamp_int(center[j] - c.radius, c.slo, c.shi), a1 = clamp_int(center[j] + c.radius, c.slo, c.shi);
    float s[kMaxCandidates], err[kMaxCandidates];
    int nc = 0;
    for (int a = a0; a <= a1 && nc < kMaxCandidates; ++a) s[nc++] = D * static_cast<float>(a);  // decoder's d*sc
    if (nc == 0) continue;  // the clamped range always holds the center; defensive
    K::error_symmetric(xj, wj, c.sub, flo, fhi, s, nc, err);
    int best = 0;
    for (int k = 1; k < nc; ++k)
      if (err[k] < err[best]) best = k;
    sc[j] = static_cast<int8_t>(a0 + best);
    K::levels_symmetric(xj, c.sub, flo, fhi, s[best] != 0.0f ? 1.0f / s[best] : 0.0f, L + j * c.sub);
    total += err[best];
  }
  return total;
}


// Step 1 of the symmetric engine: every sub-block's own fit (scales) and levels.
template <class K>
void fit_sub_blocks(const float* x, const float* w, const SymmetricSuperConfig& c, const void* batches, float* scales,
                    int8_t* L) {
#ifdef SMOLQ_QSEARCH_X86
  if constexpr (std::is_same_v<K, Avx2Kernels>) {
    if (batches) {
      for (int g = 0; g < c.nsub / 8; ++g)
        fit_symmetric_batch(static_cast<const SubBatch*>(batches)[g], x + g * 8 * c.sub, c.lo, c.hi, c.element,
                            scales + 8 * g, L + g * 8 * c.sub);
      return;
    }
  }
#endif
  for (int j = 0; j < c.nsub; ++j)
    scales[j] = fit_symmetric_t<K>(x + j * c.sub, w + j * c.sub, c.sub, c.lo, c.hi, L + j * c.sub, c.element);
}

// Step 3 through pick_symmetric, or its batched form.
template <class K>
float pick_sub_blocks(const float* x, const float* w, const SymmetricSuperConfig& c, const void* batches, float D,
                      const int* center, int8_t* sc, int8_t* L) {
#ifdef SMOLQ_QSEARCH_X86
  if constexpr (std::is_same_v<K, Avx2Kernels>) {
    if (batches) {
      float err[16];
      for (int g = 0; g < c.nsub / 8; ++g)
        pick_symmetric_batch(static_cast<const SubBatch*>(batches)[g], x + g * 8 * c.sub, c, D, center + 8 * g,
                             sc + 8 * g, L + g * 8 * c.sub, err + 8 * g);
      float total = 0;  // in sub-block order, as pick_symmetric sums
      for (int j = 0; j < c.nsub; ++j) total += err[j];
      return total;
    }
  }
#endif
  return pick_symmetric<K>(x, w, c, D, center, sc, L);
}

// Q3_K / Q6_K super-block: steps 1-4 of quant_search.h. The second-level fit treats the 16
// sub-block scales as a symmetric group (weighted by each sub-block's total weight) to get D
// and starting integers; pick then works with the f16-rounded D, as the decoder will.
template <class K>
void encode_symmetric_super_t(const float* x, const float* w, const SymmetricSuperConfig& c, SymmetricSuperBlock& out) {
  out = SymmetricSuperBlock{};
  // The AVX2 kernels run steps 1 and 3 on batches of eight sub-blocks where the shape allows.
  const void* batches = nullptr;
#ifdef SMOLQ_QSEARCH_X86
  SubBatch batch[2];
  if constexpr (std::is_same_v<K, Avx2Kernels>) {
    if (batchable(c)) {
      for (int g = 0; g < c.nsub / 8; ++g) load_batch(x + g * 8 * c.sub, w + g * 8 * c.sub, batch[g]);
      batches = batch;
    }
  }
#endif
  float scales[16], sw[16];
  fit_sub_blocks<K>(x, w, c, batches, scales, out.L);
  for (int j = 0; j < c.nsub; ++j) sw[j] = lane_sum(w + j * c.sub, c.sub);
  int8_t Ls[16];
  const float dsup = fit_symmetric_t<K>(scales, sw, c.nsub, c.slo, c.shi, Ls, c.scale);
  if (dsup == 0.0f) {  // every sub-block is (numerically) zero
    out = SymmetricSuperBlock{};
    return;
  }
  uint16_t d16 = scale_to_f16(dsup);
  const float D = f16_to_f32(d16);
  int center[16];
  for (int j = 0; j < c.nsub; ++j) center[j] = clamp_int(round_int(scales[j] / D), c.slo, c.shi);
  // Starting integers: the float sub-block scales divided by the f16-rounded D.
  float err = pick_sub_blocks<K>(x, w, c, batches, D, center, out.sc, out.L);
  out.d = d16;

  SymmetricSuperBlock trial;
  for (int r = 0; r < c.rounds; ++r) {
    // Step 4: least-squares D for the chosen integer scales and levels:
    // D = sum w*x*a / sum w*a^2 with a = sc*l. Summed in double (256 terms, once per round)
    // so the refit is not limited by float cancellation.
    double num = 0, den = 0;
    for (int j = 0; j < c.nsub; ++j)
      for (int i = 0; i < c.sub; ++i) {
        const double a = static_cast<double>(out.sc[j]) * out.L[j * c.sub + i];
        num += w[j * c.sub + i] * a * x[j * c.sub + i];
        den += w[j * c.sub + i] * a * a;
      }
    if (!(den > 0)) break;  // every level is zero: nothing to refit
    const uint16_t nd16 = scale_to_f16(static_cast<float>(num / den));
    if (nd16 == d16) break;
    for (int j = 0; j < c.nsub; ++j) center[j] = out.sc[j];
    // Re-pick the integers around the current ones under the new D; keep the round only if
    // the total error really drops (the refit is optimal for the old integers, not the new).
    const float nerr = pick_sub_blocks<K>(x, w, c, batches, f16_to_f32(nd16), center, trial.sc, trial.L);
    if (!(nerr < err)) break;
    err = nerr;
    d16 = nd16;
    trial.d = nd16;
    out = trial;
  }
}

// Step 3 (affine): integer (scale, min) pairs in a square neighbourhood of the centers plus
// four axis points; scored, chosen and re-levelled as in pick_symmetric.
template <class K>
float pick_affine(const float* x, const float* w, const AffineSuperConfig& c, float D, float M, const int* ca,
                  const int* cb, uint8_t* sc, uint8_t* mn, uint8_t* L) {
  float total = 0;
  for (int j = 0; j < c.nsub; ++j) {
    const float* xj = x + j * c.sub;
    const float* wj = w + j * c.sub;
    const int a0 = clamp_int(ca[j] - c.radius, 0, c.smax), a1 = clamp_int(ca[j] + c.radius, 0, c.smax);
    const int b0 = clamp_int(cb[j] - c.radius, 0, c.smax), b1 = clamp_int(cb[j] + c.radius, 0, c.smax);
    float s[kMaxCandidates], mm[kMaxCandidates], err[kMaxCandidates] = {};
    uint8_t ia[kMaxCandidates], ib[kMaxCandidates];
    int nc = 0;
    auto add = [&](int a, int b) {
      s[nc] = D * static_cast<float>(a);  // the decoder's d*sc and dmin*m
      mm[nc] = M * static_cast<float>(b);
      ia[nc] = static_cast<uint8_t>(a);
      ib[nc++] = static_cast<uint8_t>(b);
    };
    for (int a = a0; a <= a1; ++a)
      for (int b = b0; b <= b1; ++b) add(a, b);
    // Plus the four axis points one step beyond the square (with radius 1: 9 + 4 = 13
    // candidates, which the AVX2 kernel scores in the same two passes as 9).
    const int r = c.radius + 1;
    if (ca[j] - r >= 0) add(ca[j] - r, clamp_int(cb[j], 0, c.smax));
    if (ca[j] + r <= c.smax) add(ca[j] + r, clamp_int(cb[j], 0, c.smax));
    if (cb[j] - r >= 0) add(clamp_int(ca[j], 0, c.smax), cb[j] - r);
    if (cb[j] + r <= c.smax) add(clamp_int(ca[j], 0, c.smax), cb[j] + r);
    if (nc == 0) continue;  // as in pick_symmetric
    K::error_affine(xj, wj, c.sub, static_cast<float>(c.nmax), s, mm, nc, err);
    int best = 0;
    for (int k = 1; k < nc; ++k)
      if (err[k] < err[best]) best = k;
    sc[j] = ia[best];
    mn[j] = ib[best];
    // x - (-mm) is exactly x + mm: the same levels the error kernel rounded to.
    K::levels_affine(xj, c.sub, static_cast<float>(c.nmax), -mm[best], s[best] != 0.0f ? 1.0f / s[best] : 0.0f,
                     L + j * c.sub);
    total += err[best];
  }
  return total;
}

// Q2_K / Q4_K / Q5_K super-block: as the symmetric engine, with a (scale, min) pair per
// sub-block and two f16 super-block values. Special cases: a constant super-block is coded
// exactly by the mins alone, and a super-block without negative values flips dmin's sign.
template <class K>
void encode_affine_super_t(const float* x, const float* w, const AffineSuperConfig& c, AffineSuperBlock& out) {
  out = AffineSuperBlock{};
  float mn, mx;
  lane_min_max(x, c.sub * c.nsub, mn, mx);
  if (mn == mx) {
    // Constant super-block: carried exactly (up to f16 rounding) by the min term alone:
    // d = 0, every integer min 1, dmin = -value.
    if (mn != 0.0f) {
      out.dmin = scale_to_f16(-mn);
      std::fill(out.m, out.m + c.nsub, uint8_t{1});
    }
    return;
  }
  // The integer mins are unsigned and share dmin's sign. Usually offsets are negative (the
  // sub-block's lowest value); a super-block with no negative value is better served by
  // positive offsets, i.e. a negative dmin.
  const OffsetSign sign = mn > 0.0f ? OffsetSign::kNonNegative : OffsetSign::kNonPositive;
  const float msign = sign == OffsetSign::kNonNegative ? -1.0f : 1.0f;

  float scales[16], mins[16], sw[16];
  for (int j = 0; j < c.nsub; ++j) {
    const AffineFit f = fit_affine_t<K>(x + j * c.sub, w + j * c.sub, c.sub, c.nmax, out.L + j * c.sub, sign, c.element);
    scales[j] = f.d;
    mins[j] = std::fabs(f.m);
    sw[j] = lane_sum(w + j * c.sub, c.sub);
  }
  int8_t Ls[16], Lm[16];
  const float dsup = fit_symmetric_t<K>(scales, sw, c.nsub, 0, c.smax, Ls, c.scale);
  const float msup = fit_symmetric_t<K>(mins, sw, c.nsub, 0, c.smax, Lm, c.scale);
  uint16_t d16 = dsup > 0.0f ? scale_to_f16(dsup) : 0;
  uint16_t m16 = msup > 0.0f ? scale_to_f16(msign * msup) : 0;
  const float D = f16_to_f32(d16);
  float M = f16_to_f32(m16);
  int ca[16], cb[16];
  for (int j = 0; j < c.nsub; ++j) {
    ca[j] = D > 0.0f ? clamp_int(round_int(scales[j] / D), 0, c.smax) : 0;
    cb[j] = M != 0.0f ? clamp_int(round_int(mins[j] / std::fabs(M)), 0, c.smax) : 0;
  }
  // Starting integers: the float scales and mins divided by the f16-rounded super values.
  float err = pick_affine<K>(x, w, c, D, M, ca, cb, out.sc, out.m, out.L);
  out.d = d16;
  out.dmin = m16;

  AffineSuperBlock trial;
  for (int r = 0; r < c.rounds; ++r) {
    // Step 4: least squares for (D, M) in x ~= D*a - M*b with a = sc*l and b = m fixed: the
    // 2x2 normal equations [saa -sab; sab -sbb] [D; M] = [sax; sbx], in double as above.
    double saa = 0, sab = 0, sbb = 0, sax = 0, sbx = 0;
    for (int j = 0; j < c.nsub; ++j) {
      const double b = out.m[j];
      for (int i = 0; i < c.sub; ++i) {
        const int k = j * c.sub + i;
        const double a = static_cast<double>(out.sc[j]) * out.L[k], wk = w[k], xk = x[k];
        saa += wk * a * a;
        sab += wk * a * b;
        sbb += wk * b * b;
        sax += wk * a * xk;
        sbx += wk * b * xk;
      }
    }
    if (!(saa > 0)) break;  // no non-zero level: nothing to refit
    const double det = saa * sbb - sab * sab;
    double nD = sax / saa, nM = M;
    if (sbb > 0 && det > 1e-12 * saa * sbb) {
      nD = (sax * sbb - sab * sbx) / det;
      nM = (sab * sax - saa * sbx) / det;
      if (nM * msign < 0) {  // the offsets may not change sign: keep M, refit D alone
        nM = M;
        nD = (sax + M * sab) / saa;
      }
    }
    if (!(nD > 0)) break;
    const uint16_t nd16 = scale_to_f16(static_cast<float>(nD));
    const uint16_t nm16 = nM != 0 ? scale_to_f16(static_cast<float>(nM)) : 0;
    if (nd16 == d16 && nm16 == m16) break;
    for (int j = 0; j < c.nsub; ++j) {
      ca[j] = out.sc[j];
      cb[j] = out.m[j];
    }
    // As in the symmetric engine: re-pick around the current integers, keep only a real gain.
    const float nerr = pick_affine<K>(x, w, c, f16_to_f32(nd16), f16_to_f32(nm16), ca, cb, trial.sc, trial.m, trial.L);
    if (!(nerr < err)) break;
    err = nerr;
    d16 = nd16;
    m16 = nm16;
    M = f16_to_f32(m16);
    trial.d = d16;
    trial.dmin = m16;
    out = trial;
  }
}

}  // namespace

// ---- entry points ---------------------------------------------------------------------------
// Scalar and AVX2 instantiations of the same templates; callers pick one with cpu::has_avx2()
// (formats/cpu_features.h).

void encode_symmetric_super(const float* x, const float* w, const SymmetricSuperConfig& c, SymmetricSuperBlock& out) {
  encode_symmetric_super_t<ScalarKernels>(x, w, c, out);
}
void encode_affine_super(const float* x, const float* w, const AffineSuperConfig& c, AffineSuperBlock& out) {
  encode_affine_super_t<ScalarKernels>(x, w, c, out);
}
void encode_symmetric_super_avx2(const float* x, const float* w, const SymmetricSuperConfig& c,
                                 SymmetricSuperBlock& out) {
  encode_symmetric_super_t<Avx2Kernels>(x, w, c, out);
}
void encode_affine_super_avx2(const float* x, const float* w, const AffineSuperConfig& c, AffineSuperBlock& out) {
  encode_affine_super_t<Avx2Kernels>(x, w, c, out);
}

}  // namespace smolq::qsearch
