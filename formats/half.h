// IEEE binary16 and bfloat16 conversions, round-to-nearest-even, with correct NaN, Inf
// and subnormal handling. Scalar and exact: the block formats store their scales this way,
// so these must match ggml bit for bit.
#pragma once
#include <cstdint>
#include <cstring>
#include <span>

namespace smolq {

inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bits_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// binary16 -> float: exact (every half value is representable as a float).
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13));  // Inf / NaN
  if (exp == 0) {
    if (mant == 0) return bits_f32(sign);  // signed zero
    // Subnormal: value = mant * 2^-24, exact in float.
    float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

// float -> binary16 with round-to-nearest-even; overflow gives Inf; NaN stays NaN (quiet).
uint16_t f32_to_f16(float f);

// bfloat16 is the top half of a float.
inline float bf16_to_f32(uint16_t b) { return bits_f32(static_cast<uint32_t>(b) << 16); }

// float -> bfloat16, round-to-nearest-even; NaN is kept quiet (as ggml does).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Bulk conversions (n = span sizes, which must match).
void f32_to_f16_row(std::span<const float> src, std::span<uint16_t> dst);
void f16_to_f32_row(std::span<const uint16_t> src, std::span<float> dst);
void f32_to_bf16_row(std::span<const float> src, std::span<uint16_t> dst);
void bf16_to_f32_row(std::span<const uint16_t> src, std::span<float> dst);
// binary16 values stored little-endian at any alignment (a tensor inside a mapped file) ->
// float, exactly f16_to_f32 per value (F16C where the CPU has it; NaNs keep their bits).
void f16_bytes_to_f32(const std::byte* src, std::span<float> dst);

}  // namespace smolq
