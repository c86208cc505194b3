// IQ3_XXS and IQ3_S: 3-bit-class lattice formats. Each group of 4 weights is a point of a
// 4-dimensional codebook over 8 magnitude levels, and each 8 weights carry sign bits.
//
//   IQ3_XXS (3.0625 bpw): levels {4,12,...,52,62}, 256-point grid, one byte per 4 weights
//            (qs[0..63]); then per 32 weights a uint32 with 4 x 7 parity-coded sign bits
//            and a 4-bit scale in the top nibble: db = d * (0.5 + code) / 2.
//   IQ3_S   (3.4375 bpw): levels {1,3,...,15}, 512-point grid: 8 index bits in qs, the 9th
//            in qh (bit k of qh[ib] for the k-th 4-group of sub-block ib); 8 free sign bits
//            per 8 weights; a 4-bit scale per 32 weights: db = d * (1 + 2 code).
#include <cstring>

#include "formats/half.h"
#include "quantize/blocks.h"
#include "quantize/iq_lattice.h"
#include "quantize/iq_lattice_formats.h"
#include "quantize/iq_rows.h"
#include "quantize/iq_tables.h"
#include "quantize/quants_iq.h"

namespace smolq::kernels {
namespace {

using iq::ScaledLatticeCodes;
using iq::ScaledLatticeSpec;

// First-pass scales: a sub-block's largest magnitude at these fractions of the top level.
constexpr float kIq3xxsTrials[] = {0.80f, 0.90f, 1.00f, 1.10f, 1.20f};
constexpr float kIq3sTrials[] = {0.84f, 0.96f, 1.08f, 1.20f};

ScaledLatticeSpec iq3xxs_spec() {
  ScaledLatticeSpec s{};
  s.lattice = &iq::lattice_iq3xxs();
  s.levels = {4, 12, 20, 28, 36, 44, 52, 62};
  s.sub_size = 32;
  s.scale_codes = 16;
  for (int l = 0; l < 16; ++l) s.scale_mult[l] = (0.5f + l) * 0.5f;
  s.parity_signs = true;
  s.trial_factors = kIq3xxsTrials;
  s.refine_iters = 1;
  return s;
}

ScaledLatticeSpec iq3s_spec() {
  ScaledLatticeSpec s{};
  s.lattice = &iq::lattice_iq3s();
  s.levels = {1, 3, 5, 7, 9, 11, 13, 15};
  s.sub_size = 32;
  s.scale_codes = 16;
  for (int l = 0; l < 16; ++l) s.scale_mult[l] = static_cast<float>(1 + 2 * l);
  s.parity_signs = false;
  s.trial_factors = kIq3sTrials;
  s.refine_iters = 1;
  return s;
}

// y[j] = db * grid[j] * sign, ggml's operation order, for one 4-value grid point.
inline void emit4(float db, uint32_t grid, uint8_t signs, int first_bit, float* y) {
  for (int j = 0; j < 4; ++j)
    y[j] = db * static_cast<float>(iq::grid_byte(grid, j)) * ((signs >> (first_bit + j)) & 1 ? -1.f : 1.f);
}

}  // namespace

// ---- IQ3_XXS ------------------------------------------------------------------------------

namespace {
const ScaledLatticeSpec& spec_iq3_xxs() {
  static const ScaledLatticeSpec spec = iq3xxs_spec();
  return spec;
}
void pack_iq3_xxs(const ScaledLatticeCodes& c, BlockIQ3_XXS& b) {
  b.d = c.d.bits;
  for (int g = 0; g < 64; ++g) b.qs[g] = static_cast<uint8_t>(c.grid[g]);
  for (int ib = 0; ib < 8; ++ib) {
    uint32_t aux = static_cast<uint32_t>(c.scale[ib]) << 28;
    for (int l = 0; l < 4; ++l) aux |= static_cast<uint32_t>(c.signs[4 * ib + l] & 127) << (7 * l);
    std::memcpy(b.qs + kQKK / 4 + 4 * ib, &aux, sizeof aux);
  }
}
}  // namespace

void quantize_iq3_xxs_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                         std::span<const float> imatrix) {
  iq::encode_rows<BlockIQ3_XXS, kQKK>(src, dst, n_per_row, iq::importance_powers(imatrix), [](const float* x, const float* qw, BlockIQ3_XXS& b) {
    ScaledLatticeCodes c;
    iq::quantize_scaled_lattice(spec_iq3_xxs(), x, qw, c);
    pack_iq3_xxs(c, b);
  });
}

