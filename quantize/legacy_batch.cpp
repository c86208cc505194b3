// The batched AVX2 form of the legacy encoders (see legacy_batch.h): eight 32-element blocks
// per call, block j in lane j. Every step mirrors, lane by lane, the scalar code it replaces:
//   fit_symmetric_t / fit_affine_t (quant_search.cpp), then encode_symmetric / encode_affine
//   (legacy_quants.cpp) with their f16 neighbour searches;
// the comments name the scalar expression each vector expression reproduces.
#include "quantize/legacy_batch.h"

#include "formats/half.h"
#include "quantize/quant_search_kernels.h"

#ifdef SMOLQ_QSEARCH_X86
#include <cstring>

namespace smolq::kernels::legacy {

namespace {

using qsearch::detail::Avx2Kernels;
using qsearch::kGroupMaxEps;
using qsearch::detail::kTieMargin;
using qsearch::detail::transpose8;

constexpr int kN = 32;  // elements per block

// Blocks transposed: x[i] lane j = element i of block j.
struct Batch {
  __m256 x[kN], w[kN];
};

// Weights: w given; else, with s2 (sigma^2 of each block's row), element_weights' sqrt(s2 + x^2)
// made here, lane by lane the same operations; else every weight 1 (x * 1 is exact, so the
// weighted code runs unchanged).
[[gnu::target("avx2")]] inline void load(const float* x, const float* w, const float* s2, Batch& b) {
  for (int h = 0; h < kN; h += 8) {
    transpose8(x + h, kN, b.x + h);
    if (w) transpose8(w + h, kN, b.w + h);
  }
  if (w) return;
  if (s2) {
    const __m256 vs2 = _mm256_loadu_ps(s2);
    for (int i = 0; i < kN; ++i) b.w[i] = _mm256_sqrt_ps(_mm256_add_ps(vs2, _mm256_mul_ps(b.x[i], b.x[i])));
    return;
  }
  for (int i = 0; i < kN; ++i) b.w[i] = _mm256_set1_ps(1.0f);
}

[[gnu::target("avx2")]] inline __m256 all_ones() { return _mm256_castsi256_ps(_mm256_set1_epi32(-1)); }

// better_symmetric(slx1, sl21, slx0, sl20): slx1*slx1*sl20 > kTieMargin*slx0*slx0*sl21.
[[gnu::target("avx2")]] inline __m256 better_symmetric(__m256 slx1, __m256 sl21, __m256 slx0, __m256 sl20) {
  const __m256 lhs = _mm256_mul_ps(_mm256_mul_ps(slx1, slx1), sl20);
  const __m256 rhs = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(kTieMargin), slx0), slx0), sl21);
  return _mm256_cmp_ps(lhs, rhs, _CMP_GT_OQ);
}

// score_symmetric for one candidate per lane: a = sum (w*l)*x, q = sum (w*l)*l, l = round(is*x).
[[gnu::target("avx2")]] inline void score_sym(const Batch& b, __m256 is, __m256 vlo, __m256 vhi, __m256& a, __m256& q) {
  a = _mm256_setzero_ps();
  q = _mm256_setzero_ps();
  for (int i = 0; i < kN; ++i) {
    const __m256 l = Avx2Kernels::round_clamp(_mm256_mul_ps(is, b.x[i]), vlo, vhi);
    const __m256 wl = _mm256_mul_ps(b.w[i], l);
    a = _mm256_add_ps(a, _mm256_mul_ps(wl, b.x[i]));
    q = _mm256_add_ps(q, _mm256_mul_ps(wl, l));
  }
}

