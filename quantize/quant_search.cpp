// Scale searches shared by the legacy and K-quant formats (see quant_search.h for the model).
//
// Structure. Every search spends its time scoring candidates: "round the group under this
// (inverse) scale and accumulate the least-squares sums" or "the weighted error of the group
// under this decoded scale". Those loops live in two interchangeable kernel sets:
//   - ScalarKernels: one candidate at a time, elements summed in order (the reference);
//   - Avx2Kernels: eight candidates at a time, one per vector lane, elements summed in the
//     same order, with the same multiplies and adds (no FMA), so every lane reproduces the
//     scalar result bit for bit.
// The search logic (which candidates, which one wins, refinement) is written once as
// templates over the kernel set, so the reference and fast quantizers make identical choices.
#include "quantize/quant_search.h"

#if defined(__x86_64__) || defined(__i386__)
#define SMOLQ_QSEARCH_X86 1
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>

#include "formats/half.h"

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

namespace {

// Short reductions (n a multiple of 8) with eight independent partial results combined in a
// fixed tree: no long dependency chain, vectorisable, and the same order for every caller.
inline float lane_sum(const float* x, int n) {
  float a[8] = {};
  for (int i = 0; i < n; i += 8)
    for (int k = 0; k < 8; ++k) a[k] += x[i + k];
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}
inline void lane_min_max(const float* x, int n, float& mn, float& mx) {
  float lo[8], hi[8];
  for (int k = 0; k < 8; ++k) lo[k] = hi[k] = x[k];
  for (int i = 8; i < n; i += 8)
    for (int k = 0; k < 8; ++k) {
      lo[k] = x[i + k] < lo[k] ? x[i + k] : lo[k];
      hi[k] = x[i + k] > hi[k] ? x[i + k] : hi[k];
    }
  mn = lo[0];
  mx = hi[0];
  for (int k = 1; k < 8; ++k) {
    mn = lo[k] < mn ? lo[k] : mn;
    mx = hi[k] > mx ? hi[k] : mx;
  }
}

// Upper bound on candidates per call (the sweeps below stay well inside): stack arrays of
// this size hold per-candidate scales and results, so no search allocates.
constexpr int kMaxCandidates = 64;

// ---- scoring kernels ---------------------------------------------------------------------

// The reference kernels: straightforward loops, one candidate after the other. Every float
// operation here has a counterpart in Avx2Kernels at the same position of the same lane.
struct ScalarKernels {
  // Per candidate c: levels l = round(clamp(is[c] * x)), slx = sum w*l*x, sl2 = sum w*l^2.
  static void score_symmetric(const float* x, const float* w, int n, float lo, float hi, const float* is, int nc,
                              float* slx, float* sl2) {
    for (int c = 0; c < nc; ++c) {
      float a = 0, b = 0;
      for (int i = 0; i < n; ++i) {
        const float l = round_clamped(is[c] * x[i], lo, hi);
        const float wl = w[i] * l;
        a += wl * x[i];
        b += wl * l;
      }
      slx[c] = a;
      sl2[c] = b;
    }
  }
  // Per candidate c: l = round(clamp((x - off) * is[c], 0, nmax)), sums w*l, w*l^2, w*l*x.
  static void score_affine(const float* x, const float* w, int n, float fnmax, float off, const float* is, int nc,
                           float* sl, float* sl2, float* sxl) {
    for (int c = 0; c < nc; ++c) {
      float a = 0, b = 0, e = 0;
      for (int i = 0; i < n; ++i) {
        const float l = round_clamped((x[i] - off) * is[c], 0.0f, fnmax);
        const float wl = w[i] * l;
        a += wl;
        b += wl * l;
        e += wl * x[i];
      }
      sl[c] = a;
      sl2[c] = b;
      sxl[c] = e;
    }
  }
  // Levels of one candidate: L = round(clamp(is * x)) (symmetric) or
  // round(clamp((x - off) * is, 0, nmax)) (affine). Same formulas as the scoring kernels.
  static void levels_symmetric(const float* x, int n, float lo, float hi, float is, int8_t* L) {
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(round_clamped(is * x[i], lo, hi));
  }
  static void levels_affine(const float* x, int n, float fnmax, float off, float is, uint8_t* L) {
    for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(round_clamped((x[i] - off) * is, 0.0f, fnmax));
  }
  // Per candidate decoded scale s[c]: sum w*(x - s*l)^2 with l rounded to nearest.
  static void error_symmetric(const float* x, const float* w, int n, float lo, float hi, const float* s, int nc,
                              float* err) {
    for (int c = 0; c < nc; ++c) {
      const float inv = s[c] != 0.0f ? 1.0f / s[c] : 0.0f;
      float e = 0;
      for (int i = 0; i < n; ++i) {
        const float l = round_clamped(x[i] * inv, lo, hi);
        const float diff = x[i] - s[c] * l;
        e += w[i] * diff * diff;
      }
      err[c] = e;
    }
  }
  // Per candidate (s[c], mm[c]): sum w*(s*l - mm - x)^2 with l rounded to nearest in [0, nmax].
  static void error_affine(const float* x, const float* w, int n, float fnmax, const float* s, const float* mm,
                           int nc, float* err) {
    for (int c = 0; c < nc; ++c) {
      const float inv = s[c] != 0.0f ? 1.0f / s[c] : 0.0f;
      float e = 0;
      for (int i = 0; i < n; ++i) {
        const float l = round_clamped((x[i] + mm[c]) * inv, 0.0f, fnmax);
        const float diff = s[c] * l - mm[c] - x[i];
        e += w[i] * diff * diff;
      }
      err[c] = e;
    }
  }
};

#ifdef SMOLQ_QSEARCH_X86
// The same kernels with candidates in AVX2 lanes. Lanes past nc repeat the last candidate and
// are discarded. Each lane walks the elements in order and performs exactly the scalar
// sequence of multiplies, adds, min/max and magic-number rounding, so its sums are bitwise
// equal to the scalar loop's (the compiler may not contract mul+add into FMA: ISO C++ mode
// keeps -ffp-contract=off, and the target enables AVX2 only, not FMA).
struct Avx2Kernels {
  [[gnu::target("avx2")]] static __m256 load_lanes(const float* v, int c0, int nc) {
    alignas(32) float t[8];
    for (int k = 0; k < 8; ++k) t[k] = v[std::min(c0 + k, nc - 1)];
    return _mm256_load_ps(t);
  }
  [[gnu::target("avx2")]] static void store_lanes(__m256 v, float* out, int c0, int nc) {
    alignas(32) float t[8];
    _mm256_store_ps(t, v);
    for (int k = 0; k < 8 && c0 + k < nc; ++k) out[c0 + k] = t[k];
  }
  // round_clamped() per lane: max/min equal the scalar compare-and-select for ordered values.
  [[gnu::target("avx2")]] static __m256 round_clamp(__m256 v, __m256 lo, __m256 hi) {
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    return _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
  }

