// The batched AVX2 form of the symmetric engine's per-sub-block steps (see
// quant_search_kernels.h): fit_symmetric_t and pick_symmetric for eight 16-element
// sub-blocks at once, one per lane, with the scalar search's operations and tie rules.
#include "quantize/quant_search_kernels.h"

#ifdef SMOLQ_QSEARCH_X86
#include <cstring>

namespace smolq::qsearch::detail {

[[gnu::target("avx2")]] void load_batch(const float* x, const float* w, SubBatch& b) {
  for (int h = 0; h < kBatchSub; h += 8) {
    transpose8(x + h, kBatchSub, b.x + h);
    transpose8(w + h, kBatchSub, b.w + h);
  }
}

// fit_symmetric_t for the eight sub-blocks of b (x, L: the first one's values and levels),
// for searches without refinement passes. Writes the eight scales.
[[gnu::target("avx2")]] void fit_symmetric_batch(const SubBatch& b, const float* x, int lo, int hi,
                                                 const SymmetricSearch& cfg, float* scale, int8_t* L) {
  const __m256 vlo = _mm256_set1_ps(static_cast<float>(lo)), vhi = _mm256_set1_ps(static_cast<float>(hi));
  // Largest magnitude: min and max are exact whatever the order (zeros of either sign only
  // reach the all-zero test below).
  __m256 mn = b.x[0], mx = b.x[0];
  for (int i = 1; i < kBatchSub; ++i) {
    mn = _mm256_min_ps(mn, b.x[i]);
    mx = _mm256_max_ps(mx, b.x[i]);
  }
  const __m256 neg_mn = _mm256_sub_ps(_mm256_setzero_ps(), mn);
  const __m256 vmax = _mm256_blendv_ps(mn, mx, _mm256_cmp_ps(mx, neg_mn, _CMP_GE_OQ));
  const __m256 absmax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), vmax);
  const __m256 zero = _mm256_cmp_ps(absmax, _mm256_set1_ps(kGroupMaxEps), _CMP_LT_OQ);
  const __m256 inv_vmax = _mm256_div_ps(_mm256_set1_ps(1.0f), vmax);

  float targets[kMaxCandidates];
  const int nc = symmetric_targets(lo, hi, cfg, targets);
  __m256 has = _mm256_setzero_ps(), bslx = _mm256_setzero_ps(), bsl2 = _mm256_setzero_ps();
  __m256 is0 = _mm256_setzero_ps(), best_is = _mm256_setzero_ps();
  const __m256 tie = _mm256_set1_ps(kTieMargin);
  for (int c = 0; c < nc; ++c) {
    const __m256 is = _mm256_mul_ps(_mm256_set1_ps(targets[c]), inv_vmax);
    if (c == 0) is0 = is;
    __m256 a = _mm256_setzero_ps(), q = _mm256_setzero_ps();
    for (int i = 0; i < kBatchSub; ++i) {
      const __m256 l = Avx2Kernels::round_clamp(_mm256_mul_ps(is, b.x[i]), vlo, vhi);
      const __m256 wl = _mm256_mul_ps(b.w[i], l);
      a = _mm256_add_ps(a, _mm256_mul_ps(wl, b.x[i]));
      q = _mm256_add_ps(q, _mm256_mul_ps(wl, l));
    }
    // better_symmetric(a, q, bslx, bsl2), taken when valid (q > 0) and first or better.
    const __m256 lhs = _mm256_mul_ps(_mm256_mul_ps(a, a), bsl2);
    const __m256 rhs = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(tie, bslx), bslx), q);
    const __m256 better = _mm256_cmp_ps(lhs, rhs, _CMP_GT_OQ);
    const __m256 valid = _mm256_cmp_ps(q, _mm256_setzero_ps(), _CMP_GT_OQ);
    const __m256 take = _mm256_and_ps(valid, _mm256_or_ps(better, _mm256_andnot_ps(has, _mm256_castsi256_ps(_mm256_set1_epi32(-1)))));
    bslx = _mm256_blendv_ps(bslx, a, take);
    bsl2 = _mm256_blendv_ps(bsl2, q, take);
    best_is = _mm256_blendv_ps(best_is, is, take);
    has = _mm256_or_ps(has, take);
  }
  // No usable candidate (all weights zero): the first candidate's levels and scale 1/is.
  best_is = _mm256_blendv_ps(is0, best_is, has);
  __m256 sc = _mm256_blendv_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), best_is), _mm256_div_ps(bslx, bsl2), has);
  if (nc == 0) sc = _mm256_setzero_ps();  // as fit_symmetric_t: cannot happen, stays explicit
  sc = _mm256_andnot_ps(zero, sc);
  alignas(32) float bis[8];
  _mm256_store_ps(bis, best_is);
  _mm256_storeu_ps(scale, sc);
  const int zmask = _mm256_movemask_ps(zero);
  for (int j = 0; j < 8; ++j) {
    int8_t* Lj = L + j * kBatchSub;
    if (nc == 0 || ((zmask >> j) & 1)) std::memset(Lj, 0, kBatchSub);
    else Avx2Kernels::levels_symmetric(x + j * kBatchSub, kBatchSub, static_cast<float>(lo), static_cast<float>(hi), bis[j], Lj);
  }
}

