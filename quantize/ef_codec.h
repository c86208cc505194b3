// Block codecs of the error-feedback quantizer (quantize/error_feedback.h): how one ggml block
// splits into "choose the scales" (the plain kernel's own search), "the grid every element may
// take under those scales" and "the integer levels" (unpacked from / packed into the exact ggml
// bytes). The column sweep in error_feedback.cpp drives these; the codecs live in
// ef_scalar.cpp (legacy, Q8_0, K-quants, IQ4) and ef_lattice.cpp (IQ2 / IQ3 codebooks).
#pragma once
#include <cstddef>
#include <cstdint>

#include "formats/ggml_types.h"

namespace smolq::ef::detail {

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
};

// Lattice families: groups of `group` weights share one codebook entry plus sign bits; the
// scales of a sub-block are fixed when the block is chosen.
struct LatticeCodec {
  GgmlType type;
  int block_elems;
  int block_bytes;
  int group;  // weights coded jointly (8: one codebook point with its 8 signs)
  void (*choose)(const float* x, const float* imatrix, std::byte* blk);
  // Re-codes group g of blk for targets x[0..group) (weights w) with the block's fixed scales;
  // writes the decoded values of the new code to y.
  void (*recode)(std::byte* blk, int g, const float* x, const float* w, float* y);
  // The element weights the group search uses (the plain kernel's weighting of this block).
  void (*weights)(const float* x, const float* imatrix, float* w);
};

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
