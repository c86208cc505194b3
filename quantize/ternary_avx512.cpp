// Q2_0's block search, 32 blocks per call (two AVX-512 registers of sixteen lanes):
// quantize/q2_0_lanes.h's templates compiled for AVX-512F (the whole file under the target pragma,
// as in eval/matmul_avx512.cpp); quantize_q2_0 (ternary.cpp) selects it when the CPU has it.
// Same bytes as the scalar reference.
#include <immintrin.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>

#include "quantize/blocks.h"
#include "quantize/iq_lattice.h"  // q2_0_lanes.h's includes, outside the target region

#if defined(__GNUC__) && defined(__x86_64__)
#if defined(__clang__)  // clang has no GCC target pragma: the same target through its own
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
#endif
// GCC 12's AVX-512 headers pass _mm512_undefined_ps() through, which its own uninitialized-use
// analysis then reports: not a real read.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "quantize/q2_0_lanes.h"

namespace smolq::kernels::q2_0 {
namespace {

// One operation of q2_0_lanes.h's Kernels on a register of lanes.
struct Avx512V {
  using T = __m512;
  static constexpr int kWidth = 16;
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T set1(float v) { return _mm512_set1_ps(v); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T div(T a, T b) { return _mm512_div_ps(a, b); }
  static T sqrt(T a) { return _mm512_sqrt_ps(a); }
  static T floor(T a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static T min(T a, T b) { return _mm512_min_ps(a, b); }
  static T max(T a, T b) { return _mm512_max_ps(a, b); }
  static T abs(T a) { return _mm512_abs_ps(a); }
  static T select_gt(T a, T b, T yes, T no) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), no, yes);
  }
  static T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static T fmadd(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  using M = __mmask16;
  static M gt(T a, T b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static M lt(T a, T b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M neq(T a, T b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ); }
  static M mand(M a, M b) { return static_cast<M>(a & b); }
  static T blend(M m, T yes, T no) { return _mm512_mask_blend_ps(m, no, yes); }
  static bool any(M m) { return m != 0; }
  static void store_int(int32_t* p, T v) { _mm512_storeu_si512(p, _mm512_cvttps_epi32(v)); }
};

}  // namespace

void quantize_avx512(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                     std::span<const float> imatrix) {
  quantize_t<Kernels<Avx512V, 2>>(src, dst, n_per_row, imatrix);
}

}  // namespace smolq::kernels::q2_0

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
