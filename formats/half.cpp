#include "formats/half.h"

#include "formats/cpu_features.h"

#include <cstddef>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <cassert>

namespace smolq {

uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) {  // NaN: keep the top mantissa bits, force quiet.
    return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to Inf
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero) in half: value / 2^-24, rounded to nearest even.
    // abs < 2^-14. Shift the 24-bit significand into place.
    if (abs < 0x33000000u) return sign;  // < 2^-25: rounds to zero (ties at 2^-25 -> 0, even)
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exp;  // exp in [102, 112] -> shift in [14, 24]
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  // Normal: rebias exponent (127 -> 15) and round the 13 dropped mantissa bits.
  uint32_t h = ((abs >> 13) - (112u << 10));
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // carry may roll into exponent: fine
  return static_cast<uint16_t>(sign | h);
}

void f32_to_f16_row(std::span<const float> src, std::span<uint16_t> dst) {
  assert(src.size() == dst.size());
  for (size_t i = 0; i < src.size(); ++i) dst[i] = f32_to_f16(src[i]);
}
void f16_to_f32_row(std::span<const uint16_t> src, std::span<float> dst) {
  assert(src.size() == dst.size());
  for (size_t i = 0; i < src.size(); ++i) dst[i] = f16_to_f32(src[i]);
}
#if defined(__x86_64__) || defined(__i386__)
namespace {
// Eight values per step with vcvtph2ps (exact for every finite value, infinities and
// subnormals); a group holding a NaN goes through the scalar conversion, which keeps
// signalling NaNs' bits as they are.
[[gnu::target("avx2,f16c")]] void f16_bytes_to_f32_f16c(const std::byte* src, float* dst, size_t n) {
  const __m128i exp = _mm_set1_epi16(0x7c00), mag = _mm_set1_epi16(0x7fff);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    // NaN: magnitude above 0x7c00 (signed compare is fine: magnitudes are < 0x8000).
    if (_mm_movemask_epi8(_mm_cmpgt_epi16(_mm_and_si128(h, mag), exp)) != 0) {
      for (size_t k = i; k < i + 8; ++k) {
        uint16_t v;
        std::memcpy(&v, src + 2 * k, 2);
        dst[k] = f16_to_f32(v);
      }
      continue;
    }
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, src + 2 * i, 2);
    dst[i] = f16_to_f32(v);
  }
}
}  // namespace
#endif

void f16_bytes_to_f32(const std::byte* src, std::span<float> dst) {
#if defined(__x86_64__) || defined(__i386__)
  if (cpu::has_avx2()) {  // x86-64-v3: AVX2 comes with F16C
    f16_bytes_to_f32_f16c(src, dst.data(), dst.size());
    return;
  }
#endif
  for (size_t i = 0; i < dst.size(); ++i) {
    uint16_t v;
    std::memcpy(&v, src + 2 * i, 2);
    dst[i] = f16_to_f32(v);
  }
}

void f32_to_bf16_row(std::span<const float> src, std::span<uint16_t> dst) {
  assert(src.size() == dst.size());
  for (size_t i = 0; i < src.size(); ++i) dst[i] = f32_to_bf16(src[i]);
}
void bf16_to_f32_row(std::span<const uint16_t> src, std::span<float> dst) {
  assert(src.size() == dst.size());
  for (size_t i = 0; i < src.size(); ++i) dst[i] = bf16_to_f32(src[i]);
}

}  // namespace smolq