// fit_symmetric_t for the eight blocks: returns the scales (0 for all-zero blocks).
[[gnu::target("avx2")]] __m256 fit_symmetric8(const Batch& b, int lo, int hi, const qsearch::SymmetricSearch& cfg) {
  const __m256 vlo = _mm256_set1_ps(static_cast<float>(lo)), vhi = _mm256_set1_ps(static_cast<float>(hi));
  // vmax = mx >= -mn ? mx : mn (min and max are exact in any order).
  __m256 mn = b.x[0], mx = b.x[0];
  for (int i = 1; i < kN; ++i) {
    mn = _mm256_min_ps(mn, b.x[i]);
    mx = _mm256_max_ps(mx, b.x[i]);
  }
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 vmax = _mm256_blendv_ps(mn, mx, _mm256_cmp_ps(mx, _mm256_xor_ps(mn, sign), _CMP_GE_OQ));
  const __m256 zero = _mm256_cmp_ps(_mm256_andnot_ps(sign, vmax), _mm256_set1_ps(kGroupMaxEps), _CMP_LT_OQ);
  const __m256 inv_vmax = _mm256_div_ps(_mm256_set1_ps(1.0f), vmax);

  float targets[qsearch::detail::kMaxCandidates];
  const int nc = qsearch::detail::symmetric_targets(lo, hi, cfg, targets);
  if (nc == 0) return _mm256_setzero_ps();  // as the scalar search: cannot happen
  __m256 has = _mm256_setzero_ps(), slx = _mm256_setzero_ps(), sl2 = _mm256_setzero_ps();
  __m256 is0 = _mm256_setzero_ps(), best_is = _mm256_setzero_ps();
  for (int c = 0; c < nc; ++c) {
    const __m256 is = _mm256_mul_ps(_mm256_set1_ps(targets[c]), inv_vmax);  // is[c] *= inv_vmax
    if (c == 0) is0 = is;
    __m256 a, q;
    score_sym(b, is, vlo, vhi, a, q);
    const __m256 valid = _mm256_cmp_ps(q, _mm256_setzero_ps(), _CMP_GT_OQ);
    const __m256 take = _mm256_and_ps(valid, _mm256_or_ps(_mm256_andnot_ps(has, all_ones()), better_symmetric(a, q, slx, sl2)));
    slx = _mm256_blendv_ps(slx, a, take);
    sl2 = _mm256_blendv_ps(sl2, q, take);
    best_is = _mm256_blendv_ps(best_is, is, take);
    has = _mm256_or_ps(has, take);
  }
  best_is = _mm256_blendv_ps(is0, best_is, has);
  const __m256 active = _mm256_andnot_ps(zero, has);  // lanes that go on to refinement
  __m256 L[kN];
  for (int i = 0; i < kN; ++i) L[i] = Avx2Kernels::round_clamp(_mm256_mul_ps(best_is, b.x[i]), vlo, vhi);

  // Coordinate descent: move one value to the level nearest to it under the scale fitted to
  // all the others, when the least-squares error drops.
  const __m256 vzero = _mm256_setzero_ps();
  for (int pass = 0; pass < cfg.refine_passes; ++pass) {
    __m256 changed = vzero;
    for (int i = 0; i < kN; ++i) {
      const __m256 wi = b.w[i], xi = b.x[i], l = L[i];
      const __m256 wx = _mm256_mul_ps(wi, xi);
      const __m256 slx_o = _mm256_sub_ps(slx, _mm256_mul_ps(wx, l));                   // slx - wi*x*l
      const __m256 sl2_o = _mm256_sub_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(wi, l), l)); // sl2 - wi*l*l
      __m256 ok = _mm256_and_ps(active, _mm256_cmp_ps(wi, vzero, _CMP_GT_OQ));
      ok = _mm256_and_ps(ok, _mm256_cmp_ps(sl2_o, vzero, _CMP_GT_OQ));
      ok = _mm256_and_ps(ok, _mm256_cmp_ps(slx_o, vzero, _CMP_NEQ_UQ));
      if (_mm256_movemask_ps(ok) == 0) continue;
      const __m256 nl = Avx2Kernels::round_clamp(_mm256_div_ps(_mm256_mul_ps(xi, sl2_o), slx_o), vlo, vhi);
      ok = _mm256_and_ps(ok, _mm256_cmp_ps(nl, l, _CMP_NEQ_UQ));
      const __m256 nslx = _mm256_add_ps(slx_o, _mm256_mul_ps(wx, nl));                   // slx_o + wi*x*nl
      const __m256 nsl2 = _mm256_add_ps(sl2_o, _mm256_mul_ps(_mm256_mul_ps(wi, nl), nl)); // sl2_o + wi*nl*nl
      ok = _mm256_and_ps(ok, _mm256_cmp_ps(nsl2, vzero, _CMP_GT_OQ));
      const __m256 take = _mm256_and_ps(ok, better_symmetric(nslx, nsl2, slx, sl2));
      L[i] = _mm256_blendv_ps(l, nl, take);
      slx = _mm256_blendv_ps(slx, nslx, take);
      sl2 = _mm256_blendv_ps(sl2, nsl2, take);
      changed = _mm256_or_ps(changed, take);
    }
    if (_mm256_movemask_ps(changed) == 0) break;
  }
  // One Lloyd step: round everything to the refitted scale, kept when it is better.
  if (cfg.refine_passes > 0) {
    const __m256 ok = _mm256_and_ps(active, _mm256_cmp_ps(slx, vzero, _CMP_NEQ_UQ));
    const __m256 nis = _mm256_div_ps(sl2, slx);
    __m256 nslx, nsl2;
    score_sym(b, nis, vlo, vhi, nslx, nsl2);
    const __m256 take = _mm256_and_ps(_mm256_and_ps(ok, _mm256_cmp_ps(nsl2, vzero, _CMP_GT_OQ)),
                                      better_symmetric(nslx, nsl2, slx, sl2));
    slx = _mm256_blendv_ps(slx, nslx, take);
    sl2 = _mm256_blendv_ps(sl2, nsl2, take);
  }
  // slx / sl2 where refined, 1 / is[0] where no candidate had weight, 0 for all-zero blocks.
  const __m256 d = _mm256_blendv_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), best_is), _mm256_div_ps(slx, sl2), has);
  return _mm256_andnot_ps(zero, d);
}

