#include "formats/half.h"

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
void f32_to_bf16_row(std::span<const float> src, std::span<uint16_t> dst) {
  assert(src.size() == dst.size());
  for (size_t i = 0; i < src.size(); ++i) dst[i] = f32_to_bf16(src[i]);
}
void bf16_to_f32_row(std::span<const uint16_t> src, std::span<float> dst) {
  assert(src.size() == dst.size());
  for (size_t i = 0; i < src.size(); ++i) dst[i] = bf16_to_f32(src[i]);
}

}  // namespace smolq
