// Q8_0: 32 weights, one f16 scale, w = d * q with q in [-127, 127].
// The encoding is ggml's reference rule: d = amax / 127, q = round(x / d). It ignores
// importance weights (as ggml does): with 8 bits the rounding error is already tiny and
// round-to-nearest (ties away from zero, as ggml) is is optimal per element for any fixed d.
#include <cassert>
#include <cmath>
#include <cstring>

#include "formats/cpu_features.h"
#include "formats/half.h"
#include "quantize/blocks.h"
#include "quantize/kernels.h"
#include "quantize/quant_search.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace smolq::kernels {

void quantize_q8_0_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                       std::span<const float>) {
  assert(n_per_row % kQK == 0 && src.size() % kQK == 0);
  const size_t nb = src.size() / kQK;
  assert(dst.size() == nb * sizeof(BlockQ8_0));
  for (size_t b = 0; b < nb; ++b) {
    const float* x = src.data() + b * kQK;
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ8_0 blk;
    blk.d = f32_to_f16(d);
    for (int j = 0; j < kQK; ++j) blk.qs[j] = static_cast<int8_t>(std::round(x[j] * id));
    std::memcpy(dst.data() + b * sizeof(BlockQ8_0), &blk, sizeof blk);
  }
}

#if defined(__x86_64__) || defined(__i386__)
namespace {
// The reference per block with eight lanes: amax by max (exact in any order), d = amax/127,
// id = 1/d (0 for d = 0), and std::round's "half away from zero" as truncation plus a step
// of one where the (exact) remainder is at least one half.
[[gnu::target("avx2")]] void quantize_q8_0_avx2(const float* x, size_t nb, std::byte* dst) {
  const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  for (size_t b = 0; b < nb; ++b, x += kQK) {
    __m256 v[4], m = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(x + 8 * k);
      m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    const float d = _mm_cvtss_f32(m4) / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    BlockQ8_0 blk;
    blk.d = f32_to_f16(d);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) {
      const __m256 t = _mm256_mul_ps(v[k], id);
      const __m256 tr = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __m256 up = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(t, tr)), half, _CMP_GE_OQ);
      const __m256 step = _mm256_and_ps(up, _mm256_or_ps(one, _mm256_and_ps(sign, t)));
      q[k] = _mm256_cvtps_epi32(_mm256_add_ps(tr, step));
    }
    // int32 -> int8 in element order (packs interleave 128-bit halves; the permute undoes it).
    const __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
    const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(blk.qs), p8);
    std::memcpy(dst + b * sizeof(BlockQ8_0), &blk, sizeof blk);
  }
}
}  // namespace
#endif

void quantize_q8_0(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix) {
#if defined(__x86_64__) || defined(__i386__)
  if (cpu::has_avx2()) {
    assert(n_per_row % kQK == 0 && src.size() % kQK == 0);
    assert(dst.size() == src.size() / kQK * sizeof(BlockQ8_0));
    quantize_q8_0_avx2(src.data(), src.size() / kQK, dst.data());
    return;
  }
#endif
  quantize_q8_0_ref(src, dst, n_per_row, imatrix);
}

void dequantize_q8_0(std::span<const std::byte> src, std::span<float> dst) {
  assert(dst.size() % kQK == 0);
  const size_t nb = dst.size() / kQK;
  assert(src.size() >= nb * sizeof(BlockQ8_0));
  for (size_t b = 0; b < nb; ++b) {
    BlockQ8_0 blk;
    std::memcpy(&blk, src.data() + b * sizeof(BlockQ8_0), sizeof blk);
    const float d = f16_to_f32(blk.d);
    for (int j = 0; j < kQK; ++j) dst[b * kQK + j] = static_cast<float>(blk.qs[j]) * d;
  }
}

}  // namespace smolq::kernels
