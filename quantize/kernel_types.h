// The signatures every block kernel shares: the only thing kernel headers need (they do not
// include the registry, quantize/registry.h, which binds kernels to types).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

namespace smolq {

// Quantize rows: src holds nrows * n_per_row floats (nrows = src.size() / n_per_row),
// dst exactly nrows * row_bytes. `imatrix` is empty or holds n_per_row importance weights
// (one per column) whose weighted squared error the kernel minimises.
// Kernels are pure and single-threaded; threading lives in the drivers.
using QuantizeFn = void (*)(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                            std::span<const float> imatrix);
// Dequantize: src holds whole blocks for dst.size() elements (a multiple of the block).
using DequantizeFn = void (*)(std::span<const std::byte> src, std::span<float> dst);

}  // namespace smolq
