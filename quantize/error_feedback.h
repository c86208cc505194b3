// Error-feedback quantization (the GPTQ / OBQ family) of one linear layer's weight tensor into
// any ggml block format that smolq can encode. See docs/optimize.md, "The method".
//
// The layer computes y = W x with W: rows x d_in (ggml layout: a row is one output feature and
// blocks run along d_in). Given H = sum over calibration tokens of x x^T, the output error of a
// quantized W^ is  sum_rows (w - w^)^T H (w - w^).  Rounding the columns one at a time and, after
// each column, moving its rounding error onto the columns not yet rounded (weighted by H^-1)
// minimises that error far better than rounding every weight on its own. The block formats stay
// exactly ggml's: a block's scales (and mins, and K-quant sub-block scales) are chosen by the
// plain quantizer's own search when the block's first column is reached, from the weights as
// updated so far; each column is then rounded with those fixed scales.
//
// Work per tensor: one factorisation of H (O(d_in^3), shared by all rows and reusable across
// tensors that read the same input: prepare() + the Factor overload), then O(rows * d_in^2)
// for the updates, parallel over rows in fixed chunks: bytes never depend on the thread count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "formats/ggml_types.h"

namespace smolq::ef {

// The order in which the column sweep visits the blocks of a row. Inside a block the columns
// are always visited in their natural order (a block's scales are fixed when its first column
// is reached, so the order only matters at block granularity).
enum class ColumnOrder {
  kNatural,            // blocks left to right along d_in
  kDescendingDiag,     // blocks by descending sum of diag(H) over the block ("act order" at
                       // block granularity): the most important blocks are rounded first, while
                       // the most unquantized columns remain to absorb their error
};

struct Settings {
  // Tikhonov dampening added to diag(H), as a fraction of mean(diag H). Keeps H invertible
  // (dead or collinear input channels) and, above all, keeps the rounding from fitting the
  // calibration text's own directions. Measured on held-out inputs of toy layers, 0.3 is within
  // 4% of the best value whenever calibration has >= 2 d_in tokens or the inputs are correlated,
  // where GPTQ's usual 0.01 loses up to 2x on small calibration sets
  // (tests/cpp/test_error_feedback.cpp, docs/optimize.md "Settings").
  double damp = 0.3;
  ColumnOrder order = ColumnOrder::kDescendingDiag;
  // Scale refits after the sweep (docs/optimize.md, "Scale refit"): 0 = none; 1 = with every
  // row's integer levels fixed, the block scales (the f16 d, and the f16 min where the family
  // has one) are solved jointly by H~-weighted least squares, rounded to f16 and kept when that
  // lowers the row's error; 2+ = re-sweep with the refitted scales fixed and refit again.
  // Skipped when H is diagonal (the plain search's choice stands). Only the families with a min
  // (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) unless refit_scale_only: measured by llama.cpp's KLD, the
  // refit helped those and cost the scale-only families (Q4_0, Q3_K, IQ4, the lattices). Off by
  // default (--opt-refit 1 turns it on): it doubles the cost of --optimize and its gain is within
  // noise on the real model (docs/optimize.md, "What was tried").
  int refit_rounds = 0;
  bool refit_scale_only = false;  // also refit the families without a min
  // Coordinate-descent passes after the sweep (docs/optimize.md, "Coordinate descent";
  // quantize/ef_cd.h): with the block scales fixed, every element's level (lattice: every sign
  // group's code) is moved to its best value given all the others when that lowers the damped
  // objective; 0 = off. Skipped when H is diagonal (the plain search's choice stands). Passes
  // stop early when one changes nothing. Off by default (--opt-cd 4 turns it on): on the
  // sequential sweep it lowered most files by 1-6%, but on top of the asymmetric target (the
  // default inputs) it measured mixed (real Q4_K_M -4%, synthetic IQ2_XS +8%, the rest within
  // noise) for 15-50% more CPU (docs/optimize.md, "Coordinate descent after the sweep").
  int cd_iters = 0;
  // Dampening of the H~ the coordinate descent minimises (fraction of mean(diag H)); < 0 = the
  // sweep's `damp` (the default: on held-out toy layers more dampening wins when the inputs are
  // noise-dominated and less when they are factor-dominated, as for the sweep).
  double cd_damp = -1.0;
  // With cd_iters > 0: each pass first steps the K-quants' / IQ4_XS's integer sub-block scales
  // (and mins) by one where that lowers the objective, the sub-block's levels re-rounded. Off:
  // it helped the synthetic model's K-quant files (2-7%) but not the real Q2_K file, and adds CPU.
  bool cd_scales = false;
  // Lattice families (IQ2 / IQ3): a moved sign group is also coded by a full search of the
  // codebook in its OBQ group metric (ef_codec.h, search_group_metric), from each sign pattern
  // of the three candidate codes; the cheapest code in that metric wins (docs/optimize.md,
  // "Lattice groups").
  bool lattice_search = false;
  // Lattice families: each sub-block's scale code is re-chosen at the sub-block's first column
  // against the weights as updated so far, by the summed OBQ group costs of coding the
  // sub-block under each code (error_feedback.cpp, choose_sub_scale).
  bool lattice_scales = true;
};

// The factorisation of one input Gram matrix, reusable by every tensor that reads that input
// (attn q/k/v share one, ffn gate/up share one) as long as the block size matches.
struct Factor {
  int64_t d_in = 0;
  int block_elems = 0;           // block granularity of the column order (32 or 256)
  std::vector<int32_t> order;    // visiting order of the blocks (block indices along d_in)
  // Upper Cholesky factor U of the damped H^-1 (H^-1 = U^T U), in visiting order (row/column k
  // is the k-th visited column): its upper triangle packed row by row, d_in (d_in + 1) / 2
  // floats (float is enough: the factor only scales the errors that are passed on).
  std::vector<float> u;
  // For the scale refit (Settings::refit_rounds > 0) and the coordinate descent (cd_iters > 0): the damped H~ in visiting order, d_in x
  // d_in floats row-major, and whether it has any off-diagonal entry (no refit when not).
  std::vector<float> h;
  bool coupled = false;
  int refit_rounds = 0;
  int cd_iters = 0;         // Settings::cd_iters (needs h)
  double cd_shift = 0.0;    // added to h's diagonal for the coordinate descent (cd_damp - damp)
  double lambda = 0.0;      // the dampening added to H's diagonal (damp * mean(diag H)): H~ = H + lambda I
  bool cd_scales = false;   // Settings::cd_scales
  bool lattice_search = true;  // Settings::lattice_search
  bool lattice_scales = true;  // Settings::lattice_scales
  bool refit_scale_only = false;
  // Row k of U: row(k)[j] = U[k][j] for k <= j < d_in.
  const float* row(int64_t k) const { return u.data() + k * d_in - k * (k - 1) / 2 - k; }
  float* row(int64_t k) { return u.data() + k * d_in - k * (k - 1) / 2 - k; }
};

// H: d_in x d_in symmetric positive semi-definite, row-major: the sum over calibration tokens of
// x x^T for the layer's input (any overall scale). block_elems: the block size of the type to be
// quantized (registry geometry). Throws UsageError (formats/error.h) when H is not finite or not
// positive definite after dampening, or sizes do not match.
// Memory: besides H, a float copy in visiting order that the factorisation works in (4 d_in^2
// bytes) and that becomes the factor in place (its pages beyond the packed 2 d_in^2 bytes are
// released). The vector overload consumes H: its rows are released as the copy takes them, so
// its peak is H's size, not H plus the copy (at d_in = 8192: 512 MB instead of 768).
Factor prepare(std::vector<double> H, int64_t d_in, int block_elems, const Settings& s, int n_threads);
Factor prepare(std::span<const double> H, int64_t d_in, int block_elems, const Settings& s, int n_threads);
// The same from H in float (each element float(H)) with its diagonal in double, as the
// calibration pass hands it over (eval/gram.h): the same factor as from the double H.
Factor prepare(std::vector<float> H, std::span<const double> diag, int64_t d_in, int block_elems, const Settings& s,
               int n_threads);
Factor prepare(std::span<const float> H, std::span<const double> diag, int64_t d_in, int block_elems, const Settings& s,
               int n_threads);

// W: rows x d_in floats. imatrix: d_in importance weights for the block scale searches (normally
// diag(H) / n_tokens, exactly what the plain quantizer would get; empty = none). Writes
// rows * row_bytes(type, d_in) bytes to `out`. Bytes do not depend on n_threads.
// With a diagonal H the result is byte-identical to the plain kernel given the same imatrix.
void quantize_tensor(GgmlType type, std::span<const float> W, int64_t rows, int64_t d_in,
                     std::span<const double> H, std::span<const float> imatrix, const Settings& s,
                     std::span<std::byte> out, int n_threads);
// The same with a factor from prepare() (its block_elems must be the type's block size).
void quantize_tensor(GgmlType type, std::span<const float> W, int64_t rows, int64_t d_in, const Factor& f,
                     std::span<const float> imatrix, std::span<std::byte> out, int n_threads);

// True for every type this quantizer implements (the driver quantizes the others plainly).
bool supports(GgmlType type);
// True for the lattice-codebook families (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S).
bool is_lattice(GgmlType type);

}  // namespace smolq::ef
