// The registry table. To add a type's kernels, implement them in its family file, declare
// them in kernels.h and fill in its row here; the tests iterate over this table.
#include "quantize/registry.h"

#include <array>
#include <cassert>

#include "quantize/kernels.h"
#include "quantize/quants_iq.h"
#include "quantize/quants_legacy_k.h"

namespace smolq {
namespace {

using G = GgmlType;
namespace k = kernels;

const TypeGeometry* geo(G t) { return &type_info(t); }

// Rows: geometry, reference quantizer, fast quantizer, dequantizer, fallback, tolerance.
// Fallbacks follow llama.cpp: when a row is not a multiple of 256, K-quants and IQ types
// fall back to a 32-element format of similar precision (then F16 if even that fails).
// `fallback == id` means "no 32-element substitute": the mixture planner rejects such a tensor
// (llama.cpp does too) unless the row fits; see quantize/mixtures.cpp.
const std::array<QTypeInfo, 35>& table() {
  static const std::array<QTypeInfo, 35> t{{
      {geo(G::F32), k::quantize_f32_ref, k::quantize_f32_ref, k::dequantize_f32, G::F32, 0.0},
      {geo(G::F16), k::quantize_f16_ref, k::quantize_f16_ref, k::dequantize_f16, G::F16, 1e-3},
      {geo(G::BF16), k::quantize_bf16_ref, k::quantize_bf16_ref, k::dequantize_bf16, G::BF16, 8e-3},
      {geo(G::Q4_0), k::quantize_q4_0_ref, k::quantize_q4_0, k::dequantize_q4_0, G::Q4_0, 0.12},
      {geo(G::Q4_1), k::quantize_q4_1_ref, k::quantize_q4_1, k::dequantize_q4_1, G::Q4_1, 0.10},
      {geo(G::Q5_0), k::quantize_q5_0_ref, k::quantize_q5_0, k::dequantize_q5_0, G::Q5_0, 0.06},
      {geo(G::Q5_1), k::quantize_q5_1_ref, k::quantize_q5_1, k::dequantize_q5_1, G::Q5_1, 0.05},
      {geo(G::Q8_0), k::quantize_q8_0_ref, k::quantize_q8_0, k::dequantize_q8_0, G::Q8_0, 0.01},
      {geo(G::Q8_1), nullptr, nullptr, nullptr, G::Q8_1, 0.01},
      {geo(G::Q2_K), k::quantize_q2_k_ref, k::quantize_q2_k, k::dequantize_q2_k, G::Q4_0, 0.40},
      {geo(G::Q3_K), k::quantize_q3_k_ref, k::quantize_q3_k, k::dequantize_q3_k, G::Q4_0, 0.22},
      {geo(G::Q4_K), k::quantize_q4_k_ref, k::quantize_q4_k, k::dequantize_q4_k, G::Q5_0, 0.11},
      {geo(G::Q5_K), k::quantize_q5_k_ref, k::quantize_q5_k, k::dequantize_q5_k, G::Q5_1, 0.06},
      {geo(G::Q6_K), k::quantize_q6_k_ref, k::quantize_q6_k, k::dequantize_q6_k, G::Q8_0, 0.03},
      {geo(G::Q8_K), nullptr, nullptr, nullptr, G::Q8_K, 0.01},
      {geo(G::IQ2_XXS), k::quantize_iq2_xxs_ref, k::quantize_iq2_xxs_ref, k::dequantize_iq2_xxs, G::IQ4_NL, 0.60},
      {geo(G::IQ2_XS), k::quantize_iq2_xs_ref, k::quantize_iq2_xs_ref, k::dequantize_iq2_xs, G::IQ4_NL, 0.50},
      {geo(G::IQ3_XXS), k::quantize_iq3_xxs_ref, k::quantize_iq3_xxs_ref, k::dequantize_iq3_xxs, G::IQ4_NL, 0.30},
      {geo(G::IQ1_S), k::quantize_iq1_s_ref, k::quantize_iq1_s_ref, k::dequantize_iq1_s, G::IQ4_NL, 0.90},
      {geo(G::IQ4_NL), k::quantize_iq4_nl_ref, k::quantize_iq4_nl_ref, k::dequantize_iq4_nl, G::IQ4_NL, 0.12},
      {geo(G::IQ3_S), k::quantize_iq3_s_ref, k::quantize_iq3_s_ref, k::dequantize_iq3_s, G::IQ4_NL, 0.28},
      {geo(G::IQ2_S), k::quantize_iq2_s_ref, k::quantize_iq2_s_ref, k::dequantize_iq2_s, G::IQ4_NL, 0.45},
      {geo(G::IQ4_XS), k::quantize_iq4_xs_ref, k::quantize_iq4_xs, k::dequantize_iq4_xs, G::IQ4_NL, 0.12},
      {geo(G::I8), nullptr, nullptr, nullptr, G::I8, 0.0},
      {geo(G::I16), nullptr, nullptr, nullptr, G::I16, 0.0},
      {geo(G::I32), nullptr, nullptr, nullptr, G::I32, 0.0},
      {geo(G::I64), nullptr, nullptr, nullptr, G::I64, 0.0},
      {geo(G::F64), nullptr, nullptr, nullptr, G::F64, 0.0},
      {geo(G::IQ1_M), k::quantize_iq1_m_ref, k::quantize_iq1_m_ref, k::dequantize_iq1_m, G::IQ4_NL, 0.80},
      {geo(G::TQ1_0), k::quantize_tq1_0_ref, k::quantize_tq1_0, k::dequantize_tq1_0, G::Q4_0, 1.0},
      {geo(G::TQ2_0), k::quantize_tq2_0_ref, k::quantize_tq2_0, k::dequantize_tq2_0, G::Q4_0, 1.0},
      {geo(G::MXFP4), k::quantize_mxfp4_ref, k::quantize_mxfp4, k::dequantize_mxfp4, G::MXFP4, 0.25},
      {geo(G::NVFP4), k::quantize_nvfp4_ref, k::quantize_nvfp4, k::dequantize_nvfp4, G::NVFP4, 0.25},
      {geo(G::Q1_0), k::quantize_q1_0_ref, k::quantize_q1_0_ref, k::dequantize_q1_0, G::Q1_0, 1.0},
      {geo(G::Q2_0), k::quantize_q2_0_ref, k::quantize_q2_0, k::dequantize_q2_0, G::Q4_0, 1.0},
  }};
  return t;
}

}  // namespace

std::span<const QTypeInfo> all_qtypes() { return table(); }

const QTypeInfo& qtype(GgmlType t) {
  for (const auto& q : table())
    if (q.id() == t) return q;
  assert(false && "type missing from quantize registry");
  __builtin_unreachable();
}

const QTypeInfo* find_qtype(std::string_view name) {
  const TypeGeometry* g = find_type(name);
  return g ? &qtype(g->id) : nullptr;
}

void quantize_rows(GgmlType t, std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix) {
  const QTypeInfo& q = qtype(t);
  assert(q.quantize && n_per_row > 0 && src.size() % n_per_row == 0);
  assert(imatrix.empty() || imatrix.size() == static_cast<size_t>(n_per_row));
  assert(dst.size() == *row_bytes(t, n_per_row) * (src.size() / n_per_row));
  q.quantize(src, dst, n_per_row, imatrix);
}

void dequantize_rows(GgmlType t, std::span<const std::byte> src, std::span<float> dst) {
  const QTypeInfo& q = qtype(t);
  assert(q.dequantize && dst.size() % q.geo->block_elems == 0);
  q.dequantize(src, dst);
}

}  // namespace smolq
