// IQ2_XXS, IQ2_XS, IQ2_S: 2-bit-class lattice formats. Each group of 8 weights is a point
// of an E8-like codebook over the magnitudes {8, 25, 43} plus 8 signs; a 4-bit code per
// sub-block scales it by d * (0.5 + code) / 4, with d the super-block f16 scale.
//
//   IQ2_XXS (2.0625 bpw): per 32 weights two uint32: 4 grid bytes (256-point grid), then
//            4 x 7 sign bits (even-parity sign code, iq_tables.h) and the 4-bit scale in
//            the top nibble.
//   IQ2_XS  (2.3125 bpw): per 8 weights a uint16: 9-bit index into the 512-point grid and
//            7 parity-coded sign bits; one 4-bit scale per 16 weights.
//   IQ2_S   (2.5625 bpw): 10-bit index into the 1024-point grid (8 low bits in qs, 2 high
//            bits in qh), 8 free sign bits per group; one 4-bit scale per 16 weights.
// The search (iq_lattice.cpp) models the decoded values exactly, grid bytes included.
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

// First-pass scales: the largest magnitude of a sub-block is tried at these fractions of
// the top level (43); the best is then refitted by least squares (refine_iters rounds). The
// small grid of IQ2_XXS leaves most rounded points off-grid, so it gets a denser start set.
constexpr float kIq2xxsTrials[] = {0.76f, 0.84f, 0.92f, 1.00f, 1.08f, 1.16f, 1.24f};
constexpr float kIq2xsTrials[] = {0.82f, 0.92f, 1.02f, 1.12f};
constexpr float kIq2sTrials[] = {0.82f, 0.92f, 1.02f, 1.12f};

// Decoded sub-block scale for code l: d * (0.5 + l) * 0.25.
ScaledLatticeSpec make_spec(const iq::Lattice* lat, int sub, bool parity, std::span<const float> trials,
                            int refine_iters = 1) {
  ScaledLatticeSpec s{};
  s.lattice = lat;
  s.levels = {8, 25, 43, 0, 0, 0, 0, 0};
  s.sub_size = sub;
  s.scale_codes = 16;
  for (int l = 0; l < 16; ++l) s.scale_mult[l] = (0.5f + l) * 0.25f;
  s.parity_signs = parity;
  s.trial_factors = trials;
  s.refine_iters = refine_iters;
  return s;
}

// y = db * grid * sign, in ggml's operation order (the float products must match bit for bit).
inline void emit8(float db, uint64_t grid, uint8_t signs, float* y) {
  for (int j = 0; j < 8; ++j) y[j] = db * static_cast<float>(iq::grid_byte(grid, j)) * ((signs >> j) & 1 ? -1.f : 1.f);
}

}  // namespace

// ---- IQ2_XXS ------------------------------------------------------------------------------

namespace {
const ScaledLatticeSpec& spec_iq2_xxs() {
  static const ScaledLatticeSpec spec = make_spec(&iq::lattice_iq2xxs(), 32, true, kIq2xxsTrials, 2);
  return spec;
}
void pack_iq2_xxs(const ScaledLatticeCodes& c, BlockIQ2_XXS& b) {
  b.d = c.d.bits;
  for (int ib = 0; ib < 8; ++ib) {
    uint32_t aux[2] = {0, static_cast<uint32_t>(c.scale[ib]) << 28};
    for (int l = 0; l < 4; ++l) {
      aux[0] |= static_cast<uint32_t>(c.grid[4 * ib + l]) << (8 * l);
      aux[1] |= static_cast<uint32_t>(c.signs[4 * ib + l] & 127) << (7 * l);
    }
    std::memcpy(b.qs + 4 * ib, aux, sizeof aux);
  }
}
}  // namespace

void quantize_iq2_xxs_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                         std::span<const float> imatrix) {
  iq::encode_rows<BlockIQ2_XXS, kQKK>(src, dst, n_per_row, iq::importance_powers(imatrix), [](const float* x, const float* qw, BlockIQ2_XXS& b) {
    ScaledLatticeCodes c;
    iq::quantize_scaled_lattice(spec_iq2_xxs(), x, qw, c);
    pack_iq2_xxs(c, b);
  });
}

void dequantize_iq2_xxs(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockIQ2_XXS, kQKK>(src, dst, [](const BlockIQ2_XXS& b, float* y) {
    const float d = f16_to_f32(b.d);
    for (int ib = 0; ib < 8; ++ib) {
      uint32_t aux[2];
      std::memcpy(aux, b.qs + 4 * ib, sizeof aux);
      const float db = d * (0.5f + static_cast<float>(aux[1] >> 28)) * 0.25f;
      for (int l = 0; l < 4; ++l) {
        const uint8_t grid_index = static_cast<uint8_t>(aux[0] >> (8 * l));
        emit8(db, iq::kIq2xxsGrid[grid_index], iq::kSignsIq2[(aux[1] >> (7 * l)) & 127], y);
        y += 8;
      }
    }
  });
}

// ---- IQ2_XS -------------------------------------------------------------------------------

namespace {
const ScaledLatticeSpec& spec_iq2_xs() {
  static const ScaledLatticeSpec spec = make_spec(&iq::lattice_iq2xs(), 16, true, kIq2xsTrials);
  return spec;
}
void pack_iq2_xs(const ScaledLatticeCodes& c, BlockIQ2_XS& b) {
  b.d = c.d.bits;
  for (int g = 0; g < 32; ++g) b.qs[g] = static_cast<uint16_t>(c.grid[g] | ((c.signs[g] & 127) << 9));
  for (int ib = 0; ib < 8; ++ib) b.scales[ib] = static_cast<uint8_t>(c.scale[2 * ib] | (c.scale[2 * ib + 1] << 4));
}
}  // namespace

