// The IQ2 / IQ3 lattice formats as "search + pack" pairs, for callers that code a block in
// steps (the error-feedback quantizer, quantize/error_feedback.h): `spec` drives
// iq::quantize_scaled_lattice exactly as the format's kernel does, and `pack` writes the codes
// as the format's ggml block, so search + pack == the kernel's bytes.
#pragma once
#include <cstddef>

#include "formats/ggml_types.h"
#include "quantize/iq_lattice.h"

namespace smolq::kernels {

struct LatticeFormat {
  GgmlType type;
  const iq::ScaledLatticeSpec* spec;
  void (*pack)(const iq::ScaledLatticeCodes& c, std::byte* block);
};

// nullptr for types that are not IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS or IQ3_S.
const LatticeFormat* lattice_format(GgmlType t);
// Per file (iq2.cpp, iq3.cpp).
const LatticeFormat* lattice_format_iq2(GgmlType t);
const LatticeFormat* lattice_format_iq3(GgmlType t);

}  // namespace smolq::kernels
