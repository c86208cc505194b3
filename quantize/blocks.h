// Every ggml block layout, byte-for-byte as it sits in a GGUF file. One struct per format,
// each with a static_assert tying its size to the registry (formats/ggml_types.cpp).
// `uint16_t d` fields hold IEEE half bits (see formats/half.h). All multi-byte fields are
// little-endian on disk; we only support little-endian hosts.
#pragma once
#include <cstdint>

namespace smolq {

constexpr int kQK = 32;     // elements in a legacy / 32-element block
constexpr int kQKK = 256;   // elements in a K-quant / IQ super-block

// ---- 32-element legacy formats ---------------------------------------------------------
struct BlockQ4_0 {     // 4.5 bpw: w = d * (q - 8), q in [0,15]
  uint16_t d;
  uint8_t qs[kQK / 2]; // element j in low nibble of qs[j], element j+16 in high nibble
};
struct BlockQ4_1 {     // 5.0 bpw: w = d * q + m
  uint16_t d, m;
  uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {     // 5.5 bpw: w = d * (q - 16), q 5 bits: 4 in qs, 5th bit in qh
  uint16_t d;
  uint8_t qh[4];       // bit j of the little-endian uint32 = high bit of element j
  uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {     // 6.0 bpw: w = d * q + m
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {     // 8.5 bpw: w = d * q
  uint16_t d;
  int8_t qs[kQK];
};
struct BlockQ8_1 {     // 9.0 bpw, activation format: s = d * sum(q)
  uint16_t d, s;
  int8_t qs[kQK];
};

// ---- K-quants: 256-element super-blocks ------------------------------------------------
struct BlockQ2_K {     // 2.625 bpw: w = d*(sc&15)*q - dmin*(sc>>4), 16 sub-blocks of 16
  uint8_t scales[kQKK / 16];
  uint8_t qs[kQKK / 4];
  uint16_t d, dmin;
};
struct BlockQ3_K {     // 3.4375 bpw: w = d*(sc-32)*(q-4*(!hbit)), 16 sub-blocks of 16, 6-bit scales
  uint8_t hmask[kQKK / 8];
  uint8_t qs[kQKK / 4];
  uint8_t scales[12];
  uint16_t d;
};
struct BlockQ4_K {     // 4.5 bpw: w = d*sc*q - dmin*m, 8 sub-blocks of 32, 6-bit scales/mins
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[kQKK / 2];
};
struct BlockQ5_K {     // 5.5 bpw: as Q4_K with a fifth bit in qh
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
struct BlockQ6_K {     // 6.5625 bpw: w = d*sc*(q-32), 16 sub-blocks of 16, int8 scales
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};
struct BlockQ8_K {     // activation format for K-quant dot products (float scale)
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];
};

// ---- IQ formats (lattice codebooks; tables in quantize/iq_tables.*) --------------------
struct BlockIQ2_XXS {  // 2.0625 bpw
  uint16_t d;
  uint16_t qs[kQKK / 8];
};
struct BlockIQ2_XS {   // 2.3125 bpw
  uint16_t d;
  uint16_t qs[kQKK / 8];
  uint8_t scales[kQKK / 32];
};
struct BlockIQ2_S {    // 2.5625 bpw
  uint16_t d;
  uint8_t qs[kQKK / 4];
  uint8_t qh[kQKK / 32];
  uint8_t scales[kQKK / 32];
};
struct BlockIQ3_XXS {  // 3.0625 bpw
  uint16_t d;
  uint8_t qs[3 * kQKK / 8];
};
struct BlockIQ3_S {    // 3.4375 bpw
  uint16_t d;
  uint8_t qs[kQKK / 4];
  uint8_t qh[kQKK / 32];
  uint8_t signs[kQKK / 8];
  uint8_t scales[kQKK / 64];
};
struct BlockIQ1_S {    // 1.5625 bpw
  uint16_t d;
  uint8_t qs[kQKK / 8];
  uint16_t qh[kQKK / 32];
};
struct BlockIQ1_M {    // 1.75 bpw (the f16 super-block scale is spread over `scales`)
  uint8_t qs[kQKK / 8];
  uint8_t qh[kQKK / 16];
  uint8_t scales[kQKK / 32];
};
struct BlockIQ4_NL {   // 4.5 bpw: w = d * kvalues_iq4nl[q]
  uint16_t d;
  uint8_t qs[kQK / 2];
};
struct BlockIQ4_XS {   // 4.25 bpw: IQ4_NL values with 6-bit sub-block scales
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[kQKK / 64];
  uint8_t qs[kQKK / 2];
};

// ---- ternary and microscaling formats ---------------------------------------------------
struct BlockTQ1_0 {    // 1.6875 bpw: ternary digits packed 5 per byte (base 3)
  uint8_t qs[(kQKK - 4 * kQKK / 64) / 5];
  uint8_t qh[kQKK / 64];
  uint16_t d;
};
struct BlockTQ2_0 {    // 2.0625 bpw: 2-bit codes (q-1) in {-1,0,1}
  uint8_t qs[kQKK / 4];
  uint16_t d;
};
struct BlockMXFP4 {    // 4.25 bpw: E8M0 shared exponent + 32 FP4 (E2M1) values
  uint8_t e;
  uint8_t qs[kQK / 2];
};
struct BlockNVFP4 {    // 4.5 bpw: 64 FP4 values, 4 FP8 (E4M3) scales of 16 values each
  uint8_t d[4];
  uint8_t qs[32];
};
struct BlockQ1_0 {     // 1.125 bpw: 128 sign bits with one f16 scale
  uint16_t d;
  uint8_t qs[16];
};
struct BlockQ2_0 {     // 2.25 bpw: 64 2-bit codes (code-1)*d
  uint16_t d;
  uint8_t qs[16];
};

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ2_XXS) == 66 && sizeof(BlockIQ2_XS) == 74 && sizeof(BlockIQ2_S) == 82);
static_assert(sizeof(BlockIQ3_XXS) == 98 && sizeof(BlockIQ3_S) == 110 && sizeof(BlockIQ1_S) == 50);
static_assert(sizeof(BlockIQ1_M) == 56 && sizeof(BlockIQ4_NL) == 18 && sizeof(BlockIQ4_XS) == 136);
static_assert(sizeof(BlockTQ1_0) == 54 && sizeof(BlockTQ2_0) == 66 && sizeof(BlockMXFP4) == 17);
static_assert(sizeof(BlockNVFP4) == 36 && sizeof(BlockQ1_0) == 18 && sizeof(BlockQ2_0) == 18);

}  // namespace smolq
