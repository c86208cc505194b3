// Block codecs of the error-feedback quantizer (quantize/error_feedback.h): how one ggml block
// splits into "choose the scales" (the plain kernel's own search), "the grid every element may
// take under those scales" and "the integer levels" (unpacked from / packed into the exact ggml
// bytes). The column sweep in error_feedback.cpp drives these; the codecs live in
// ef_scalar.cpp (legacy, Q8_0, K-quants, IQ4) and ef_lattice.cpp (IQ2 / IQ3 codebooks).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "formats/ggml_types.h"
#include "quantize/iq_lattice.h"

namespace smolq::ef::detail {

// A block struct read from / written to its bytes in a row (the codecs' unpack and pack
// functions and the coordinate descent's scale codes work on copies).
template <class Block>
Block load(const std::byte* p) {
  Block b;
  std::memcpy(&b, p, sizeof b);
  return b;
}
template <class Block>
void store(std::byte* p, const Block& b) {
  std::memcpy(p, &b, sizeof b);
}

// Element j of a chosen block decodes as  a * level + b  (uniform grid, level in [lo, hi]), or
// a * table[level] + b  for the IQ4 non-uniform table (level in [0, 15]).
struct ElementGrid {
  float a = 0.0f, b = 0.0f;
  int lo = 0, hi = 0;
};

// A family whose elements are rounded one at a time (every non-lattice type).
struct ScalarCodec {
  int block_elems;
  int block_bytes;
  const int8_t* table;  // IQ4 value table (16 entries) or nullptr for a uniform grid
  // The plain kernel's search for one block of the current weights x; imatrix: the block's
  // slice or nullptr; row_sigma2: mean square of the whole original row (the weighting of the
  // 32-element legacy types uses it, the others weight per block). Writes the ggml block.
  void (*choose)(const float* x, const float* imatrix, float row_sigma2, std::byte* blk);
  // Per element: the grid under the block's scales, and its current level.
  void (*unpack)(const std::byte* blk, ElementGrid* grid, int* level);
  // Writes the levels back into the block's quant bits (scales untouched).
  void (*pack)(std::byte* blk, const int* level);
  // Byte offsets in the block of the f16 fields the scale refit may rescale: the scale every
  // element's step is a multiple of (d), and the min / offset (m, dmin; -1 when none).
  int d_off;
  int m_off;
};

// Lattice families (IQ2 / IQ3): each sign group of 8 weights is one or two codebook points
// plus sign bits; the sub-block scales are fixed when the block is chosen. The codes stay
// unpacked while the sweep runs.
struct LatticeState {
  iq::ScaledLatticeCodes codes;
  float w[256];  // the plain search's element weights for the block (as chosen)
};
struct LatticeCodec {
  GgmlType type;
  int block_elems;
  int block_bytes;
  int group;  // weights coded jointly: one sign group of 8
  // The plain kernel's search on the block's current weights x (imatrix slice or nullptr).
  void (*choose)(const float* x, const float* imatrix, LatticeState& st);
  // Re-codes group g for targets x[0..group) with the fixed scales, weighting the elements by
  // w (nullptr: the search's own weights st.w), and writes the decoded values to y; false
  // (nothing changed) when the group's sub-block scale is zero.
  bool (*recode)(LatticeState& st, int g, const float* x, const float* w, float* y);
  void (*pack)(const LatticeState& st, std::byte* blk);
  const iq::ScaledLatticeSpec* spec;  // the format's codebook, levels and sub-block scales
};

// The full codebook search of one sign group (ef_lattice_search.cpp): with the sign bits fixed,
// the codebook point(s) minimising |L (x - y)|^2 at the decoded sub-block scale s > 0, where
// lt is L row-major (8 x 8, lower triangular; the error-feedback group metric has L = M^-T).
// grid: in, the codes to start from (8 / dim entries); out, the best found, never worse in that
// metric than the start (exact for 8-d codebooks; 4-d pairs are searched one point at a time
// with the other fixed). y: the decoded values, s * level * sign as code_group writes them.
void search_group_metric(const iq::ScaledLatticeSpec& spec, const float* x, const float* lt, float s, uint8_t signs,
                         uint16_t* grid, float* y);

// Every lattice block (IQ2_XXS .. IQ3_S) starts with its f16 super-block scale d; every element
// decodes as d times a function of the codes (the scale refit's only unknown for them).
constexpr int kLatticeDOff = 0;

// nullptr when the type has no codec of that kind.
const ScalarCodec* scalar_codec(GgmlType t);
const LatticeCodec* lattice_codec(GgmlType t);

// Nearest level of value v on a grid (ties to the lower level for tables, to even for uniform
// grids, as the plain kernels round), and the value it decodes to.
int nearest_level(const ElementGrid& g, const int8_t* table, float v);
inline float grid_value(const ElementGrid& g, const int8_t* table, int level) {
  return table ? g.a * static_cast<float>(table[level]) + g.b : g.a * static_cast<float>(level) + g.b;
}

}  // namespace smolq::ef::detail
