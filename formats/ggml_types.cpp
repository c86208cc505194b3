#include "formats/ggml_types.h"

#include <array>
#include <cassert>
#include <cctype>

namespace smolq {
namespace {

// id, name, ggml name, block elems, block bytes, is_float, needs_imatrix, weight_type
// Block byte counts are the sizes of the ggml block structs (see quantize/blocks.h, where
// each is static_assert-ed against this table).
constexpr std::array<TypeGeometry, 35> kTypes{{
    {GgmlType::F32, "F32", "f32", 1, 4, true, false, true},
    {GgmlType::F16, "F16", "f16", 1, 2, true, false, true},
    {GgmlType::Q4_0, "Q4_0", "q4_0", 32, 18, false, false, true},
    {GgmlType::Q4_1, "Q4_1", "q4_1", 32, 20, false, false, true},
    {GgmlType::Q5_0, "Q5_0", "q5_0", 32, 22, false, false, true},
    {GgmlType::Q5_1, "Q5_1", "q5_1", 32, 24, false, false, true},
    {GgmlType::Q8_0, "Q8_0", "q8_0", 32, 34, false, false, true},
    {GgmlType::Q8_1, "Q8_1", "q8_1", 32, 36, false, false, false},
    {GgmlType::Q2_K, "Q2_K", "q2_K", 256, 84, false, false, true},
    {GgmlType::Q3_K, "Q3_K", "q3_K", 256, 110, false, false, true},
    {GgmlType::Q4_K, "Q4_K", "q4_K", 256, 144, false, false, true},
    {GgmlType::Q5_K, "Q5_K", "q5_K", 256, 176, false, false, true},
    {GgmlType::Q6_K, "Q6_K", "q6_K", 256, 210, false, false, true},
    {GgmlType::Q8_K, "Q8_K", "q8_K", 256, 292, false, false, false},
    {GgmlType::IQ2_XXS, "IQ2_XXS", "iq2_xxs", 256, 66, false, true, true},
    {GgmlType::IQ2_XS, "IQ2_XS", "iq2_xs", 256, 74, false, true, true},
    {GgmlType::IQ3_XXS, "IQ3_XXS", "iq3_xxs", 256, 98, false, false, true},
    {GgmlType::IQ1_S, "IQ1_S", "iq1_s", 256, 50, false, true, true},
    {GgmlType::IQ4_NL, "IQ4_NL", "iq4_nl", 32, 18, false, false, true},
    {GgmlType::IQ3_S, "IQ3_S", "iq3_s", 256, 110, false, false, true},
    {GgmlType::IQ2_S, "IQ2_S", "iq2_s", 256, 82, false, false, true},
    {GgmlType::IQ4_XS, "IQ4_XS", "iq4_xs", 256, 136, false, false, true},
    {GgmlType::I8, "I8", "i8", 1, 1, false, false, false},
    {GgmlType::I16, "I16", "i16", 1, 2, false, false, false},
    {GgmlType::I32, "I32", "i32", 1, 4, false, false, false},
    {GgmlType::I64, "I64", "i64", 1, 8, false, false, false},
    {GgmlType::F64, "F64", "f64", 1, 8, true, false, false},
    {GgmlType::IQ1_M, "IQ1_M", "iq1_m", 256, 56, false, false, true},
    {GgmlType::BF16, "BF16", "bf16", 1, 2, true, false, true},
    {GgmlType::TQ1_0, "TQ1_0", "tq1_0", 256, 54, false, false, true},
    {GgmlType::TQ2_0, "TQ2_0", "tq2_0", 256, 66, false, false, true},
    {GgmlType::MXFP4, "MXFP4", "mxfp4", 32, 17, false, false, true},
    {GgmlType::NVFP4, "NVFP4", "nvfp4", 64, 36, false, false, false},
    {GgmlType::Q1_0, "Q1_0", "q1_0", 128, 18, false, false, false},
    {GgmlType::Q2_0, "Q2_0", "q2_0", 64, 18, false, false, false},
}};

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(a[i])) != std::toupper(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

}  // namespace

std::span<const TypeGeometry> all_types() { return kTypes; }

const TypeGeometry* find_type(uint32_t id) {
  for (const auto& t : kTypes)
    if (static_cast<uint32_t>(t.id) == id) return &t;
  return nullptr;
}

const TypeGeometry* find_type(std::string_view name) {
  for (const auto& t : kTypes)
    if (iequal(t.name, name)) return &t;
  return nullptr;
}

const TypeGeometry& type_info(GgmlType t) {
  const TypeGeometry* g = find_type(static_cast<uint32_t>(t));
  assert(g && "GgmlType value missing from the registry");
  return *g;
}

std::optional<uint64_t> row_bytes(GgmlType t, uint64_t n) {
  const TypeGeometry& g = type_info(t);
  if (n % g.block_elems != 0) return std::nullopt;
  return n / g.block_elems * g.block_bytes;
}

}  // namespace smolq
