// Measured mixed precision, the pure half: which types each tensor may take, and the
// allocation of one type per tensor that minimises the predicted divergence of the model
// under a byte budget (issue 9; docs/mixed-precision.md).
//
// The problem is a multiple-choice knapsack: item t (a weight tensor) takes exactly one option
// k (a quant type) of `bytes[t][k]` bytes and predicted cost `cost[t][k]` (ΔKLD, nats);
// minimise Σ cost subject to Σ bytes ≤ budget. Costs are assumed additive across tensors (the
// profile measures how well that holds). The solver combines:
//   1. Lagrangian relaxation: per tensor the lower convex hull of (bytes, cost); the hull
//      segments of all tensors, applied in order of decreasing "cost saved per byte", trace
//      every solution of min Σ cost + λ Σ bytes (that is the bisection on λ done exactly);
//      the last one within budget is the Lagrangian solution and gives a lower bound;
//   2. greedy fill: the leftover bytes buy the best remaining upgrades, hull or not;
//   3. knapsack repair: an exact dynamic programme over bytes counted in coarse units (sizes
//      rounded up, so its answers always fit), itself followed by the greedy fill. When the
//      table would be too large the unit grows; the best of 2 and 3 is returned.
// Everything is deterministic: ties go to the smaller option, then the lower tensor index;
// no threads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "formats/ggml_types.h"
#include "quantize/tensor_roles.h"

namespace smolq {

// ---------------------------------------------------------------------------------------
// Candidates

struct CandidateOptions {
  // Types that llama.cpp only writes with importance data (IQ2_XXS, IQ2_XS, IQ2_S) are offered
  // only when the quantization will use an importance matrix.
  bool has_imatrix = false;
  bool include_f16 = true;  // F16 as the lossless top option (the allocator rarely picks it)
};

// The quant types a weight tensor may take, in increasing bits per weight: every type of the
// candidate ladder (allocate.cpp: kCandidateLadder, ~2 to 8.5 bpw, plus F16) whose block
// divides the row length, that has an encoder and decoder in the registry, and that llama.cpp
// runs on CPU for any 2-D weight. Empty for tensors llama.cpp never quantizes (norms, 1-D).
std::vector<GgmlType> candidate_types(const TensorShape& t, const CandidateOptions& o);

// ---------------------------------------------------------------------------------------
// Solver

struct AllocOption {
  GgmlType type = GgmlType::F32;
  uint64_t bytes = 0;  // as counted against the budget (e.g. padded to the GGUF alignment)
  double cost = 0;     // predicted ΔKLD of this tensor at this type (>= 0)
};

struct AllocItem {
  std::string name;
  std::vector<AllocOption> options;  // at least one
};

struct AllocStats {
  double lagrangian_cost = 0;   // Σ cost of step 1's solution
  double lower_bound = 0;       // Lagrangian dual bound: no allocation within budget costs less
  double lambda = 0;            // the multiplier of the last applied hull segment (cost per byte)
  uint64_t dp_unit = 0;         // bytes per unit of the dynamic programme (0: not run)
  bool dp_won = false;          // the dynamic programme improved on the greedy fill
};

struct AllocResult {
  std::vector<size_t> choice;   // option index per item
  uint64_t bytes = 0;           // Σ bytes of the chosen options
  double cost = 0;              // Σ cost of the chosen options
  AllocStats stats;
};

struct AllocLimits {
  // Largest dynamic-programme table (items x units, one byte per cell); the unit of bytes is
  // raised until the table fits. 64M cells: ~0.2 s and 64 MiB for 211 tensors.
  uint64_t max_dp_cells = 64ull << 20;
};

// Minimise Σ cost subject to Σ bytes ≤ budget. Throws UsageError when even the smallest
// option of every item exceeds the budget (the message gives that minimum).
AllocResult allocate(std::span<const AllocItem> items, uint64_t budget, const AllocLimits& limits = {});

// Exhaustive search, for tests on small instances (asserts fewer than ~1e7 combinations).
AllocResult allocate_brute_force(std::span<const AllocItem> items, uint64_t budget);

}  // namespace smolq
