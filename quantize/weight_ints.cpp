// Integer decoders of the block formats (see weight_ints.h). Each mirrors the bit layout of
// the registry's dequantizer for the same type (quantize/legacy_quants.cpp, q8_0.cpp,
// k_quants.cpp); tests/cpp/test_matmul_q8.cpp checks scale * (q - offset) + bias against the
// dequantized row for every type, so a layout mistake cannot hide.
#include "quantize/weight_ints.h"

#include <cstring>

#include "formats/half.h"
#include "quantize/blocks.h"

namespace smolq {
namespace {

template <class Block>
Block block_at(const std::byte* row, int64_t b) {
  Block blk;
  std::memcpy(&blk, row + b * static_cast<int64_t>(sizeof(Block)), sizeof blk);
  return blk;
}

void decode_q8_0(const std::byte* row, int64_t cols, uint8_t* q, float* scale, float*) {
  for (int64_t b = 0; b < cols / kQK; ++b) {
    const auto blk = block_at<BlockQ8_0>(row, b);
    scale[b] = f16_to_f32(blk.d);
    for (int j = 0; j < kQK; ++j) q[b * kQK + j] = static_cast<uint8_t>(blk.qs[j] + 128);
  }
}

// Q4_0 / Q4_1: element j in the low nibble of qs[j], element j + 16 in the high nibble.
void nibbles(const uint8_t* qs, uint8_t* q) {
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = qs[j] & 0x0f;
    q[j + 16] = qs[j] >> 4;
  }
}

// Q5_0 / Q5_1: the fifth bit of element j is bit j of the little-endian qh.
void nibbles5(const uint8_t* qs, const uint8_t* qh_bytes, uint8_t* q) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = static_cast<uint8_t>((qs[j] & 0x0f) | (((qh >> j) & 1) << 4));
    q[j + 16] = static_cast<uint8_t>((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
  }
}

void decode_q4_0(const std::byte* row, int64_t cols, uint8_t* q, float* scale, float*) {
  for (int64_t b = 0; b < cols / kQK; ++b) {
    const auto blk = block_at<BlockQ4_0>(row, b);
    scale[b] = f16_to_f32(blk.d);
    nibbles(blk.qs, q + b * kQK);
  }
}

void decode_q4_1(const std::byte* row, int64_t cols, uint8_t* q, float* scale, float* bias) {
  for (int64_t b = 0; b < cols / kQK; ++b) {
    const auto blk = block_at<BlockQ4_1>(row, b);
    scale[b] = f16_to_f32(blk.d);
    bias[b] = f16_to_f32(blk.m);
    nibbles(blk.qs, q + b * kQK);
  }
}

void decode_q5_0(const std::byte* row, int64_t cols, uint8_t* q, float* scale, float*) {
  for (int64_t b = 0; b < cols / kQK; ++b) {
    const auto blk = block_at<BlockQ5_0>(row, b);
    scale[b] = f16_to_f32(blk.d);
    nibbles5(blk.qs, blk.qh, q + b * kQK);
  }
}

void decode_q5_1(const std::byte* row, int64_t cols, uint8_t* q, float* scale, float* bias) {
  for (int64_t b = 0; b < cols / kQK; ++b) {
    const auto blk = block_at<BlockQ5_1>(row, b);
    scale[b] = f16_to_f32(blk.d);
    bias[b] = f16_to_f32(blk.m);
    nibbles5(blk.qs, blk.qh, q + b * kQK);
  }
}

// Q4_K / Q5_K sub-block j (of 8): 6-bit scale and min, packed as in k_quants.cpp's
// pack_scale_min_k4 (pairs 0-3 in the low 6 bits of bytes 0-7; pairs 4-7 split between the
// nibbles of bytes 8-11 and the top 2 bits of bytes 0-7).
void scale_min_k4(int j, const uint8_t* s, int& sc, int& mn) {
  if (j < 4) {
    sc = s[j] & 63;
    mn = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Sub-block j of a Q4_K / Q5_K super-block: its 32 low nibbles are the (j % 2) nibble of
// qs[32 * (j / 2) + l]; Q5_K's fifth bit is bit j of qh[l].
template <class Block, bool kFifthBit>
void decode_k45(const std::byte* row, int64_t cols, uint8_t* q, float* scale, float* bias) {
  for (int64_t b = 0; b < cols / kQKK; ++b) {
    const auto blk = block_at<Block>(row, b);
    const float d = f16_to_f32(blk.d), dmin = f16_to_f32(blk.dmin);
    for (int j = 0; j < 8; ++j) {
      int sc, mn;
      scale_min_k4(j, blk.scales, sc, mn);
      scale[b * 8 + j] = d * static_cast<float>(sc);
      bias[b * 8 + j] = -(dmin * static_cast<float>(mn));
      const uint8_t* qs = blk.qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      uint8_t* out = q + b * kQKK + 32 * j;
      for (int l = 0; l < 32; ++l) {
        int v = (qs[l] >> shift) & 15;
        if constexpr (kFifthBit) v |= ((blk.qh[l] >> j) & 1) << 4;
        out[l] = static_cast<uint8_t>(v);
      }
    }
  }
}

// Q6_K: element e of a super-block has its low 4 bits in ql and its top 2 bits in qh (the
// layout of k_quants.cpp's dequantize_q6_k); scale d * scales[e / 16].
void decode_q6_k(const std::byte* row, int64_t cols, uint8_t* q, float* scale, float*) {
  for (int64_t b = 0; b < cols / kQKK; ++b) {
    const auto blk = block_at<BlockQ6_K>(row, b);
    const float d = f16_to_f32(blk.d);
    for (int s = 0; s < kQKK / 16; ++s) scale[b * 16 + s] = d * static_cast<float>(blk.scales[s]);
    uint8_t* out = q + b * kQKK;
    for (int e = 0; e < kQKK; ++e) {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const int lo4 = (blk.ql[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 15;
      const int hi2 = (blk.qh[32 * h + l] >> (2 * k)) & 3;
      out[e] = static_cast<uint8_t>(lo4 | (hi2 << 4));
    }
  }
}

constexpr IntWeightFormat kFormats[] = {
    {GgmlType::Q8_0, 32, 128, false, decode_q8_0},
    {GgmlType::Q4_0, 32, 8, false, decode_q4_0},
    {GgmlType::Q5_0, 32, 16, false, decode_q5_0},
    {GgmlType::Q4_1, 32, 0, true, decode_q4_1},
    {GgmlType::Q5_1, 32, 0, true, decode_q5_1},
    {GgmlType::Q4_K, 32, 0, true, decode_k45<BlockQ4_K, false>},
    {GgmlType::Q5_K, 32, 0, true, decode_k45<BlockQ5_K, true>},
    {GgmlType::Q6_K, 16, 32, false, decode_q6_k},
};

}  // namespace

const IntWeightFormat* int_weight_format(GgmlType t) {
  for (const IntWeightFormat& f : kFormats)
    if (f.type == t) return &f;
  return nullptr;
}

}  // namespace smolq
