// Internal to the quant searches (quant_search.cpp, quant_search_batch.cpp): the scoring
// kernel sets, the reductions every search shares, and the AVX2 path that runs the
// symmetric engine's per-sub-block steps on eight sub-blocks at once. Not part of the
// quantize/ interface; include quant_search.h instead.
//
// Both kernel sets compute the same floats: every float operation of ScalarKernels has a
// counterpart in Avx2Kernels at the same position of the same lane, so the templates in
// quant_search.cpp make identical choices with either.
#pragma once
#include <algorithm>
#include <cstdint>

#include "quantize/quant_search.h"

#if defined(__x86_64__) || defined(__i386__)
#define SMOLQ_QSEARCH_X86 1
#include <immintrin.h>
#endif

namespace smolq::qsearch::detail {

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
// equal to the scalar loop's. The compiler cannot contract mul+add into FMA here because the
// target enables AVX2 only, not FMA (GCC's C++ default is -ffp-contract=fast: files whose
// target has FMA turn it off explicitly, CMakeLists.txt).
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
using Avx2Kernels = ScalarKernels;  // never selected: cpu::has_avx2() is false off x86
#endif

// A candidate must beat the best so far by this factor in the symmetric ranking (see
// better_symmetric in quant_search.cpp).
constexpr float kTieMargin = 1.0f + 1e-5f;

// The level targets of a symmetric search in candidate order (quant_search.cpp).
int symmetric_targets(int lo, int hi, const SymmetricSearch& cfg, float* targets);

inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

#ifdef SMOLQ_QSEARCH_X86
// out[i] lane r = src[r * stride + i] for i, r < 8.
[[gnu::target("avx2")]] inline void transpose8(const float* src, int stride, __m256* out) {
  __m256 r[8], t[8], s[8];
  for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(src + k * stride);
  for (int k = 0; k < 8; k += 2) {
    t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
    t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
  }
  for (int k = 0; k < 8; k += 4) {
    s[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
    s[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xee);
    s[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
    s[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xee);
  }
  for (int k = 0; k < 4; ++k) {
    out[k] = _mm256_permute2f128_ps(s[k], s[k + 4], 0x20);
    out[k + 4] = _mm256_permute2f128_ps(s[k], s[k + 4], 0x31);
  }
}


// ---- eight sub-blocks at once (AVX2; quant_search_batch.cpp) ---------------------------------
// With 16-element sub-blocks (Q3_K, Q6_K) one candidate pass of Avx2Kernels fills only 6 or 3
// of its 8 lanes, and the scalar work around it (min/max, candidate set-up, picking the
// winner) costs as much again. The batch functions run steps 1 and 3 of the symmetric
// engine on eight sub-blocks at once, one per lane: each lane performs fit_symmetric_t's /
// pick_symmetric's operations for its own sub-block in their order (elements summed in
// order, the same products, comparisons and tie rules), so every lane's result is the
// scalar one.

constexpr int kBatchSub = 16;  // elements per sub-block of the batched path

// Eight sub-blocks of 16, transposed: x[i] lane j = element i of sub-block j.
struct SubBatch {
  __m256 x[kBatchSub], w[kBatchSub];
};

// Whether a configuration runs on the batched path (16-element sub-blocks, whole batches of
// eight, no refinement passes in the element search).
inline bool batchable(const SymmetricSuperConfig& c) {
  return c.sub == kBatchSub && c.nsub % 8 == 0 && c.nsub <= 16 && c.element.refine_passes == 0;
}
// x, w: eight consecutive sub-blocks.
void load_batch(const float* x, const float* w, SubBatch& b);
// fit_symmetric_t (refine_passes == 0) for the eight sub-blocks of b; x and L point at the
// first sub-block's values and levels. Writes the eight scales.
void fit_symmetric_batch(const SubBatch& b, const float* x, int lo, int hi, const SymmetricSearch& cfg, float* scale,
                         int8_t* L);
// pick_symmetric for the eight sub-blocks of b (x, center, sc, L at the first one); writes
// each sub-block's least error to err (the caller sums them in sub-block order).
void pick_symmetric_batch(const SubBatch& b, const float* x, const SymmetricSuperConfig& c, float D,
                          const int* center, int8_t* sc, int8_t* L, float* err);
#endif

}  // namespace smolq::qsearch::detail
