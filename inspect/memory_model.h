// What llama.cpp allocates to run a model, predicted from the tensor list and the
// hyperparameters alone (no weights), and the memory-bound decode speed that follows.
// The formulas, their sources and their calibration are written out in docs/estimate.md;
// the comments here say what each term is.
//
// Buffers, as llama.cpp names them in its load log:
//   model buffer    the tensor data (mmap'ed on CPU)                      = sum of tensor bytes
//   KV cache        K and V for every layer and cell                       see kv_cache_bytes
//   compute buffer  the graph intermediates of the worst-case micro-batch  see ComputeBreakdown
//   output buffer   logits + embeddings for the outputs of one batch       (n_vocab + n_embd) x 4 x n_seq
// plus a fixed overhead that llama.cpp does not print (loader, scheduler, vocabulary tables).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "formats/ggml_types.h"
#include "formats/gguf.h"

namespace smolq {

// The hyperparameters the memory model reads.
struct MemoryModelShape {
  uint64_t n_vocab = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ff = 0;
  uint64_t n_merges = 0;  // BPE merges (vocabulary tables in host memory)
  uint64_t q_dim() const { return n_head * head_dim; }
  uint64_t kv_dim() const { return n_head_kv * head_dim; }
};

struct RunParams {
  uint64_t n_ctx = 2048;
  uint64_t n_batch = 512;       // logical batch (llama.cpp -b); only bounds n_ubatch
  uint64_t n_ubatch = 512;      // physical micro-batch (llama.cpp -ub): sizes the compute graph
  GgmlType kv_type = GgmlType::F16;     // K cache (llama.cpp -ctk)
  std::optional<GgmlType> kv_type_v;    // V cache (llama.cpp -ctv); unset: the K cache's type
  GgmlType v_type() const { return kv_type_v.value_or(kv_type); }
  bool flash_attn = false;
  uint64_t n_seq = 1;           // parallel sequences
};

// llama.cpp rounds the KV cache up to a multiple of 256 cells.
constexpr uint64_t kKvCellPadding = 256;
// The KQ mask's token dimension is padded to GGML_KQ_MASK_PAD rows.
constexpr uint64_t kKqMaskPad = 64;
// Fixed host overheads llama.cpp does not print, as gguf-parser-go accounts them:
// model loader state (5 MiB) and the backend scheduler (4 MiB).
constexpr uint64_t kLoaderOverheadBytes = 5ull << 20;
constexpr uint64_t kSchedulerOverheadBytes = 4ull << 20;
// Vocabulary tables in host memory per token (id<->text maps, score, type) and per BPE
// merge (the rank map), as gguf-parser-go accounts them.
constexpr uint64_t kBytesPerVocabToken = 4 + 4 + 32 + 24 + 32;
constexpr uint64_t kBytesPerMerge = 48 + 56;

// The compute buffer is the peak of three phases of the worst-case graph (one micro-batch of
// n_tokens = min(n_ctx, n_ubatch) tokens, every token an output); ggml's allocator reuses
// memory between layers, so one layer's intermediates are live at a time.
struct ComputeBreakdown {
  uint64_t attention = 0;  // KQ scores (flash attention off) + KQ mask + activations
  uint64_t ffn = 0;        // gate/up projections + activations
  uint64_t output = 0;     // logits of every token + final-norm activations
  uint64_t peak() const;
  std::string dominant() const;  // "attention", "ffn" or "output"
};

struct MemoryEstimate {
  RunParams params;              // as used (n_ctx padded, flash attention forced for quantized V)
  uint64_t n_ctx_cells = 0;      // KV cells after padding
  uint64_t n_tokens = 0;         // tokens in the worst-case micro-batch
  uint64_t weights = 0;          // model buffer
  uint64_t kv_k = 0, kv_v = 0;   // KV cache, all layers
  std::vector<uint64_t> kv_per_layer;  // K + V bytes of each layer
  ComputeBreakdown compute_parts;
  uint64_t compute = 0;          // compute buffer
  uint64_t output = 0;           // output buffer
  uint64_t overhead = 0;         // fixed host overhead (not printed by llama.cpp)

  uint64_t kv() const { return kv_k + kv_v; }
  uint64_t total() const { return weights + kv() + compute + output + overhead; }
};

// Bytes of `n` elements of a KV cache of type t (block types: n must fill whole blocks).
uint64_t kv_cache_bytes(GgmlType t, uint64_t n_elements);
// The KV cache types llama.cpp accepts (f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1).
bool is_valid_kv_type(GgmlType t);

// The estimate for one model (its tensors, as they would be written) and one context.
MemoryEstimate estimate_memory(const MemoryModelShape& m, const std::vector<GgufPlannedTensor>& tensors,
                               const RunParams& p);

// --- decode speed -------------------------------------------------------------------------
// Memory-bound decode: every generated token streams the weights it multiplies and the KV
// cache of the context so far through the memory bus once.
//   tokens/s = bandwidth x efficiency / bytes read per token
// The efficiency is the share of peak bandwidth a real decode loop reaches; the published
// calculators use ~0.55 (see docs/shared models.md).
constexpr double kDecodeEfficiency = 0.55;
extern const char* const kDecodeFormula;  // the formula as printed beside the numbers

// Bytes read per generated token at context `n_ctx`: all weights except the rows of the
// token embedding that are not looked up (when a separate output.weight exists the embedding
// is only gathered, one row per token; when tied, it is read whole as the LM head), plus the
// K and V of n_ctx cells in every layer.
uint64_t bytes_read_per_token(const MemoryModelShape& m, const std::vector<GgufPlannedTensor>& tensors,
                              GgmlType kv_type, uint64_t n_ctx);
// The same with different K and V cache types.
uint64_t bytes_read_per_token(const MemoryModelShape& m, const std::vector<GgufPlannedTensor>& tensors,
                              GgmlType k_type, GgmlType v_type, uint64_t n_ctx);
double decode_tokens_per_second(double bandwidth_gb_per_s, uint64_t bytes_per_token,
                                double efficiency = kDecodeEfficiency);

}  // namespace smolq
