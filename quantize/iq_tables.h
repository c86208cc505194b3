// Constant tables of the IQ, FP4 and related block formats. These are facts of the
// formats (ggml-common.h holds the same data): the lattice codebooks are generated into
// iq_tables.cpp by scripts/dev/gen_iq_tables.py; the small tables are written out here.
// Every entry is checked against the gguf Python package's copy by test_iq_tables.cpp.
//
// Grid words hold one byte per coordinate, coordinate j in byte j (little-endian), exactly
// as ggml's decoders read them, so `grid_byte(kIq2xxsGrid[i], j)` is coordinate j of point i.
#pragma once
#include <array>
#include <bit>
#include <cstdint>

namespace smolq::iq {

// IQ2_XXS: 256 points of {8,25,43}^8.
extern const uint64_t kIq2xxsGrid[256];
// IQ2_XS: 512 points of {8,25,43}^8.
extern const uint64_t kIq2xsGrid[512];
// IQ2_S: 1024 points of {8,25,43}^8.
extern const uint64_t kIq2sGrid[1024];
// IQ3_XXS: 256 points of {4,12,20,28,36,44,52,62}^4.
extern const uint32_t kIq3xxsGrid[256];
// IQ3_S: 512 points of {1,3,5,...,15}^4.
extern const uint32_t kIq3sGrid[512];
// IQ1_S / IQ1_M: 2048 points of {-1,0,+1}^8 (int8 bytes).
extern const uint64_t kIq1sGrid[2048];

inline uint8_t grid_byte(uint64_t word, int j) { return static_cast<uint8_t>(word >> (8 * j)); }
inline int8_t grid_sbyte(uint64_t word, int j) { return static_cast<int8_t>(word >> (8 * j)); }

// The IQ2_XXS / IQ2_XS / IQ3_XXS sign code: 7 stored bits give the signs of elements 0..6
// (bit set = negative); element 7's sign is implied so that the number of negatives is
// even. ggml's `ksigns_iq2xs[i]` is this byte: i with its parity in bit 7.
constexpr uint8_t sign_byte(int i) {
  return static_cast<uint8_t>(i | ((std::popcount(static_cast<unsigned>(i)) & 1) << 7));
}
inline constexpr std::array<uint8_t, 128> kSignsIq2 = [] {
  std::array<uint8_t, 128> t{};
  for (int i = 0; i < 128; ++i) t[i] = sign_byte(i);
  return t;
}();

// IQ1_S / IQ1_M: every grid coordinate is shifted by +-kIq1Delta (one sign bit per group),
// so the decoded alphabet is {-1, 0, 1} + delta, never exactly 0.
inline constexpr float kIq1Delta = 0.125f;

// IQ4_NL / IQ4_XS: the 16 non-uniform levels (a fitted, asymmetric curve).
inline constexpr std::array<int8_t, 16> kValuesIq4nl = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                        1,    13,   25,  38,  53,  69,  89,  113};

// MXFP4 / NVFP4: E2M1 values doubled so they are integers: nibble bit 3 is the sign, the
// low three bits encode 0, 0.5, 1, 1.5, 2, 3, 4, 6 (x2 -> 0,1,2,3,4,6,8,12). The scale
// decoders (E8M0 / UE4M3) return half the true scale to compensate.
inline constexpr std::array<int8_t, 16> kValuesMxfp4 = {0, 1,  2,  3,  4,  6,  8,  12,
                                                        0, -1, -2, -3, -4, -6, -8, -12};

}  // namespace smolq::iq
