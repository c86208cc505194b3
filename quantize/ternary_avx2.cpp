// Q2_0's block search, 16 blocks per call (two AVX2 registers of eight lanes):
// quantize/q2_0_lanes.h's templates compiled for AVX2 and FMA (the whole file under the target pragma,
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
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

#include "quantize/q2_0_lanes.h"

namespace smolq::kernels::q2_0 {
namespace {

// One operation of q2_0_lanes.h's Kernels on a register of lanes.
struct Avx2V {
  using T = __m256;
  static constexpr int kWidth = 8;
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static T set1(float v) { return _mm256_set1_ps(v); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T div(T a, T b) { return _mm256_div_ps(a, b); }
  static T sqrt(T a) { return _mm256_sqrt_ps(a); }
  static T floor(T a) { return _mm256_floor_ps(a); }
  static T min(T a, T b) { return _mm256_min_ps(a, b); }
  static T max(T a, T b) { return _mm256_max_ps(a, b); }
  static T abs(T a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static T select_gt(T a, T b, T yes, T no) { return _mm256_blendv_ps(no, yes, _mm256_cmp_ps(a, b, _CMP_GT_OQ)); }
  static T sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static T fmadd(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  using M = __m256;
  static M gt(T a, T b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static M lt(T a, T b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static M neq(T a, T b) { return _mm256_cmp_ps(a, b, _CMP_NEQ_UQ); }
  static M mand(M a, M b) { return _mm256_and_ps(a, b); }
  static T blend(M m, T yes, T no) { return _mm256_blendv_ps(no, yes, m); }
  static bool any(M m) { return _mm256_movemask_ps(m) != 0; }
  static void store_int(int32_t* p, T v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_cvttps_epi32(v));
  }
};

}  // namespace

void quantize_avx2(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                  std::span<const float> imatrix) {
  quantize_t<Kernels<Avx2V, 4>>(src, dst, n_per_row, imatrix);
}

}  // namespace smolq::kernels::q2_0

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
