// Finding NaN and Inf in weight data. A model with a non-finite weight produces NaN logits
// for every token that touches it, so convert and quantize refuse such input, naming the
// tensor and the first bad element (as llama-quantize refuses a NaN block), inspect reports
// it with --check-data, and imatrix files holding non-finite values are refused when read.
//
// The scans test the exponent bits (all ones = Inf or NaN) in branch-free blocks the compiler
// vectorises, and locate the exact element only inside a block that has one: scanning costs
// about as much as reading the data once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "formats/ggml_types.h"

namespace smolq {

// Index of the first non-finite value, or nullopt.
std::optional<uint64_t> find_non_finite(std::span<const float> v);
std::optional<uint64_t> find_non_finite_f16(std::span<const uint16_t> bits);
std::optional<uint64_t> find_non_finite_bf16(std::span<const uint16_t> bits);
// F32, F16 or BF16 data as stored (little-endian, any alignment); other types: nullopt.
// `n_elements` values are read from `data` (which must hold them).
std::optional<uint64_t> find_non_finite_plain(GgmlType type, std::span<const std::byte> data, uint64_t n_elements);

// "nan", "inf" or "-inf" (or the number, for a finite value).
std::string float_text(float v);

// Where element `index` of a tensor with rows of `ncols` is: "row 3, column 17".
std::string element_position(uint64_t index, uint64_t ncols);

}  // namespace smolq
