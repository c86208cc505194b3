// Internal to the legacy 32-element quantizers (legacy_quants.cpp): the per-block encoders
// (scale search + f16 neighbour search) and their batched AVX2 form, which runs the same
// search on eight blocks at once, one block per vector lane (legacy_batch.cpp).
//
// Each lane performs the scalar search's float operations for its own block in the scalar
// order (elements summed in order, the same products, divisions, comparisons and tie rules;
// no FMA), so a lane's result is bit for bit the one encode_symmetric / encode_affine give for
// that block. Early exits of the scalar search (a refinement pass that changed nothing, an
// alternation that did not improve) leave its state unchanged, so lanes that would have
// stopped simply repeat a no-op while the others continue.
#pragma once
#include <cstdint>

#include "formats/half.h"
#include "quantize/quant_search.h"

namespace smolq::kernels::legacy {

// Next f16 magnitude up/down with the same sign (0 when it would leave the finite range).
inline uint16_t f16_step(uint16_t h, int dir) {
  const uint16_t mag = h & 0x7fffu, sign = h & 0x8000u;
  if (dir > 0) return mag >= 0x7bffu ? 0 : static_cast<uint16_t>(sign | (mag + 1));
  return mag <= 1u ? 0 : static_cast<uint16_t>(sign | (mag - 1));
}

// Offset neighbour of an affine block in direction dm (-1, 0, +1): stepping the magnitude of
// a zero offset is meaningless, so a zero steps to the smallest subnormal of that sign.
inline uint16_t offset_step(uint16_t m, int dm) {
  if (dm == 0) return m;
  return (m & 0x7fffu) == 0 ? static_cast<uint16_t>(dm > 0 ? 0x0001u : 0x8001u) : f16_step(m, dm);
}

// The stored (f16) scales an encoder tries once the search has fitted a float scale (and
// offset); the first of them with the lowest error wins (ties keep the earlier one).
enum class F16Candidates : uint8_t {
  kRounded,     // the f16 rounding of the fit only
  kNeighbours,  // it and its f16 neighbours: d -+ 1 step (symmetric), the 3 x 3 grid of (d, m) (affine)
  kMinMaxRule,  // affine: it and the min/max rule's (d, m) = ((max - min) / nmax, min) in f16
};

// The min/max rule's stored (d, m) of a block with minimum lo and maximum hi: d = 0 (no
// candidate) unless hi > lo. lo + 0 turns a -0 minimum into +0: which zero a min reduction
// returns for a block holding both depends on its order, the bytes must not.
inline void minmax_rule_f16(float lo, float hi, float nmax, uint16_t& d16, uint16_t& m16) {
  d16 = hi > lo ? qsearch::scale_to_f16((hi - lo) / nmax) : 0;
  m16 = f32_to_f16(lo + 0.0f);
}

// Eight consecutive 32-element blocks (x, w: 256 floats each, block j at offset 32 j). Weights:
// w; or, w null, sqrt(s2[j] + x^2) for block j (qsearch::element_weights without importance,
// made in the batch: the same floats); or, both null, every weight 1 (the same search as
// given ones).
// Symmetric formats (Q4_0: lo -8, hi 7; Q5_0: -16, 15): f16 scale bits d16[j] and levels
// L[32 j + i] in [lo, hi], exactly as the single-block encoder with the same search.
void encode_symmetric8_avx2(const float* x, const float* w, const float* s2, int lo, int hi,
                            const qsearch::SymmetricSearch& cfg, F16Candidates f16c, uint16_t* d16, int8_t* L);
// Affine formats (Q4_1: nmax 15; Q5_1: 31), offset free in sign: f16 scale and offset bits
// and levels in [0, nmax]. Returns false (writing nothing) when a block of the eight needs
// the scalar search's rare paths (a candidate scale that underflows to zero, i.e. values
// near the float range); the caller then encodes those eight blocks one by one.
bool encode_affine8_avx2(const float* x, const float* w, const float* s2, int nmax, const qsearch::AffineSearch& cfg,
                         F16Candidates f16c, uint16_t* d16, uint16_t* m16, uint8_t* L);

}  // namespace smolq::kernels::legacy
