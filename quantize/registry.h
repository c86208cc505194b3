// The quant-type registry: one row per ggml type binding the geometry facts of
// formats/ggml_types.h to its kernels, its fallback and its test tolerance.
// The CLI's type listing, the quantize driver, verify's dequantisation and the tests all
// read this table; nothing else in the code base switches on a type to pick a kernel.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

#include "formats/ggml_types.h"
#include "quantize/kernel_types.h"

namespace smolq {

struct QTypeInfo {
  const TypeGeometry* geo;     // id, name, block geometry, needs_imatrix
  QuantizeFn quantize_ref;     // scalar reference; nullptr while a type has no encoder
  QuantizeFn quantize;         // fastest available (== quantize_ref when there is no fast one)
  DequantizeFn dequantize;     // bit-exact with ggml's decoder; nullptr when not implemented
  GgmlType fallback;           // used when a row is not a multiple of block_elems
  double max_rel_rmse;         // round-trip tolerance for gaussian rows (tests)

  GgmlType id() const { return geo->id; }
  bool can_quantize() const { return quantize != nullptr; }
  bool can_dequantize() const { return dequantize != nullptr; }
};

std::span<const QTypeInfo> all_qtypes();
const QTypeInfo& qtype(GgmlType t);
const QTypeInfo* find_qtype(std::string_view name);

// Convenience wrappers that check sizes against the registry geometry (asserts: sizes are
// the caller's responsibility, validated once in the driver).
void quantize_rows(GgmlType t, std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix = {});
void dequantize_rows(GgmlType t, std::span<const std::byte> src, std::span<float> dst);

}  // namespace smolq
