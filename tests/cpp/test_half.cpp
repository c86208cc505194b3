#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "formats/half.h"

using namespace smolq;

TEST_SUITE("test_half") {
  TEST_CASE("f16 round trip of every half value") {
    for (uint32_t h = 0; h < 0x10000; ++h) {
      float f = f16_to_f32(static_cast<uint16_t>(h));
      uint16_t back = f32_to_f16(f);
      if (std::isnan(f)) {
        CHECK(std::isnan(f16_to_f32(back)));
      } else {
        CHECK(back == h);
      }
    }
  }
  // The bulk decoder (F16C where available) must give f16_to_f32's bits for every value,
  // NaN payloads included, from an odd byte offset and with a tail shorter than a vector.
  TEST_CASE("f16_bytes_to_f32 equals f16_to_f32 bit for bit") {
    constexpr size_t kN = 65536 + 5;
    std::vector<std::byte> raw(2 * kN + 1);
    for (size_t i = 0; i < kN; ++i) {
      const uint16_t h = static_cast<uint16_t>(i * 40503u);  // odd multiplier: every value once
      std::memcpy(raw.data() + 1 + 2 * i, &h, 2);
    }
    std::vector<float> out(kN);
    f16_bytes_to_f32(raw.data() + 1, out);
    size_t bad = 0;
    for (size_t i = 0; i < kN; ++i) {
      uint16_t h;
      std::memcpy(&h, raw.data() + 1 + 2 * i, 2);
      bad += f32_bits(out[i]) != f32_bits(f16_to_f32(h));
    }
    CHECK(bad == 0);
  }

  TEST_CASE("f16 rounding: nearest even, overflow, subnormals") {
    CHECK(f32_to_f16(1.0f) == 0x3c00);
    CHECK(f32_to_f16(65504.0f) == 0x7bff);
    CHECK(f32_to_f16(65519.99f) == 0x7bff);
    CHECK(f32_to_f16(65520.0f) == 0x7c00);  // ties to even -> Inf
    CHECK(f32_to_f16(std::numeric_limits<float>::infinity()) == 0x7c00);
    CHECK(f32_to_f16(-std::numeric_limits<float>::infinity()) == 0xfc00);
    CHECK((f32_to_f16(std::nanf("")) & 0x7e00) == 0x7e00);
    CHECK(f32_to_f16(std::ldexp(1.0f, -24)) == 0x0001);   // smallest subnormal
    CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);   // tie -> even (zero)
    CHECK(f32_to_f16(std::ldexp(1.5f, -25)) == 0x0001);
    CHECK(f32_to_f16(std::ldexp(3.0f, -25)) == 0x0002);   // 1.5 ulp tie -> even (2)
    CHECK(f32_to_f16(-0.0f) == 0x8000);
    // 1 + 2^-11 is exactly between 1 and 1+2^-10: ties to even keeps 1.0.
    CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
    CHECK(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
    CHECK(f32_to_f16(1e-10f) == 0);
  }
  TEST_CASE("bf16 rounding and NaN") {
    CHECK(f32_to_bf16(1.0f) == 0x3f80);
    CHECK(f32_to_bf16(bits_f32(0x3f808000u)) == 0x3f80);  // tie -> even
    CHECK(f32_to_bf16(bits_f32(0x3f818000u)) == 0x3f82);  // tie -> even (up)
    CHECK(f32_to_bf16(bits_f32(0x3f808001u)) == 0x3f81);
    CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
    CHECK(f32_to_bf16(bits_f32(0x7f7fffffu)) == 0x7f80);  // max float rounds to Inf
    CHECK(bf16_to_f32(0x3f80) == 1.0f);
  }
}
