// The two-level searches behind the K-quants (declared in quant_search.h): one f16 super-block
// scale (and min) over small integer sub-block scales (and mins). The format files only pack
// what these engines choose.
//
// Why a second refinement stage: ggml quantizes the sub-block scales once (rounding each to
// the nearest integer multiple of d) and then re-rounds the elements. The rounding of a 4- or
// 6-bit sub-block scale moves that sub-block's whole grid, and the nearest integer is often
// not the best one once the elements are re-rounded; nor is the least-squares d of the float
// scales the best d for the integer ones. Both are cheap to search, and each step below only
// keeps a change that lowers the weighted error of the decoded values.
#include <algorithm>
#include <cstring>

#include "formats/half.h"
#include "quantize/quant_search.h"

namespace smolq::qsearch {
namespace {

int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

float block_weight_sum(const float* w, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += w[i];
  return s;
}

// ---- symmetric ---------------------------------------------------------------------------

// Step 3: for every sub-block, the integer scale in center +- radius whose re-rounded levels
// give the least error under super-block scale D. Returns the summed error.
float pick_symmetric(const float* x, const float* w, const SymmetricSuperConfig& c, float D, const int* center,
                     int8_t* sc, int8_t* L) {
  float total = 0;
  int8_t Lt[32];
  for (int j = 0; j < c.nsub; ++j) {
    const float* xj = x + j * c.sub;
    const float* wj = w + j * c.sub;
    float best = -1;
    const int a0 = clamp_int(center[j] - c.radius, c.slo, c.shi), a1 = clamp_int(center[j] + c.radius, c.slo, c.shi);
    for (int a = a0; a <= a1; ++a) {
      const float err = requantize_symmetric(xj, wj, c.sub, c.lo, c.hi, D * static_cast<float>(a), Lt);
      if (best < 0 || err < best) {
        best = err;
        sc[j] = static_cast<int8_t>(a);
        std::memcpy(L + j * c.sub, Lt, c.sub);
      }
    }
    total += best;
  }
  return total;
}

}  // namespace

void encode_symmetric_super(const float* x, const float* w, const SymmetricSuperConfig& c, SymmetricSuperBlock& out) {
  out = SymmetricSuperBlock{};
  float scales[16], sw[16];
  for (int j = 0; j < c.nsub; ++j) {
    scales[j] = fit_symmetric(x + j * c.sub, w + j * c.sub, c.sub, c.lo, c.hi, out.L + j * c.sub, c.element);
    sw[j] = block_weight_sum(w + j * c.sub, c.sub);
  }
  int8_t Ls[16];
  const float dsup = fit_symmetric(scales, sw, c.nsub, c.slo, c.shi, Ls, c.scale);
  if (dsup == 0.0f) {  // every sub-block is (numerically) zero
    out = SymmetricSuperBlock{};
    return;
  }
  uint16_t d16 = scale_to_f16(dsup);
  float D = f16_to_f32(d16);
  int center[16];
  for (int j = 0; j < c.nsub; ++j) center[j] = clamp_int(round_int(scales[j] / D), c.slo, c.shi);
  float err = pick_symmetric(x, w, c, D, center, out.sc, out.L);
  out.d = d16;

  SymmetricSuperBlock trial;
  for (int r = 0; r < c.rounds; ++r) {
    // Step 4: least-squares D for the chosen integer scales and levels.
    double num = 0, den = 0;
    for (int j = 0; j < c.nsub; ++j)
      for (int i = 0; i < c.sub; ++i) {
        const double a = static_cast<double>(out.sc[j]) * out.L[j * c.sub + i];
        num += w[j * c.sub + i] * a * x[j * c.sub + i];
        den += w[j * c.sub + i] * a * a;
      }
    if (!(den > 0)) break;
    const uint16_t nd16 = scale_to_f16(static_cast<float>(num / den));
    if (nd16 == d16) break;
    for (int j = 0; j < c.nsub; ++j) center[j] = out.sc[j];
    const float nerr = pick_symmetric(x, w, c, f16_to_f32(nd16), center, trial.sc, trial.L);
    if (!(nerr < err)) break;
    err = nerr;
    d16 = nd16;
    trial.d = nd16;
    out = trial;
  }
}

// ---- affine ------------------------------------------------------------------------------

namespace {

// Step 3 for the affine formats: integer (scale, min) pairs in a square neighbourhood.
float pick_affine(const float* x, const float* w, const AffineSuperConfig& c, float D, float M, const int* ca,
                  const int* cb, uint8_t* sc, uint8_t* mn, uint8_t* L) {
  float total = 0;
  uint8_t Lt[32];
  for (int j = 0; j < c.nsub; ++j) {
    const float* xj = x + j * c.sub;
    const float* wj = w + j * c.sub;
    float best = -1;
    const int a0 = clamp_int(ca[j] - c.radius, 0, c.smax), a1 = clamp_int(ca[j] + c.radius, 0, c.smax);
    const int b0 = clamp_int(cb[j] - c.radius, 0, c.smax), b1 = clamp_int(cb[j] + c.radius, 0, c.smax);
    for (int a = a0; a <= a1; ++a)
      for (int b = b0; b <= b1; ++b) {
        const float err = requantize_affine(xj, wj, c.sub, c.nmax, D * static_cast<float>(a),
                                            M * static_cast<float>(b), Lt);
        if (best < 0 || err < best) {
          best = err;
          sc[j] = static_cast<uint8_t>(a);
          mn[j] = static_cast<uint8_t>(b);
          std::memcpy(L + j * c.sub, Lt, c.sub);
        }
      }
    total += best;
  }
  return total;
}

}  // namespace

void encode_affine_super(const float* x, const float* w, const AffineSuperConfig& c, AffineSuperBlock& out) {
  out = AffineSuperBlock{};
  const int n = c.sub * c.nsub;
  float mn = x[0], mx = x[0];
  for (int i = 1; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
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
    const AffineFit f = fit_affine(x + j * c.sub, w + j * c.sub, c.sub, c.nmax, out.L + j * c.sub, sign, c.element);
    scales[j] = f.d;
    mins[j] = std::fabs(f.m);
    sw[j] = block_weight_sum(w + j * c.sub, c.sub);
  }
  int8_t Ls[16], Lm[16];
  const float dsup = fit_symmetric(scales, sw, c.nsub, 0, c.smax, Ls, c.scale);
  const float msup = fit_symmetric(mins, sw, c.nsub, 0, c.smax, Lm, c.scale);
  uint16_t d16 = dsup > 0.0f ? scale_to_f16(dsup) : 0;
  uint16_t m16 = msup > 0.0f ? scale_to_f16(msign * msup) : 0;
  float D = f16_to_f32(d16), M = f16_to_f32(m16);
  int ca[16], cb[16];
  for (int j = 0; j < c.nsub; ++j) {
    ca[j] = D > 0.0f ? clamp_int(round_int(scales[j] / D), 0, c.smax) : 0;
    cb[j] = M != 0.0f ? clamp_int(round_int(mins[j] / std::fabs(M)), 0, c.smax) : 0;
  }
  float err = pick_affine(x, w, c, D, M, ca, cb, out.sc, out.m, out.L);
  out.d = d16;
  out.dmin = m16;

  AffineSuperBlock trial;
  for (int r = 0; r < c.rounds; ++r) {
    // Step 4: least squares for (D, M) in x ~= D*a - M*b with a = sc*l and b = m fixed.
    double saa = 0, sab = 0, sbb = 0, sax = 0, sbx = 0;
    for (int j = 0; j < c.nsub; ++j) {
      const double b = out.m[j];
      for (int i = 0; i < c.sub; ++i) {
        const int k = j * c.sub + i;
        const double a = static_cast<double>(out.sc[j]) * out.L[k], wk = w[k], xk = x[k];
        saa += wk * a * a;
        sab += wk * a * b;
        sbb += wk * b * b;
        sax += wk * a * x[k];
        sbx += wk * b * xk;
      }
    }
    if (!(saa > 0)) break;
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
    const float nerr = pick_affine(x, w, c, f16_to_f32(nd16), f16_to_f32(nm16), ca, cb, trial.sc, trial.m, trial.L);
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

}  // namespace smolq::qsearch
