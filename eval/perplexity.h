// llama.cpp's perplexity protocol on a pre-tokenized text:
//   - the token stream is cut into floor(N / n_ctx) chunks of n_ctx tokens (optionally capped);
//   - each chunk is evaluated from an empty cache, its first token replaced by BOS when the
//     model's tokenizer adds one;
//   - only the second half is scored: positions first = n_ctx/2 ... n_ctx-2 predict tokens
//     first+1 ... n_ctx-1 (n_ctx - first - 1 scores per chunk).
// Both the plain perplexity run and the KL-divergence run (base and quantized model side by
// side, no logits file) use the same chunking, so their numbers line up with llama-perplexity's.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "eval/forward.h"
#include "eval/metrics.h"
#include "eval/model.h"

namespace smolq {

class ActivationObserver;

struct EvalOptions {
  int64_t n_ctx = 512;    // tokens per chunk
  int64_t n_chunks = -1;  // -1: every whole chunk of the text
  int64_t n_batch = 512;  // tokens per forward call (results do not depend on it)
  int n_threads = 1;
  bool add_bos = false;   // replace each chunk's first token with bos_id
  int32_t bos_id = 1;
  bool score = true;      // false: compute no logits and no perplexity (imatrix --no-ppl)
  // Chunks evaluated together in one forward pass (results do not depend on it); 0: as many as
  // fit a memory budget (chunks_per_pass()).
  int chunks_per_pass = 0;
};

// How many chunks run_perplexity / run_kl_divergence evaluate per pass: 1 when a chunk takes
// several batches or an observer is attached, else o.chunks_per_pass, or when that is 0 up to 4
// while the logits and caches of the pass stay under ~256 MiB per model. Small models gain most:
// every weight tile is decoded once per pass instead of once per chunk.
int chunks_per_pass(const Model& m, const EvalOptions& o, bool observed);

// Chunks the protocol will evaluate; throws Error when the text has fewer than 2 * n_ctx
// tokens (llama.cpp's requirement) or the options are inconsistent.
int64_t plan_chunks(int64_t n_tokens, const EvalOptions& o);

// Progress of a run, reported after every chunk.
struct ChunkProgress {
  int64_t chunk = 0;        // 1-based index of the chunk just finished
  int64_t n_chunks = 0;
  int64_t tokens_done = 0;  // tokens evaluated so far (per model)
  int64_t tokens_total = 0;
  double seconds = 0;       // wall time so far
};

struct PerplexityResult {
  PerplexityStats stats;
  std::vector<double> running_ppl;  // after each chunk: llama.cpp's "[i]value," sequence
  int64_t n_chunks = 0;
  double seconds = 0;
  int64_t tokens_evaluated = 0;
};

using PerplexityCallback = std::function<void(const ChunkProgress&, const PerplexityStats&)>;
// `observer` (optional) sees every matmul input of every chunk (imatrix collection).
PerplexityResult run_perplexity(const Model& model, std::span<const int32_t> tokens, const EvalOptions& o,
                                const PerplexityCallback& on_chunk = {}, ActivationObserver* observer = nullptr);

// Evaluates chunks of one model under this protocol: a Forward sized for one chunk, reused for
// every chunk. Shared by the runs below and the verify sweep (verify/sweep.h), so all of them
// see the same logits bit for bit.
class ChunkRunner {
 public:
  // max_chunks: most chunks per run_many() call.
  ChunkRunner(const Model& m, const EvalOptions& o, int max_chunks = 1);
  // Evaluate one chunk of n_ctx tokens from an empty cache (BOS substituted as configured) and
  // write the logits of positions [first, n_ctx) to `out` ([n_ctx - first][n_vocab]).
  void run(std::span<const int32_t> chunk, int64_t first, std::span<float> out, ActivationObserver* obs = nullptr);
  // The same for k (1..max_chunks) consecutive chunks in one pass: `chunks` holds k * n_ctx
  // tokens, `out` k * (n_ctx - first) rows, chunk after chunk; the same values as k run() calls.
  void run_many(std::span<const int32_t> chunks, int k, int64_t first, std::span<float> out);
  uint64_t buffer_bytes() const { return fwd_.buffer_bytes(); }

 private:
  EvalOptions o_;
  int64_t n_vocab_;
  int max_chunks_;
  Forward fwd_;
};

struct KldResult {
  KldStats stats;
  int64_t n_chunks = 0;
  double seconds = 0;
  int64_t tokens_evaluated = 0;  // per model
};
using KldCallback = std::function<void(const ChunkProgress&, const KldStats&)>;
// Base and quantized model on the same chunks; both must share a vocabulary.
KldResult run_kl_divergence(const Model& base, const Model& quant, std::span<const int32_t> tokens,
                            const EvalOptions& o, const KldCallback& on_chunk = {});

// The logits of every position of chunk `chunk` (0-based) under the same protocol (BOS
// substituted as configured): [n_ctx][n_vocab]. For parity tests and --dump-logits.
std::vector<float> chunk_logits(const Model& model, std::span<const int32_t> tokens, const EvalOptions& o,
                                int64_t chunk);

}  // namespace smolq
