// Kernels of the IQ lattice formats, IQ4, the ternary types (TQ1_0, TQ2_0), the microscaling
// FP4 types (MXFP4, NVFP4) and the 1/2-bit Q1_0 / Q2_0. Families live in quantize/iq1.cpp,
// iq2.cpp, iq3.cpp, iq4.cpp, ternary.cpp and fp4.cpp; the shared lattice search in
// iq_lattice.cpp and the codebooks in iq_tables.cpp.
//
// All quantizers accept an optional imatrix (one importance value per column) and minimise
// the weighted squared error; all dequantizers are bit-exact with ggml's.
#pragma once
#include "quantize/kernel_types.h"

namespace smolq::kernels {

#define SMOLQ_DECLARE_IQ_KERNELS(t)                                                              \
  void quantize_##t##_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row, \
                          std::span<const float> imatrix);                                       \
  void dequantize_##t(std::span<const std::byte> src, std::span<float> dst);

SMOLQ_DECLARE_IQ_KERNELS(iq2_xxs)
SMOLQ_DECLARE_IQ_KERNELS(iq2_xs)
SMOLQ_DECLARE_IQ_KERNELS(iq2_s)
SMOLQ_DECLARE_IQ_KERNELS(iq3_xxs)
SMOLQ_DECLARE_IQ_KERNELS(iq3_s)
SMOLQ_DECLARE_IQ_KERNELS(iq1_s)
SMOLQ_DECLARE_IQ_KERNELS(iq1_m)
SMOLQ_DECLARE_IQ_KERNELS(iq4_nl)
SMOLQ_DECLARE_IQ_KERNELS(iq4_xs)
SMOLQ_DECLARE_IQ_KERNELS(tq1_0)
SMOLQ_DECLARE_IQ_KERNELS(tq2_0)
SMOLQ_DECLARE_IQ_KERNELS(mxfp4)
SMOLQ_DECLARE_IQ_KERNELS(nvfp4)
SMOLQ_DECLARE_IQ_KERNELS(q1_0)
SMOLQ_DECLARE_IQ_KERNELS(q2_0)

#undef SMOLQ_DECLARE_IQ_KERNELS

// MXFP4 / NVFP4 with the candidate scales scored in AVX2 lanes (same bytes as _ref).
void quantize_mxfp4(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                    std::span<const float> imatrix);
void quantize_nvfp4(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                    std::span<const float> imatrix);

// Fast quantizers: the reference search with its candidate scoring in AVX2 when the CPU has it
// (the _ref kernel otherwise). Output bytes are identical to the _ref kernels'.
void quantize_iq4_xs(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                     std::span<const float> imatrix);
// TQ1_0 / TQ2_0 with the ternary scale's sums in AVX2 (same bytes as _ref).
void quantize_tq1_0(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                    std::span<const float> imatrix);
void quantize_tq2_0(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                    std::span<const float> imatrix);
// Q2_0 with 16 (AVX2) or 32 (AVX-512) blocks searched at once, one per lane.
void quantize_q2_0(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix);

}  // namespace smolq::kernels
