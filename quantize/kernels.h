// Declarations of every block kernel, grouped by family. Implementations live one family
// per file (float_types.cpp, legacy_quants.cpp, k_quants.cpp, iq_*.cpp, ...). Each family
// keeps its scalar `_ref` functions; a fast variant has the same signature.
#pragma once
#include "quantize/kernel_types.h"

namespace smolq::kernels {

#define SMOLQ_DECLARE_KERNELS(t)                                                              \
  void quantize_##t##_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row, \
                          std::span<const float> imatrix);                                    \
  void dequantize_##t(std::span<const std::byte> src, std::span<float> dst);

SMOLQ_DECLARE_KERNELS(f32)
SMOLQ_DECLARE_KERNELS(f16)
SMOLQ_DECLARE_KERNELS(bf16)
SMOLQ_DECLARE_KERNELS(q8_0)

#undef SMOLQ_DECLARE_KERNELS

}  // namespace smolq::kernels