void quantize_iq2_xs_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                         std::span<const float> imatrix) {
  iq::encode_rows<BlockIQ2_XS, kQKK>(src, dst, n_per_row, iq::importance_powers(imatrix), [](const float* x, const float* qw, BlockIQ2_XS& b) {
    ScaledLatticeCodes c;
    iq::quantize_scaled_lattice(spec_iq2_xs(), x, qw, c);
    pack_iq2_xs(c, b);
  });
}

void dequantize_iq2_xs(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockIQ2_XS, kQKK>(src, dst, [](const BlockIQ2_XS& b, float* y) {
    const float d = f16_to_f32(b.d);
    for (int ib = 0; ib < 8; ++ib) {
      const float db[2] = {d * (0.5f + static_cast<float>(b.scales[ib] & 0xf)) * 0.25f,
                           d * (0.5f + static_cast<float>(b.scales[ib] >> 4)) * 0.25f};
      for (int l = 0; l < 4; ++l) {
        const uint16_t q = b.qs[4 * ib + l];
        emit8(db[l / 2], iq::kIq2xsGrid[q & 511], iq::kSignsIq2[q >> 9], y);
        y += 8;
      }
    }
  });
}

// ---- IQ2_S --------------------------------------------------------------------------------

namespace {
const ScaledLatticeSpec& spec_iq2_s() {
  static const ScaledLatticeSpec spec = make_spec(&iq::lattice_iq2s(), 16, false, kIq2sTrials);
  return spec;
}
void pack_iq2_s(const ScaledLatticeCodes& c, BlockIQ2_S& b) {
  b.d = c.d.bits;
  // qs[0..31]: low 8 index bits per group; qs[32..63]: the groups' sign bytes.
  for (int g = 0; g < 32; ++g) {
    b.qs[g] = static_cast<uint8_t>(c.grid[g] & 255);
    b.qs[32 + g] = c.signs[g];
  }
  for (int ib = 0; ib < 8; ++ib) {
    uint8_t h = 0;
    for (int l = 0; l < 4; ++l) h |= static_cast<uint8_t>(((c.grid[4 * ib + l] >> 8) & 3) << (2 * l));
    b.qh[ib] = h;
    b.scales[ib] = static_cast<uint8_t>(c.scale[2 * ib] | (c.scale[2 * ib + 1] << 4));
  }
}
}  // namespace

void quantize_iq2_s_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                         std::span<const float> imatrix) {
  iq::encode_rows<BlockIQ2_S, kQKK>(src, dst, n_per_row, iq::importance_powers(imatrix), [](const float* x, const float* qw, BlockIQ2_S& b) {
    ScaledLatticeCodes c;
    iq::quantize_scaled_lattice(spec_iq2_s(), x, qw, c);
    pack_iq2_s(c, b);
  });
}

void dequantize_iq2_s(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockIQ2_S, kQKK>(src, dst, [](const BlockIQ2_S& b, float* y) {
    const float d = f16_to_f32(b.d);
    const uint8_t* qs = b.qs;
    const uint8_t* signs = b.qs + kQKK / 8;
    for (int ib = 0; ib < 8; ++ib) {
      const float db[2] = {d * (0.5f + static_cast<float>(b.scales[ib] & 0xf)) * 0.25f,
                           d * (0.5f + static_cast<float>(b.scales[ib] >> 4)) * 0.25f};
      for (int l = 0; l < 4; ++l) {
        const int index = qs[l] | ((b.qh[ib] << (8 - 2 * l)) & 0x300);
        emit8(db[l / 2], iq::kIq2sGrid[index], signs[l], y);
        y += 8;
      }
      qs += 4;
      signs += 4;
    }
  });
}

// ---- search + pack pairs (quantize/iq_lattice_formats.h) -----------------------------------

const LatticeFormat* lattice_format(GgmlType t) {
  if (const LatticeFormat* f = lattice_format_iq2(t)) return f;
  return lattice_format_iq3(t);
}

const LatticeFormat* lattice_format_iq2(GgmlType t) {
  static const LatticeFormat kIQ2_XXS{GgmlType::IQ2_XXS, &spec_iq2_xxs(), [](const ScaledLatticeCodes& c, std::byte* out) {
    BlockIQ2_XXS b{};
    pack_iq2_xxs(c, b);
    std::memcpy(out, &b, sizeof b);
  }};
  static const LatticeFormat kIQ2_XS{GgmlType::IQ2_XS, &spec_iq2_xs(), [](const ScaledLatticeCodes& c, std::byte* out) {
    BlockIQ2_XS b{};
    pack_iq2_xs(c, b);
    std::memcpy(out, &b, sizeof b);
  }};
  static const LatticeFormat kIQ2_S{GgmlType::IQ2_S, &spec_iq2_s(), [](const ScaledLatticeCodes& c, std::byte* out) {
    BlockIQ2_S b{};
    pack_iq2_s(c, b);
    std::memcpy(out, &b, sizeof b);
  }};
  switch (t) {
    case GgmlType::IQ2_XXS: return &kIQ2_XXS;
    case GgmlType::IQ2_XS: return &kIQ2_XS;
    case GgmlType::IQ2_S: return &kIQ2_S;
    default: return nullptr;
  }
}

}  // namespace smolq::kernels
