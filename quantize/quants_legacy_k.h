// Kernels of the 32-element legacy formats (Q4_0, Q4_1, Q5_0, Q5_1: legacy_quants.cpp) and the
// 256-element K-quants (Q2_K .. Q6_K: k_quants.cpp, searches in k_quants_search.cpp).
//
// Quantizers share the registry's QuantizeFn signature: whole rows in, whole blocks out, an
// optional per-column importance vector (empty = none). With or without it they minimise a
// weighted squared error (see quant_search.h for the weighting). Dequantizers reproduce ggml's
// float operations in ggml's order, so their output is bit-identical to ggml's decoder.
#pragma once
#include "formats/ggml_types.h"
#include "quantize/kernel_types.h"

namespace smolq::kernels {

#define SMOLQ_LEGACY_K_KERNELS(t)                                                                   \
  void quantize_##t##_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row, \
                          std::span<const float> imatrix);                                          \
  void dequantize_##t(std::span<const std::byte> src, std::span<float> dst);

SMOLQ_LEGACY_K_KERNELS(q4_0)
SMOLQ_LEGACY_K_KERNELS(q4_1)
SMOLQ_LEGACY_K_KERNELS(q5_0)
SMOLQ_LEGACY_K_KERNELS(q5_1)
SMOLQ_LEGACY_K_KERNELS(q2_k)
SMOLQ_LEGACY_K_KERNELS(q3_k)
SMOLQ_LEGACY_K_KERNELS(q4_k)
SMOLQ_LEGACY_K_KERNELS(q5_k)
SMOLQ_LEGACY_K_KERNELS(q6_k)

#undef SMOLQ_LEGACY_K_KERNELS

// Fast quantizers: the reference search scored with AVX2 kernels when the CPU supports it
// (the _ref kernel otherwise). Output bytes are identical to the _ref kernels.
void quantize_q4_0(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix);
void quantize_q4_1(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix);
void quantize_q5_0(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix);
void quantize_q5_1(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix);
void quantize_q2_k(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix);
void quantize_q3_k(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix);
void quantize_q4_k(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix);
void quantize_q5_k(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix);
void quantize_q6_k(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix);

// One legacy block (Q4_0, Q4_1, Q5_0, Q5_1) with the row's weighting given, for the
// error-feedback quantizer, which chooses scales block by block (quantize/error_feedback.h).
// legacy_row_sigma2 is the mean square of a whole row (the sigma^2 of the element weighting);
// quantize_legacy_block writes exactly the block quantize_<type> writes for that row.
float legacy_row_sigma2(std::span<const float> row);
void quantize_legacy_block(GgmlType t, const float* x, const float* imatrix, float sigma2, std::byte* out);

}  // namespace smolq::kernels