void dequantize_iq3_xxs(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockIQ3_XXS, kQKK>(src, dst, [](const BlockIQ3_XXS& b, float* y) {
    const float d = f16_to_f32(b.d);
    const uint8_t* qs = b.qs;
    for (int ib = 0; ib < 8; ++ib) {
      uint32_t aux;
      std::memcpy(&aux, b.qs + kQKK / 4 + 4 * ib, sizeof aux);
      const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.5f;
      for (int l = 0; l < 4; ++l) {
        const uint8_t signs = iq::kSignsIq2[(aux >> (7 * l)) & 127];
        emit4(db, iq::kIq3xxsGrid[qs[2 * l + 0]], signs, 0, y);
        emit4(db, iq::kIq3xxsGrid[qs[2 * l + 1]], signs, 4, y + 4);
        y += 8;
      }
      qs += 8;
    }
  });
}

// ---- IQ3_S --------------------------------------------------------------------------------

namespace {
const ScaledLatticeSpec& spec_iq3_s() {
  static const ScaledLatticeSpec spec = iq3s_spec();
  return spec;
}
void pack_iq3_s(const ScaledLatticeCodes& c, BlockIQ3_S& b) {
  b.d = c.d.bits;
  for (int ib = 0; ib < 8; ++ib) {
    uint8_t h = 0;
    for (int k = 0; k < 8; ++k) {
      b.qs[8 * ib + k] = static_cast<uint8_t>(c.grid[8 * ib + k] & 255);
      h |= static_cast<uint8_t>((c.grid[8 * ib + k] >> 8) << k);
    }
    b.qh[ib] = h;
  }
  std::memcpy(b.signs, c.signs, sizeof b.signs);
  for (int i = 0; i < 4; ++i) b.scales[i] = static_cast<uint8_t>(c.scale[2 * i] | (c.scale[2 * i + 1] << 4));
}
}  // namespace

void quantize_iq3_s_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                         std::span<const float> imatrix) {
  iq::encode_rows<BlockIQ3_S, kQKK>(src, dst, n_per_row, iq::importance_powers(imatrix), [](const float* x, const float* qw, BlockIQ3_S& b) {
    ScaledLatticeCodes c;
    iq::quantize_scaled_lattice(spec_iq3_s(), x, qw, c);
    pack_iq3_s(c, b);
  });
}

void dequantize_iq3_s(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockIQ3_S, kQKK>(src, dst, [](const BlockIQ3_S& b, float* y) {
    const float d = f16_to_f32(b.d);
    for (int ib = 0; ib < 8; ++ib) {
      const int code = ib % 2 == 0 ? (b.scales[ib / 2] & 0xf) : (b.scales[ib / 2] >> 4);
      const float db = d * static_cast<float>(1 + 2 * code);
      const uint8_t* qs = b.qs + 8 * ib;
      const uint8_t* signs = b.signs + 4 * ib;
      for (int l = 0; l < 4; ++l) {
        const int i1 = qs[2 * l + 0] | ((b.qh[ib] << (8 - 2 * l)) & 256);
        const int i2 = qs[2 * l + 1] | ((b.qh[ib] << (7 - 2 * l)) & 256);
        emit4(db, iq::kIq3sGrid[i1], signs[l], 0, y);
        emit4(db, iq::kIq3sGrid[i2], signs[l], 4, y + 4);
        y += 8;
      }
    }
  });
}

// ---- search + pack pairs (quantize/iq_lattice_formats.h) -----------------------------------

const LatticeFormat* lattice_format_iq3(GgmlType t) {
  static const LatticeFormat kIQ3_XXS{GgmlType::IQ3_XXS, &spec_iq3_xxs(), [](const ScaledLatticeCodes& c, std::byte* out) {
    BlockIQ3_XXS b{};
    pack_iq3_xxs(c, b);
    std::memcpy(out, &b, sizeof b);
  }};
  static const LatticeFormat kIQ3_S{GgmlType::IQ3_S, &spec_iq3_s(), [](const ScaledLatticeCodes& c, std::byte* out) {
    BlockIQ3_S b{};
    pack_iq3_s(c, b);
    std::memcpy(out, &b, sizeof b);
  }};
  switch (t) {
    case GgmlType::IQ3_XXS: return &kIQ3_XXS;
    case GgmlType::IQ3_S: return &kIQ3_S;
    default: return nullptr;
  }
}

}  // namespace smolq::kernels
