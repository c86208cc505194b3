// What an importance matrix says, as numbers a person can read (`smolq imatrix
// --show-statistics`, llama-imatrix's option of the same name), and which weights it covers.
//
// Statistics, per entry, over its per-column importances a_j = in_sum2_j / count (every matrix
// of the entry that has data, concatenated; N of them):
//   Σ(Act²)   sum of a_j                 Min / Max   smallest / largest a_j
//   μ, σ      mean and population standard deviation of a_j
//   % Active  share of a_j above 1e-5    Entropy     -Σ p_j log2 p_j with p_j = a_j / Σ(Act²)
//   E (norm)  entropy / log2(N)          ZD          share of a_j more than one σ above μ
//   CosSim    cosine similarity of the raw sums with those of the same tensor one block earlier
//             (0 for block 0 and for weights outside blk.*)
// and per block the averages of Σ(Act²), ZD and CosSim weighted by N.
//
// Computed in float, in llama.cpp's order of operations (sequential sums from 0), and printed
// with its format, rows sorted by tensor kind then by Σ(Act²) descending: the two tools'
// tables of the same file agree to the last printed digit (tests/python/test_imatrix_parity.py).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "formats/imatrix.h"

namespace smolq {

struct ImatrixTensorStats {
  std::string name;    // "blk.3.attn_q.weight"
  std::string layer;   // "3", or "-" outside blk.*
  std::string kind;    // "attn_q": the name part before ".weight" (the whole name if none)
  int block = -1;      // layer as a number, -1 outside blk.*
  float total = 0, min = 0, max = 0, mean = 0, stddev = 0;
  float active = 0;    // share in [0, 1]
  float entropy = 0;   // bits
  float zd = 0;        // share in [0, 1]
  float cossim = 0;
  int elements = 0;    // N
};

struct ImatrixLayerStats {
  int block = 0;
  float total = 0, zd = 0, cossim = 0;  // N-weighted means over the block's tensors
};

struct ImatrixStatistics {
  std::vector<ImatrixTensorStats> tensors;  // in print order
  std::vector<ImatrixLayerStats> layers;    // by block number
  std::vector<std::string> no_data;         // entries without a single counted token
};

// `d` must hold raw sums (not legacy data: merge it first, as llama-imatrix does on loading).
ImatrixStatistics imatrix_statistics(const ImatrixData& d);
// llama-imatrix's two tables ("Computing statistics for SOURCE ...").
std::string format_imatrix_statistics(const ImatrixStatistics& s, const std::string& source);

// Which weights have how much data. An entry is partial when some of its matrices (experts)
// never saw a token, short when it counted fewer tokens than the best-covered entry (e.g. a
// merge of files that collected different weights), missing when the model has the weight but
// the imatrix has no entry for it.
struct ImatrixCoverage {
  struct Partial {
    std::string name;
    size_t with_data = 0, n_mat = 0;
  };
  struct Short {
    std::string name;
    int64_t count = 0;
  };
  size_t n_entries = 0;
  int64_t max_count = 0;
  std::vector<Partial> partial;       // includes entries with no data at all (with_data == 0)
  std::vector<Short> short_count;
  std::vector<std::string> missing;
  bool complete() const { return partial.empty() && short_count.empty() && missing.empty(); }
};

// `expected`: the weight names a collection on the model would fill (empty: not checked).
ImatrixCoverage imatrix_coverage(const ImatrixData& d, std::span<const std::string> expected);
std::string format_imatrix_coverage(const ImatrixCoverage& c);

}  // namespace smolq