  // Eight integral floats (|v| < 128) to bytes: exact int32 conversion, then two saturating
  // packs (which never saturate for these values) down to the low 8 bytes.
  [[gnu::target("avx2")]] static void store_bytes(__m256 l, void* out) {
    const __m256i i32 = _mm256_cvtps_epi32(l);
    const __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
    _mm_storel_epi64(static_cast<__m128i*>(out), _mm_packs_epi16(i16, i16));
  }
  [[gnu::target("avx2")]] static void levels_symmetric(const float* x, int n, float lo, float hi, float is,
                                                      int8_t* L) {
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi), vis = _mm256_set1_ps(is);
    for (int i = 0; i < n; i += 8)
      store_bytes(round_clamp(_mm256_mul_ps(vis, _mm256_loadu_ps(x + i)), vlo, vhi), L + i);
  }
  [[gnu::target("avx2")]] static void levels_affine(const float* x, int n, float fnmax, float off, float is,
                                                   uint8_t* L) {
    const __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_set1_ps(fnmax), vis = _mm256_set1_ps(is);
    const __m256 voff = _mm256_set1_ps(off);
    for (int i = 0; i < n; i += 8)
      store_bytes(round_clamp(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), voff), vis), vlo, vhi), L + i);
  }
  // Candidate lanes: x[i] and w[i] are broadcast, the inverse scales vary across lanes.
  [[gnu::target("avx2")]] static void score_symmetric(const float* x, const float* w, int n, float lo, float hi,
                                                     const float* is, int nc, float* slx, float* sl2) {
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    for (int c0 = 0; c0 < nc; c0 += 8) {
      const __m256 vis = load_lanes(is, c0, nc);
      __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
      for (int i = 0; i < n; ++i) {
        const __m256 xv = _mm256_set1_ps(x[i]);
        const __m256 l = round_clamp(_mm256_mul_ps(vis, xv), vlo, vhi);
        const __m256 wl = _mm256_mul_ps(_mm256_set1_ps(w[i]), l);
        a = _mm256_add_ps(a, _mm256_mul_ps(wl, xv));
        b = _mm256_add_ps(b, _mm256_mul_ps(wl, l));
      }
      store_lanes(a, slx, c0, nc);
      store_lanes(b, sl2, c0, nc);
    }
  }
  [[gnu::target("avx2")]] static void score_affine(const float* x, const float* w, int n, float fnmax, float off,
                                                  const float* is, int nc, float* sl, float* sl2, float* sxl) {
    const __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_set1_ps(fnmax);
    for (int c0 = 0; c0 < nc; c0 += 8) {
      const __m256 vis = load_lanes(is, c0, nc);
      __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps(), e = _mm256_setzero_ps();
      for (int i = 0; i < n; ++i) {
        const __m256 l = round_clamp(_mm256_mul_ps(_mm256_set1_ps(x[i] - off), vis), vlo, vhi);
        const __m256 wl = _mm256_mul_ps(_mm256_set1_ps(w[i]), l);
        a = _mm256_add_ps(a, wl);
        b = _mm256_add_ps(b, _mm256_mul_ps(wl, l));
        e = _mm256_add_ps(e, _mm256_mul_ps(wl, _mm256_set1_ps(x[i])));
      }
      store_lanes(a, sl, c0, nc);
      store_lanes(b, sl2, c0, nc);
      store_lanes(e, sxl, c0, nc);
    }
  }
  // 1/s per lane, and 0 where s == 0 (the scalar kernels' `s != 0 ? 1/s : 0`): the division
  // runs on a blend that replaces zeros by 1, and the zero lanes are masked out afterwards.
  [[gnu::target("avx2")]] static __m256 safe_inverse(__m256 s) {
    const __m256 zero = _mm256_setzero_ps();
    const __m256 nz = _mm256_cmp_ps(s, zero, _CMP_NEQ_OQ);
    return _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_blendv_ps(_mm256_set1_ps(1.0f), s, nz)), nz);
  }
  // Errors of 8 decoded scales per pass; levels use x * (1/s) exactly like the scalar kernel.
  [[gnu::target("avx2")]] static void error_symmetric(const float* x, const float* w, int n, float lo, float hi,
                                                     const float* s, int nc, float* err) {
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    for (int c0 = 0; c0 < nc; c0 += 8) {
      const __m256 vs = load_lanes(s, c0, nc), inv = safe_inverse(vs);
      __m256 e = _mm256_setzero_ps();
      for (int i = 0; i < n; ++i) {
        const __m256 xv = _mm256_set1_ps(x[i]);
        const __m256 l = round_clamp(_mm256_mul_ps(xv, inv), vlo, vhi);
        const __m256 diff = _mm256_sub_ps(xv, _mm256_mul_ps(vs, l));
        e = _mm256_add_ps(e, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(w[i]), diff), diff));
      }
      store_lanes(e, err, c0, nc);
    }
  }
  // Errors of 8 (s, mm) pairs per pass: value s*l - mm, level round((x + mm) / s).
  [[gnu::target("avx2")]] static void error_affine(const float* x, const float* w, int n, float fnmax,
                                                  const float* s, const float* mm, int nc, float* err) {
    const __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_set1_ps(fnmax);
    for (int c0 = 0; c0 < nc; c0 += 8) {
      const __m256 vs = load_lanes(s, c0, nc), vm = load_lanes(mm, c0, nc), inv = safe_inverse(vs);
      __m256 e = _mm256_setzero_ps();
      for (int i = 0; i < n; ++i) {
        const __m256 xv = _mm256_set1_ps(x[i]);
        const __m256 l = round_clamp(_mm256_mul_ps(_mm256_add_ps(xv, vm), inv), vlo, vhi);
        const __m256 diff = _mm256_sub_ps(_mm256_sub_ps(_mm256_mul_ps(vs, l), vm), xv);
        e = _mm256_add_ps(e, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(w[i]), diff), diff));
      }
      store_lanes(e, err, c0, nc);
    }
  }
};

