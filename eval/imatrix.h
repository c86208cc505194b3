// Importance-matrix collection: per input column of every weight matrix, the sum over
// calibration tokens of the squared activation entering it, and the token count — what
// llama-imatrix computes, so quantizers can weight each column's rounding error by how strongly
// it is driven. Follows llama.cpp's rules:
//   - weights under "blk." (attn_q/k/v share the attn_norm output, ffn_gate/up share the
//     ffn_norm output; attn_output; ffn_down), plus "output.weight" only with process_output
//     (a tied output projection is token_embd and is never collected, as in llama.cpp);
//   - every token of every chunk counts (BOS substitution as in perplexity);
//   - batches of fewer than 16 tokens are ignored (llama.cpp skips them as generation steps).
// Sums are accumulated in double per column; the file stores them as f32 (formats/imatrix.h).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "formats/imatrix.h"
#include "eval/forward.h"
#include "eval/perplexity.h"

namespace smolq {

class ImatrixCollector : public ActivationObserver {
 public:
  // llama.cpp ignores matmuls over fewer rows than this (generation-time calls).
  static constexpr int64_t kMinRows = 16;

  ImatrixCollector(bool process_output, int n_threads);
  void observe(const WeightMatrix& w, const float* x, int64_t n_tokens) override;

  // Start from earlier results (llama-imatrix --in-file): GGUF data adds raw sums, legacy data
  // is scaled back by chunk_size.
  void merge(const ImatrixData& d, int32_t chunk_size);
  // The collection so far as file data (chunk_count = max count / chunk_size).
  ImatrixData data(const std::vector<std::string>& datasets, int32_t chunk_size) const;
  size_t n_entries() const { return entries_.size(); }

 private:
  struct Entry {
    std::vector<double> sums;
    int64_t count = 0;
  };
  bool process_output_;
  int n_threads_;
  std::map<std::string, Entry> entries_;
  ImatrixData merged_;  // --in-file data, added when data() is built
};

// Run the calibration text through the model chunk by chunk, feeding the collector; the
// perplexity of the text comes for free (scored as in perplexity.h).
PerplexityResult collect_imatrix(const Model& model, std::span<const int32_t> tokens, const EvalOptions& o,
                                 ImatrixCollector& collector, const PerplexityCallback& on_chunk = {});

}  // namespace smolq