// requantize_symmetric's error for one decoded scale per lane: sum (w*diff)*diff,
// diff = x - s*l, l = round(x * (s != 0 ? 1/s : 0)).
[[gnu::target("avx2")]] inline __m256 error_sym(const Batch& b, __m256 s, __m256 vlo, __m256 vhi) {
  const __m256 inv = Avx2Kernels::safe_inverse(s);
  __m256 e = _mm256_setzero_ps();
  for (int i = 0; i < kN; ++i) {
    const __m256 l = Avx2Kernels::round_clamp(_mm256_mul_ps(b.x[i], inv), vlo, vhi);
    const __m256 diff = _mm256_sub_ps(b.x[i], _mm256_mul_ps(s, l));
    e = _mm256_add_ps(e, _mm256_mul_ps(_mm256_mul_ps(b.w[i], diff), diff));
  }
  return e;
}

// The stored f16 scale of each lane, h = v == 0 ? 0 : scale_to_f16(v), and its value s (0 for
// h = 0). F16C rounds to nearest even as f32_to_f16 does; as scale_to_f16, a nonzero value
// that rounds to a zero magnitude takes the smallest subnormal of its sign and one that
// rounds to infinity the largest finite value.
[[gnu::target("avx2,f16c")]] inline void scale_to_f16_8(__m256 v, uint16_t* h, float* s) {
  __m128i r = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m128i mag_mask = _mm_set1_epi16(0x7fff), exp_mask = _mm_set1_epi16(0x7c00);
  const __m128i sign = _mm_andnot_si128(mag_mask, r);
  const __m256i nz32 = _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
  const __m128i nz = _mm_packs_epi32(_mm256_castsi256_si128(nz32), _mm256_extracti128_si256(nz32, 1));
  const __m128i under = _mm_and_si128(nz, _mm_cmpeq_epi16(_mm_and_si128(r, mag_mask), _mm_setzero_si128()));
  const __m128i over = _mm_cmpeq_epi16(_mm_and_si128(r, exp_mask), exp_mask);
  r = _mm_blendv_epi8(r, _mm_or_si128(sign, _mm_set1_epi16(1)), under);
  r = _mm_blendv_epi8(r, _mm_or_si128(sign, _mm_set1_epi16(0x7bff)), over);
  r = _mm_and_si128(r, nz);  // v == 0: h = 0 (also drops the sign of -0)
  _mm_storeu_si128(reinterpret_cast<__m128i*>(h), r);
  _mm256_store_ps(s, _mm256_cvtph_ps(r));  // h = 0 decodes to +0
}