#else
using Avx2Kernels = ScalarKernels;  // never selected: cpu_has_avx2() is false off x86
#endif

// ---- symmetric fit -------------------------------------------------------------------------

// Is (slx1, sl21) a better fit than (slx0, sl20)? (cross-multiplied, sl2 > 0). For fixed levels
// the least-squares scale is slx / sl2 and it removes slx^2 / sl2 from sum w*x^2, so larger is
// better. A candidate must win by more than float noise: exact ties (a constant group fits
// any level exactly) keep the earlier, simpler candidate, whose scale is more often exact in f16.
constexpr float kTieMargin = 1.0f + 1e-5f;
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

  // Ends of the level range the largest magnitude may map to; the longer side first (for the
  // ggml formats lo = -(hi+1), so mapping the extreme value to lo gains one level).
  float ends[2];
  int nends = 0;
  if (-lo >= hi) {
    if (lo < 0) ends[nends++] = flo;
    if (cfg.both_ends && hi > 0) ends[nends++] = fhi;
  } else {
    ends[nends++] = fhi;
    if (cfg.both_ends && lo < 0) ends[nends++] = flo;
  }
  // Candidates: per end, the end itself, then alternately +step, -step, +2 step, ...
  const float inv_vmax = 1.0f / vmax;
  float is[kMaxCandidates];
  int nc = 0;
  for (int e = 0; e < nends; ++e) {
    const float dir = ends[e] < 0 ? -1.0f : 1.0f;
    for (int k = 0; k <= 2 * cfg.ntry && nc < kMaxCandidates; ++k) {
      const int off = (k + 1) / 2 * ((k & 1) ? 1 : -1);
      const float target = ends[e] + dir * cfg.step * static_cast<float>(off);
      if (target * dir > 0.0f) is[nc++] = target * inv_vmax;
    }
  }
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

