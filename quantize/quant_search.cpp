// Scale searches shared by the legacy and K-quant formats (see quant_search.h for the model).
#include "quantize/quant_search.h"

#include <cstring>

#include "formats/half.h"

namespace smolq::qsearch {

void element_weights(const float* x, const float* importance, float sigma2, int n, float* w) {
  for (int i = 0; i < n; ++i) {
    const float base = std::sqrt(sigma2 + x[i] * x[i]);
    w[i] = importance ? importance[i] * base : base;
  }
}

// ---- symmetric ---------------------------------------------------------------------------

namespace {

// sum w*x*l and sum w*l^2 for levels l = round(clamp(is * x)). For fixed levels the
// least-squares scale is slx / sl2 and it removes slx^2 / sl2 from sum w*x^2, so a larger
// slx^2 / sl2 is a smaller error.
inline void symmetric_sums(const float* x, const float* w, int n, float lo, float hi, float is,
                           float& slx, float& sl2) {
  float a = 0, b = 0;
  for (int i = 0; i < n; ++i) {
    const float l = round_clamped(is * x[i], lo, hi);
    const float wl = w[i] * l;
    a += wl * x[i];
    b += wl * l;
  }
  slx = a;
  sl2 = b;
}

// Is (slx1, sl21) a better fit than (slx0, sl20)? (cross-multiplied, sl2 > 0). A candidate
// must win by more than float noise: exact ties (a constant group fits any level exactly)
// keep the earlier, simpler candidate, whose scale is more often exact in f16.
constexpr float kTieMargin = 1.0f + 1e-5f;
inline bool better_symmetric(float slx1, float sl21, float slx0, float sl20) {
  return slx1 * slx1 * sl20 > kTieMargin * slx0 * slx0 * sl21;
}

}  // namespace

float fit_symmetric(const float* x, const float* w, int n, int lo, int hi, int8_t* L,
                    const SymmetricSearch& cfg) {
  float amax = 0, vmax = 0;
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (a > amax) {
      amax = a;
      vmax = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
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

  const float base_is = ends[0] / vmax;  // the plain rule: extreme value lands on the end level
  float best_is = base_is, best_slx = 0, best_sl2 = 0;
  bool have = false;
  for (int e = 0; e < nends; ++e) {
    const float end = ends[e];
    const float dir = end < 0 ? -1.0f : 1.0f;
    for (int k = 0; k <= 2 * cfg.ntry; ++k) {
      // k = 0 is the end itself, then alternately +step, -step, +2 step, ...
      const int off = (k + 1) / 2 * ((k & 1) ? 1 : -1);
      const float target = end + dir * cfg.step * static_cast<float>(off);
      if (target * dir <= 0.0f) continue;
      const float is = target / vmax;
      float slx, sl2;
      symmetric_sums(x, w, n, flo, fhi, is, slx, sl2);
      if (!(sl2 > 0.0f)) continue;
      if (!have || better_symmetric(slx, sl2, best_slx, best_sl2)) {
        have = true;
        best_is = is;
        best_slx = slx;
        best_sl2 = sl2;
      }
    }
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(round_clamped(best_is * x[i], flo, fhi));
  if (!have) return 1.0f / best_is;  // every weight is zero: any scale is "optimal"; keep the plain one

  float slx = best_slx, sl2 = best_sl2;
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
    const float is = sl2 / slx;
    float nslx, nsl2;
    symmetric_sums(x, w, n, flo, fhi, is, nslx, nsl2);
    if (nsl2 > 0.0f && better_symmetric(nslx, nsl2, slx, sl2)) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(round_clamped(is * x[i], flo, fhi));
      slx = nslx;
      sl2 = nsl2;
    }
  }
  return slx / sl2;
}

float requantize_symmetric(const float* x, const float* w, int n, int lo, int hi, float s, int8_t* L) {
  float err = 0;
  if (s == 0.0f) {
    std::memset(L, 0, n);
    for (int i = 0; i < n; ++i) err += w[i] * x[i] * x[i];
    return err;
  }
  const float inv = 1.0f / s, flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
  for (int i = 0; i < n; ++i) {
    const float l = round_clamped(x[i] * inv, flo, fhi);
    L[i] = static_cast<int8_t>(l);
    const float diff = x[i] - s * l;
    err += w[i] * diff * diff;
  }
  return err;
}

// ---- affine ------------------------------------------------------------------------------

namespace {

struct AffineSums {
  float sl = 0, sl2 = 0, sxl = 0;  // sum w*l, sum w*l^2, sum w*x*l
};

// Least-squares (d, m) for fixed levels under the offset-sign constraint. Returns the score
// d*sxl + m*swx (= sum w*x^2 minus the weighted squared error), or -1 when the levels cannot
// carry a fit (all equal, or a non-positive scale).
inline float affine_solve(const AffineSums& s, float sw, float swx, OffsetSign sign, float& d, float& m) {
  const float det = sw * s.sl2 - s.sl * s.sl;
  if (!(det > 0.0f)) return -1.0f;
  d = (sw * s.sxl - swx * s.sl) / det;
  m = (s.sl2 * swx - s.sl * s.sxl) / det;
  if ((sign == OffsetSign::kNonPositive && m > 0.0f) || (sign == OffsetSign::kNonNegative && m < 0.0f)) {
    m = 0.0f;
    d = s.sxl / s.sl2;
  }
  if (!(d > 0.0f)) return -1.0f;
  return d * s.sxl + m * swx;
}

// Levels round((x - off) * is) clamped to [0, nmax] and their sums; writes them to L if non-null.
inline AffineSums affine_sums(const float* x, const float* w, int n, float fnmax, float off, float is,
                              uint8_t* L) {
  AffineSums s;
  for (int i = 0; i < n; ++i) {
    const float l = round_clamped((x[i] - off) * is, 0.0f, fnmax);
    if (L) L[i] = static_cast<uint8_t>(l);
    const float wl = w[i] * l;
    s.sl += wl;
    s.sl2 += wl * l;
    s.sxl += wl * x[i];
  }
  return s;
}

}  // namespace

AffineFit fit_affine(const float* x, const float* w, int n, int nmax, uint8_t* L, OffsetSign sign,
                     const AffineSearch& cfg) {
  float mn = x[0], mx = x[0], sw = 0, swx = 0;
  for (int i = 0; i < n; ++i) {
    mn = x[i] < mn ? x[i] : mn;
    mx = x[i] > mx ? x[i] : mx;
    sw += w[i];
    swx += w[i] * x[i];
  }
  if (sign == OffsetSign::kNonPositive && mn > 0.0f) mn = 0.0f;
  if (sign == OffsetSign::kNonNegative && mn < 0.0f) mn = 0.0f;
  if (!(mx > mn)) {  // constant group (or nothing the offset sign can reach)
    std::memset(L, 0, n);
    return {0.0f, mn};
  }
  const float fnmax = static_cast<float>(nmax);
  const float range = mx - mn;

  // Sweep: the min/max rule (k = -1) and then (nmax + rmin + rdelta*k) / range, all offset by mn.
  float best_is = fnmax / range, best_score = -1.0f;
  AffineFit best{range / fnmax, mn};
  for (int k = -1; k <= cfg.nstep; ++k) {
    const float is = k < 0 ? fnmax / range : (fnmax + cfg.rmin + cfg.rdelta * static_cast<float>(k)) / range;
    if (!(is > 0.0f)) continue;
    const AffineSums s = affine_sums(x, w, n, fnmax, mn, is, nullptr);
    float d = 0, m = 0;
    const float score = affine_solve(s, sw, swx, sign, d, m);
    if (score > best_score) {
      best_score = score;
      best_is = is;
      best = {d, m};
    }
  }
  affine_sums(x, w, n, fnmax, mn, best_is, L);
  if (best_score < 0.0f) return {range / fnmax, mn};  // weights all zero: keep the min/max rule

  // Alternate "round to the fitted (d, m)" and "refit (d, m) to those levels".
  uint8_t Lt[256];
  for (int a = 0; a < cfg.alternations; ++a) {
    const AffineSums s = affine_sums(x, w, n, fnmax, best.m, 1.0f / best.d, Lt);
    float d = 0, m = 0;
    const float score = affine_solve(s, sw, swx, sign, d, m);
    if (!(score > best_score)) break;
    best_score = score;
    best = {d, m};
    std::memcpy(L, Lt, n);
  }
  return best;
}

float requantize_affine(const float* x, const float* w, int n, int nmax, float s, float mm, uint8_t* L) {
  float err = 0;
  if (s == 0.0f) {
    std::memset(L, 0, n);
    for (int i = 0; i < n; ++i) {
      const float diff = x[i] + mm;
      err += w[i] * diff * diff;
    }
    return err;
  }
  const float inv = 1.0f / s, fnmax = static_cast<float>(nmax);
  for (int i = 0; i < n; ++i) {
    const float l = round_clamped((x[i] + mm) * inv, 0.0f, fnmax);
    L[i] = static_cast<uint8_t>(l);
    const float diff = s * l - mm - x[i];
    err += w[i] * diff * diff;
  }
  return err;
}

uint16_t scale_to_f16(float v) {
  uint16_t h = f32_to_f16(v);
  if ((h & 0x7fffu) == 0 && v != 0.0f) h = v < 0.0f ? 0x8001u : 0x0001u;  // smallest subnormal
  if ((h & 0x7c00u) == 0x7c00u) h = static_cast<uint16_t>((h & 0x8000u) | 0x7bffu);  // largest finite
  return h;
}

}  // namespace smolq::qsearch