// lane_sum (quant_search_kernels.h) of each lane: eight partial sums by element index mod 8,
// combined in the same tree.
[[gnu::target("avx2")]] inline __m256 lane_sum8(const __m256* v) {
  __m256 a[8];
  for (int k = 0; k < 8; ++k) a[k] = _mm256_setzero_ps();
  for (int i = 0; i < kN; i += 8)
    for (int k = 0; k < 8; ++k) a[k] = _mm256_add_ps(a[k], v[i + k]);
  return _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])),
                       _mm256_add_ps(_mm256_add_ps(a[4], a[5]), _mm256_add_ps(a[6], a[7])));
}

// score_affine for one candidate per lane: sums of w*l, (w*l)*l, (w*l)*x with
// l = round(clamp((x - off) * is, 0, nmax)).
[[gnu::target("avx2")]] inline void score_aff(const Batch& b, __m256 off, __m256 is, __m256 vnmax, __m256& sl,
                                              __m256& sl2, __m256& sxl) {
  const __m256 vzero = _mm256_setzero_ps();
  sl = sl2 = sxl = vzero;
  for (int i = 0; i < kN; ++i) {
    const __m256 l = Avx2Kernels::round_clamp(_mm256_mul_ps(_mm256_sub_ps(b.x[i], off), is), vzero, vnmax);
    const __m256 wl = _mm256_mul_ps(b.w[i], l);
    sl = _mm256_add_ps(sl, wl);
    sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(wl, l));
    sxl = _mm256_add_ps(sxl, _mm256_mul_ps(wl, b.x[i]));
  }
}

// affine_solve with a free offset: d, m (only where det > 0) and the score (-1 where the
// levels carry no fit).
[[gnu::target("avx2")]] inline __m256 solve_aff(__m256 sl, __m256 sl2, __m256 sxl, __m256 sw, __m256 swx, __m256& d,
                                                __m256& m) {
  const __m256 vzero = _mm256_setzero_ps();
  const __m256 det = _mm256_sub_ps(_mm256_mul_ps(sw, sl2), _mm256_mul_ps(sl, sl));
  const __m256 okdet = _mm256_cmp_ps(det, vzero, _CMP_GT_OQ);
  const __m256 nd = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sw, sxl), _mm256_mul_ps(swx, sl)), det);
  const __m256 nm = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sl2, swx), _mm256_mul_ps(sl, sxl)), det);
  d = _mm256_blendv_ps(d, nd, okdet);
  m = _mm256_blendv_ps(m, nm, okdet);
  const __m256 ok = _mm256_and_ps(okdet, _mm256_cmp_ps(nd, vzero, _CMP_GT_OQ));
  const __m256 score = _mm256_add_ps(_mm256_mul_ps(nd, sxl), _mm256_mul_ps(nm, swx));
  return _mm256_blendv_ps(_mm256_set1_ps(-1.0f), score, ok);
}

// requantize_affine's error for one (s, mm) per lane: value s*l - mm, l = round((x + mm) / s).
[[gnu::target("avx2")]] inline __m256 error_aff(const Batch& b, __m256 s, __m256 mm, __m256 vnmax) {
  const __m256 inv = Avx2Kernels::safe_inverse(s), vzero = _mm256_setzero_ps();
  __m256 e = vzero;
  for (int i = 0; i < kN; ++i) {
    const __m256 l = Avx2Kernels::round_clamp(_mm256_mul_ps(_mm256_add_ps(b.x[i], mm), inv), vzero, vnmax);
    const __m256 diff = _mm256_sub_ps(_mm256_sub_ps(_mm256_mul_ps(s, l), mm), b.x[i]);
    e = _mm256_add_ps(e, _mm256_mul_ps(_mm256_mul_ps(b.w[i], diff), diff));
  }
  return e;
}

}  // namespace