// pick_symmetric for the eight sub-blocks of b (x, sc, L at the first one); writes each
// sub-block's least error to err (the caller sums them in sub-block order).
[[gnu::target("avx2")]] void pick_symmetric_batch(const SubBatch& b, const float* x, const SymmetricSuperConfig& c,
                                                  float D, const int* center, int8_t* sc, int8_t* L, float* err) {
  const __m256 vlo = _mm256_set1_ps(static_cast<float>(c.lo)), vhi = _mm256_set1_ps(static_cast<float>(c.hi));
  alignas(32) int a0[8], a1[8];
  for (int j = 0; j < 8; ++j) {
    a0[j] = clamp_int(center[j] - c.radius, c.slo, c.shi);
    a1[j] = clamp_int(center[j] + c.radius, c.slo, c.shi);
  }
  const __m256i va0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(a0));
  const __m256i va1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(a1));
  const __m256 vD = _mm256_set1_ps(D);
  __m256 best_e = _mm256_setzero_ps(), best_s = _mm256_setzero_ps();
  __m256i best_a = va0;
  for (int k = 0; k <= 2 * c.radius && k < kMaxCandidates; ++k) {
    const __m256i a = _mm256_add_epi32(va0, _mm256_set1_epi32(k));
    const __m256 s = _mm256_mul_ps(vD, _mm256_cvtepi32_ps(a));  // the decoder's d*sc
    const __m256 inv = Avx2Kernels::safe_inverse(s);
    __m256 e = _mm256_setzero_ps();
    for (int i = 0; i < kBatchSub; ++i) {
      const __m256 l = Avx2Kernels::round_clamp(_mm256_mul_ps(b.x[i], inv), vlo, vhi);
      const __m256 diff = _mm256_sub_ps(b.x[i], _mm256_mul_ps(s, l));
      e = _mm256_add_ps(e, _mm256_mul_ps(_mm256_mul_ps(b.w[i], diff), diff));
    }
    if (k == 0) {  // the range always holds a0
      best_e = e;
      best_s = s;
      continue;
    }
    // Candidates past a1 do not exist; among the rest the first strict minimum wins.
    const __m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_add_epi32(va1, _mm256_set1_epi32(1)), a));
    const __m256 take = _mm256_and_ps(valid, _mm256_cmp_ps(e, best_e, _CMP_LT_OQ));
    best_e = _mm256_blendv_ps(best_e, e, take);
    best_s = _mm256_blendv_ps(best_s, s, take);
    best_a = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(best_a), _mm256_castsi256_ps(a), take));
  }
  alignas(32) float bs[8];
  alignas(32) int ba[8];
  _mm256_store_ps(bs, best_s);
  _mm256_storeu_ps(err, best_e);
  _mm256_store_si256(reinterpret_cast<__m256i*>(ba), best_a);
  for (int j = 0; j < 8; ++j) {
    sc[j] = static_cast<int8_t>(ba[j]);
    Avx2Kernels::levels_symmetric(x + j * kBatchSub, kBatchSub, static_cast<float>(c.lo), static_cast<float>(c.hi),
                                  bs[j] != 0.0f ? 1.0f / bs[j] : 0.0f, L + j * kBatchSub);
  }
}

}  // namespace smolq::qsearch::detail

#endif
