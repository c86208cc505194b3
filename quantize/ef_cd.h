// Coordinate descent after the error-feedback sweep (docs/optimize.md, "Coordinate descent";
// the QuantEase idea: Behdin et al. 2023, cyclic coordinate descent on the layer's quadratic
// objective, started from the GPTQ solution with the block scales fixed).
//
// The sweep decides every element once, left to right, with the errors of the columns after it
// still unknown. Afterwards the whole row is known, and the damped objective
//   f(w^) = (w - w^)^T H~ (w - w^)
// can be lowered further one coordinate at a time: with r = H~ (w^ - w), moving element k by
// delta changes f by  2 delta r_k + delta^2 H~_kk,  so the best value for element k given all the
// others is the grid value nearest to  w^_k - r_k / H~_kk  (a one-dimensional convex quadratic).
// A move is taken only when it lowers f, and then r += delta H~[:, k]. For the lattice families
// the coordinate is a sign group of 8 weights: candidate codes for the group's unconstrained
// optimum are scored by the exact quadratic of the group (8 x 8 block of H~).
// The block scales stay as the sweep (or the refit) left them; only levels and codes change, so
// blocks are rewritten with the codecs' own pack functions (ggml's bit layouts).
#pragma once
#include <cstddef>
#include <vector>

#include "quantize/ef_codec.h"
#include "quantize/error_feedback.h"
#include "quantize/iq_lattice.h"

namespace smolq::ef::detail {

// The integer sub-block scales (and mins) of a K-quant / IQ4_XS block, read and written in
// place in the ggml bytes (the super-block f16 fields are untouched). The coordinate descent's
// optional scale step moves one sub-block's code by one and re-rounds that sub-block's levels;
// the codec's unpack (ef_codec.h) then gives the exact grid.
struct SubScaleCodec {
  int n_sub;              // sub-blocks per block
  int sub_elems;          // elements per sub-block
  int sc_lo, sc_hi;       // range of the scale code (as the decoder multiplies it)
  int m_lo, m_hi;         // range of the min code; m_hi < m_lo when the family has no min
  void (*get)(const std::byte* blk, int s, int& sc, int& m);
  void (*set)(std::byte* blk, int s, int sc, int m);
  // The step a and offset b of a sub-block with codes (sc, m) under the block's f16 fields,
  // exactly as the codec's unpack forms them (the grid's lo / hi do not depend on the codes).
  void (*grid)(const std::byte* blk, int sc, int m, float& a, float& b);
};
// nullptr for families without integer sub-block scales.
const SubScaleCodec* subscale_codec(GgmlType t);

// Per-thread buffers for a chunk of rows (sized on first use).
struct CdScratch {
  std::vector<float> D;  // nr x d_in: w - w^ (visiting order), the operand of the residual product
  std::vector<float> R;  // nr x d_in: r = H~ (w^ - w)
  std::vector<float> y;  // d_in: one row's decoded values w^
  std::vector<ElementGrid> grid;
  std::vector<int> level;
  // Lattice families: the codes of every block of the chunk as the sweep left them (the sweep
  // fills them; nr x (d_in / 256)), so that groups can be re-coded without unpacking ggml bytes.
  std::vector<iq::ScaledLatticeCodes> codes;
};

// Coordinate descent on rows [0, nr) of a chunk. W0: the original rows in visiting order (nr x
// d_in); blocks[r * nb + b]: the ggml block of row r's visiting block b. Exactly one of sc / lc;
// with lc, s.codes must hold the sweep's codes of these blocks. The factor must carry H~
// (f.h). Runs f.cd_iters passes over each row (fewer when a pass changes nothing); with
// f.cd_scales, each pass first tries the sub-block scale steps. Returns the number of accepted
// moves (for tests and statistics).
int64_t cd_rows(const Factor& f, const ScalarCodec* sc, const LatticeCodec* lc, GgmlType type, const float* W0,
                int64_t nr, std::byte* const* blocks, CdScratch& s);

}  // namespace smolq::ef::detail