[[gnu::target("avx2,f16c")]] void encode_symmetric8_avx2(const float* x, const float* w, const float* s2, int lo, int hi,
                                                    const qsearch::SymmetricSearch& cfg, F16Candidates f16c,
                                                    uint16_t* d16, int8_t* L) {
  Batch b;
  load(x, w, s2, b);
  const __m256 vlo = _mm256_set1_ps(static_cast<float>(lo)), vhi = _mm256_set1_ps(static_cast<float>(hi));
  alignas(32) float d[8], s[3][8];
  _mm256_store_ps(d, fit_symmetric8(b, lo, hi, cfg));
  // The stored scale: the f16 rounding of d and its two f16 neighbours (a neighbour that
  // leaves the finite range is skipped: scale 0 marks it).
  uint16_t h[3][8];
  const int ncand = f16c == F16Candidates::kNeighbours ? 3 : 1;
  scale_to_f16_8(_mm256_load_ps(d), h[0], s[0]);
  for (int j = 0; ncand > 1 && j < 8; ++j) {
    h[1][j] = h[0][j] == 0 ? 0 : f16_step(h[0][j], -1);
    h[2][j] = h[0][j] == 0 ? 0 : f16_step(h[0][j], 1);
    for (int k = 1; k < 3; ++k) s[k][j] = h[k][j] == 0 ? 0.0f : f16_to_f32(h[k][j]);
  }
  __m256 best_k = _mm256_setzero_ps();
  __m256 best_e = ncand > 1 ? error_sym(b, _mm256_load_ps(s[0]), vlo, vhi) : _mm256_setzero_ps();
  for (int k = 1; k < ncand; ++k) {
    const __m256 sk = _mm256_load_ps(s[k]);
    const __m256 e = error_sym(b, sk, vlo, vhi);
    const __m256 take = _mm256_and_ps(_mm256_cmp_ps(sk, _mm256_setzero_ps(), _CMP_NEQ_OQ), _mm256_cmp_ps(e, best_e, _CMP_LT_OQ));
    best_e = _mm256_blendv_ps(best_e, e, take);
    best_k = _mm256_blendv_ps(best_k, _mm256_set1_ps(static_cast<float>(k)), take);
  }
  alignas(32) float bk[8];
  _mm256_store_ps(bk, best_k);
  for (int j = 0; j < 8; ++j) {
    const int k = static_cast<int>(bk[j]);
    d16[j] = h[k][j];
    const float sj = s[k][j];
    Avx2Kernels::levels_symmetric(x + kN * j, kN, static_cast<float>(lo), static_cast<float>(hi),
                                  sj != 0.0f ? 1.0f / sj : 0.0f, L + kN * j);
  }
}

