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
#include <span>
#include <string>
#include <vector>

#include "formats/imatrix.h"
#include "eval/forward.h"
#include "eval/perplexity.h"

namespace smolq {

// Copies of the collection written while it runs (llama-imatrix's --save-frequency and
// --output-frequency), after every chunk whose number is a multiple of the frequency. Chunks
// are numbered as in the file's imatrix.chunk_count: most tokens of any entry / chunk_size,
// so they continue the count of --in-file data. llama.cpp takes its copies inside the forward
// pass of the chunk that completes them (the first weight is one chunk ahead of the rest);
// these are taken between chunks, so every entry of copy N holds exactly N chunks.
struct ImatrixCheckpoints {
  std::string path;                           // the output; kept copies are path + ".at_<chunk>"
  ImatrixFormat format = ImatrixFormat::Gguf;
  int64_t save_every = 0;                     // --save-frequency: keep a copy every N chunks (0: none)
  int64_t output_every = 0;                   // --output-frequency: rewrite `path` every N chunks (0: at the end only)
  std::vector<std::string> datasets;          // this run's texts (after those of --in-file)
  int32_t chunk_size = 512;
};

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

  // Chunks collected so far, --in-file data included (imatrix.chunk_count of data()).
  int32_t chunks_done(int32_t chunk_size) const;
  void set_checkpoints(ImatrixCheckpoints c);
  // Called after every chunk (collect_imatrix does): writes the copies that are due. Returns
  // the paths written.
  std::vector<std::string> end_chunk();

 private:
  struct Entry {
    std::vector<double> sums;
    int64_t count = 0;
  };
  bool process_output_;
  int n_threads_;
  std::map<std::string, Entry> entries_;
  ImatrixData merged_;  // --in-file data, added when data() is built
  ImatrixCheckpoints checkpoints_;
  int32_t last_chunk_ = -1;  // chunk count at the previous end_chunk(); -1: none yet
};

// The weights a collection on `model` fills (the keys of its imatrix), for coverage reports.
std::vector<std::string> imatrix_weight_names(const Model& model, bool process_output);

// llama-imatrix --chunk N: drop the first N chunks of the token stream. Throws UsageError
// when fewer than two chunks and a token would remain (llama.cpp's requirement).
std::span<const int32_t> skip_chunks(std::span<const int32_t> tokens, int64_t n_skip, int64_t n_ctx);

// Run the calibration text through the model chunk by chunk, feeding the collector (and
// writing its checkpoints after each chunk); the perplexity of the text comes for free
// (scored as in perplexity.h). Several calls on one collector continue its chunk count.
PerplexityResult collect_imatrix(const Model& model, std::span<const int32_t> tokens, const EvalOptions& o,
                                 ImatrixCollector& collector, const PerplexityCallback& on_chunk = {});

}  // namespace smolq
