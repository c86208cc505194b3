// The scale refit of the error-feedback quantizer (docs/optimize.md, "Scale refit"): after the
// column sweep, with every element's integer level (or lattice code) fixed, a row's decoded
// values are linear in its blocks' f16 scale fields. The refit solves the damped-H-weighted
// least squares  min_s (w - w^(s))^T H~ (w - w^(s))  for them jointly over the row, rounds the
// solution to f16 and writes it only when that lowers the row's error.
#pragma once
#include <cstddef>
#include <vector>

#include "quantize/ef_codec.h"
#include "quantize/error_feedback.h"

namespace smolq::ef::detail {

struct RefitScratch {
  std::vector<float> p, q, G;     // the row's d-part and min-part (d_in each), H~ B (d_in x n)
  std::vector<double> N, rhs, s;  // the n x n normal system
  std::vector<int> col_block, col_kind;
};

// Refits the scales of one row. w0: the original row in visiting order (d_in floats); blocks[b]:
// the ggml block of visiting block b. Exactly one of sc / lc. The factor must carry H~
// (f.h non-empty). Returns true when the blocks were rewritten.
bool refit_row(const Factor& f, const ScalarCodec* sc, const LatticeCodec* lc, GgmlType type, const float* w0,
               std::byte* const* blocks, RefitScratch& scratch);

}  // namespace smolq::ef::detail