int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }


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

// Q3_K / Q6_K super-block: steps 1-4 of quant_search.h. The second-level fit treats the 16
// sub-block scales as a symmetric group (weighted by each sub-block's total weight) to get D
// and starting integers; pick then works with the f16-rounded D, as the decoder will.
template <class K>
void encode_symmetric_super_t(const float* x, const float* w, const SymmetricSuperConfig& c, SymmetricSuperBlock& out) {
  out = SymmetricSuperBlock{};
  float scales[16], sw[16];
  for (int j = 0; j < c.nsub; ++j) {
    scales[j] = fit_symmetric_t<K>(x + j * c.sub, w + j * c.sub, c.sub, c.lo, c.hi, out.L + j * c.sub, c.element);
    sw[j] = lane_sum(w + j * c.sub, c.sub);
  }
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
  float err = pick_symmetric<K>(x, w, c, D, center, out.sc, out.L);
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
    const float nerr = pick_symmetric<K>(x, w, c, f16_to_f32(nd16), center, trial.sc, trial.L);
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
// Scalar and AVX2 instantiations of the same templates; cpu_has_avx2() caches the CPUID test.

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
bool cpu_has_avx2() {
#ifdef SMOLQ_QSEARCH_X86
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
#else
  return false;
#endif
}

}  // namespace smolq::qsearch
