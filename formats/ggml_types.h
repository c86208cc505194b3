// The geometry half of the quant-type registry: every ggml tensor type's on-disk id, name
// and block layout. This is all formats/ and inspect/ need (sizes, bpw, validation).
// Kernels for each type are bound in quantize/registry.h, which refers back to this table,
// so each fact about a type is written exactly once.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace smolq {

// On-disk ggml_type numbers (GGUF tensor info). Gaps are ids ggml retired.
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40, Q1_0 = 41, Q2_0 = 42,
};

struct TypeGeometry {
  GgmlType id;
  std::string_view name;      // upper-case, as users type it: "Q4_K", "IQ2_XXS", "F16"
  std::string_view ggml_name; // ggml's own lower-case spelling: "q4_K", "iq2_xxs", "f16"
  uint32_t block_elems;       // weights per block (1 for plain scalar types)
  uint32_t block_bytes;       // bytes per block
  bool is_float;              // F32/F16/BF16/F64: stored values, not a block format
  bool needs_imatrix;         // ggml refuses to quantize without importance weights
  bool weight_type;           // usable as a weight type by quantize/convert (not Q8_1/Q8_K/ints)

  double bits_per_weight() const { return 8.0 * block_bytes / block_elems; }
};

// All known types, ordered by id.
std::span<const TypeGeometry> all_types();
// Lookup by on-disk id; nullptr for an unknown id.
const TypeGeometry* find_type(uint32_t id);
// Lookup by name, case-insensitive ("q4_k", "Q4_K", "f16"); nullptr when unknown.
const TypeGeometry* find_type(std::string_view name);
const TypeGeometry& type_info(GgmlType t);

// Bytes of a row of `n` elements of type t; nullopt if n is not a multiple of the block.
std::optional<uint64_t> row_bytes(GgmlType t, uint64_t n);

}  // namespace smolq