[[gnu::target("avx2,f16c")]] bool encode_affine8_avx2(const float* x, const float* w, const float* s2, int nmax,
                                                 const qsearch::AffineSearch& cfg, F16Candidates f16c,
                                                 uint16_t* d16, uint16_t* m16, uint8_t* L) {
  Batch b;
  load(x, w, s2, b);
  const float fnmax = static_cast<float>(nmax);
  const __m256 vnmax = _mm256_set1_ps(fnmax), vzero = _mm256_setzero_ps();
  __m256 mn = b.x[0], mx = b.x[0], wx[kN];
  for (int i = 1; i < kN; ++i) {
    mn = _mm256_min_ps(mn, b.x[i]);
    mx = _mm256_max_ps(mx, b.x[i]);
  }
  for (int i = 0; i < kN; ++i) wx[i] = _mm256_mul_ps(b.w[i], b.x[i]);
  const __m256 sw = lane_sum8(b.w), swx = lane_sum8(wx);
  const __m256 varies = _mm256_cmp_ps(mx, mn, _CMP_GT_OQ);  // !(mx > mn): constant block
  const __m256 range = _mm256_sub_ps(mx, mn);

  // Candidates: the min/max rule, then (nmax + rmin + rdelta*k) / range, offset by mn. The
  // scalar search drops a candidate that is not positive; the batch does not, so it hands
  // such blocks back.
  float num[qsearch::detail::kMaxCandidates];
  int nc = 0;
  num[nc++] = fnmax;
  for (int k = 0; k <= cfg.nstep && nc < qsearch::detail::kMaxCandidates; ++k)
    num[nc++] = fnmax + cfg.rmin + cfg.rdelta * static_cast<float>(k);
  __m256 has = vzero, bsl = vzero, bsl2 = vzero, bsxl = vzero, bnum = vzero, bden = _mm256_set1_ps(1.0f);
  __m256 usable = varies;
  for (int c = 0; c < nc; ++c) {
    const __m256 is = _mm256_div_ps(_mm256_set1_ps(num[c]), range);
    if (c > 0) usable = _mm256_and_ps(usable, _mm256_cmp_ps(is, vzero, _CMP_GT_OQ));
    __m256 sl, sl2, sxl;
    score_aff(b, mn, is, vnmax, sl, sl2, sxl);
    // affine_score with a free offset: valid when det > 0 and dnum > 0.
    const __m256 det = _mm256_sub_ps(_mm256_mul_ps(sw, sl2), _mm256_mul_ps(sl, sl));
    const __m256 dnum = _mm256_sub_ps(_mm256_mul_ps(sw, sxl), _mm256_mul_ps(swx, sl));
    const __m256 mnum = _mm256_sub_ps(_mm256_mul_ps(sl2, swx), _mm256_mul_ps(sl, sxl));
    const __m256 valid = _mm256_and_ps(_mm256_cmp_ps(det, vzero, _CMP_GT_OQ), _mm256_cmp_ps(dnum, vzero, _CMP_GT_OQ));
    const __m256 cnum = _mm256_add_ps(_mm256_mul_ps(dnum, sxl), _mm256_mul_ps(mnum, swx));
    const __m256 better = _mm256_cmp_ps(_mm256_mul_ps(cnum, bden), _mm256_mul_ps(bnum, det), _CMP_GT_OQ);
    const __m256 take = _mm256_and_ps(valid, _mm256_or_ps(_mm256_andnot_ps(has, all_ones()), better));
    bsl = _mm256_blendv_ps(bsl, sl, take);
    bsl2 = _mm256_blendv_ps(bsl2, sl2, take);
    bsxl = _mm256_blendv_ps(bsxl, sxl, take);
    bnum = _mm256_blendv_ps(bnum, cnum, take);
    bden = _mm256_blendv_ps(bden, det, take);
    has = _mm256_or_ps(has, take);
  }
  if (_mm256_movemask_ps(usable) != _mm256_movemask_ps(varies)) return false;

  __m256 d = vzero, m = vzero;
  __m256 best_score = solve_aff(bsl, bsl2, bsxl, sw, swx, d, m);
  // Alternate "round to the fitted (d, m)" and "refit": a lane keeps a round only when its
  // score rises (the scalar loop stops there; repeating the failed round changes nothing).
  const __m256 active = _mm256_and_ps(varies, has);
  for (int a = 0; a < cfg.alternations; ++a) {
    const __m256 nis = _mm256_div_ps(_mm256_set1_ps(1.0f), d);
    __m256 s1, s2, s3;
    score_aff(b, m, nis, vnmax, s1, s2, s3);
    __m256 nd = vzero, nm = vzero;
    const __m256 score = solve_aff(s1, s2, s3, sw, swx, nd, nm);
    const __m256 take = _mm256_and_ps(active, _mm256_cmp_ps(score, best_score, _CMP_GT_OQ));
    if (_mm256_movemask_ps(take) == 0) break;
    best_score = _mm256_blendv_ps(best_score, score, take);
    d = _mm256_blendv_ps(d, nd, take);
    m = _mm256_blendv_ps(m, nm, take);
  }
  // Constant blocks: {0, mn}; blocks without a usable candidate: the min/max rule.
  d = _mm256_blendv_ps(_mm256_blendv_ps(_mm256_div_ps(range, vnmax), d, has), vzero, _mm256_andnot_ps(varies, all_ones()));
  m = _mm256_blendv_ps(mn, m, active);

  // The stored (d, m): their f16 roundings, then (kNeighbours) the 3 x 3 grid of f16
  // neighbours in the scalar order (dd = -1..1, dm = -1..1) or (kMinMaxRule) the min/max
  // rule's point; strictly better errors win.
  alignas(32) float df[8], mf[8], s[9][8], mm[9][8];
  _mm256_store_ps(df, d);
  _mm256_store_ps(mf, m);
  // Where the offset is the block minimum itself, take it from the scalar reduction: with
  // both +0 and -0 in a block, which zero is "the minimum" depends on the order of compares.
  const int fitted = _mm256_movemask_ps(active);
  for (int j = 0; j < 8; ++j)
    if (!((fitted >> j) & 1)) {
      float lo, hi;
      qsearch::detail::lane_min_max(x + kN * j, kN, lo, hi);
      mf[j] = lo;
    }
  uint16_t hd[9][8], hm[9][8];
  bool ok[9][8];
  const int ncand = f16c == F16Candidates::kNeighbours ? 9 : f16c == F16Candidates::kMinMaxRule ? 2 : 1;
  // Center (d, m) and, for kMinMaxRule, ((mx - mn) / nmax, mn + 0) (minmax_rule_f16: the
  // +0 makes a -0 minimum +0, so the order of the min reduction cannot show), in F16C.
  scale_to_f16_8(_mm256_load_ps(df), hd[0], s[0]);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(hm[0]),
                   _mm256_cvtps_ph(_mm256_load_ps(mf), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  if (f16c == F16Candidates::kMinMaxRule) {
    const __m256 rd = _mm256_and_ps(varies, _mm256_div_ps(range, vnmax));
    scale_to_f16_8(rd, hd[1], s[1]);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(hm[1]), _mm256_cvtps_ph(_mm256_add_ps(mn, vzero), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (int j = 0; j < 8; ++j) {
    const uint16_t dc = hd[0][j], mc = hm[0][j];
    int k = 1;
    ok[0][j] = true;
    if (f16c == F16Candidates::kMinMaxRule) {
      ok[k][j] = dc != 0 && hd[k][j] != 0;
      ++k;
    } else if (f16c == F16Candidates::kNeighbours) {
      for (int dd = -1; dd <= 1; ++dd)
        for (int dm = -1; dm <= 1; ++dm) {
          if (dd == 0 && dm == 0) continue;
          hd[k][j] = dd == 0 ? dc : f16_step(dc, dd);
          hm[k][j] = offset_step(mc, dm);
          ok[k][j] = dc != 0 && hd[k][j] != 0 && (dm == 0 || hm[k][j] != 0);
          ++k;
        }
    }
    for (k = 0; f16c == F16Candidates::kNeighbours && k < ncand; ++k) {
      s[k][j] = f16_to_f32(hd[k][j]);
      mm[k][j] = -f16_to_f32(hm[k][j]);
    }
  }
  for (int k = 0; f16c != F16Candidates::kNeighbours && k < ncand; ++k) {  // the same, in F16C
    const __m256 sv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hd[k])));
    const __m256 mv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hm[k])));
    _mm256_store_ps(s[k], sv);
    _mm256_store_ps(mm[k], _mm256_xor_ps(mv, _mm256_set1_ps(-0.0f)));
  }
  __m256 best_e = ncand > 1 ? error_aff(b, _mm256_load_ps(s[0]), _mm256_load_ps(mm[0]), vnmax) : vzero;
  __m256 best_k = vzero;
  for (int k = 1; k < ncand; ++k) {
    alignas(32) float okf[8];
    for (int j = 0; j < 8; ++j) okf[j] = ok[k][j] ? 1.0f : 0.0f;
    const __m256 valid = _mm256_cmp_ps(_mm256_load_ps(okf), vzero, _CMP_NEQ_OQ);
    if (_mm256_movemask_ps(valid) == 0) continue;
    const __m256 e = error_aff(b, _mm256_load_ps(s[k]), _mm256_load_ps(mm[k]), vnmax);
    const __m256 take = _mm256_and_ps(valid, _mm256_cmp_ps(e, best_e, _CMP_LT_OQ));
    best_e = _mm256_blendv_ps(best_e, e, take);
    best_k = _mm256_blendv_ps(best_k, _mm256_set1_ps(static_cast<float>(k)), take);
  }
  alignas(32) float bk[8];
  _mm256_store_ps(bk, best_k);
  for (int j = 0; j < 8; ++j) {
    const int k = static_cast<int>(bk[j]);
    d16[j] = hd[k][j];
    m16[j] = hm[k][j];
    const float sj = s[k][j];
    Avx2Kernels::levels_affine(x + kN * j, kN, fnmax, -mm[k][j], sj != 0.0f ? 1.0f / sj : 0.0f, L + kN * j);
  }
  return true;
}

}  // namespace smolq::kernels::legacy

#else

namespace smolq::kernels::legacy {
void encode_symmetric8_avx2(const float*, const float*, const float*, int, int, const qsearch::SymmetricSearch&,
                            F16Candidates, uint16_t*, int8_t*) {}
bool encode_affine8_avx2(const float*, const float*, const float*, int, const qsearch::AffineSearch&, F16Candidates,
                         uint16_t*, uint16_t*, uint8_t*) {
  return false;
}
}  // namespace smolq::kernels::legacy

#endif
