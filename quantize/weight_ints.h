// Block-quantized weight rows as small integers, for integer dot products (the evaluator's
// integer matmul, eval/matmul_int.h). It lives beside the dequantizers because it reads the same
// block layouts: eval/ reads weights only through this layer.
//
// Every type listed here stores, per group of G consecutive weights of a row, unsigned
// integers q and float parameters such that the registry's dequantizer computes
//
//     w[k] = scale[g] * (q[k] - offset) + bias[g]          g = k / G
//
// with the same f32 operations (scale = d, or d * sub-scale for the K-quants; bias = m, or
// -dmin * sub-min; 0 for the symmetric types). `offset` is a per-type constant that keeps q
// unsigned (the VNNI dot product multiplies unsigned by signed bytes). The decoded integers
// are exact; only the order of the float operations differs from a dequantized row.
//
// | type | G  | q range | offset | bias |
// |------|----|---------|--------|------|
// | Q8_0 | 32 | 0..255  | 128    | no   |
// | Q4_0 | 32 | 0..15   | 8      | no   |
// | Q5_0 | 32 | 0..31   | 16     | no   |
// | Q4_1 | 32 | 0..15   | 0      | yes  |
// | Q5_1 | 32 | 0..31   | 0      | yes  |
// | Q4_K | 32 | 0..15   | 0      | yes  |
// | Q5_K | 32 | 0..31   | 0      | yes  |
// | Q6_K | 16 | 0..63   | 32     | no   |
#pragma once
#include <cstddef>
#include <cstdint>

#include "formats/ggml_types.h"

namespace smolq {

// Decode one row of `cols` weights: q[cols], scale[cols / group], bias[cols / group] (bias is
// written only when has_bias). `row` holds row_bytes(type, cols) bytes.
using IntRowDecoder = void (*)(const std::byte* row, int64_t cols, uint8_t* q, float* scale, float* bias);

struct IntWeightFormat {
  GgmlType type;
  int group;      // weights per (scale, bias) pair: 16 or 32
  int offset;     // subtracted from every q
  bool has_bias;  // asymmetric types: bias[g] != 0
  IntRowDecoder decode;
};

// The integer form of `t`, or nullptr when the type has none (F16, BF16, F32, IQ*, Q2_K, Q3_K,
// ...: those take the f32 matmul).
const IntWeightFormat* int_weight_format(GgmlType t);

}  // namespace smolq
