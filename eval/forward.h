// The reference forward pass of a Llama-family model, as llama.cpp runs these GGUFs:
//
//   x = token_embd[tokens]
//   per layer:  h = rms_norm(x) * attn_norm
//               q, k, v = h Wq^T, h Wk^T, h Wv^T      (RoPE on q, k unless a NoPE layer)
//               x += softmax(q k^T / sqrt(d) + causal mask) v  Wo^T    (grouped-query heads)
//               h = rms_norm(x) * ffn_norm
//               x += (silu(h Wgate^T) * (h Wup^T)) Wdown^T
//   logits = (rms_norm(x) * output_norm) Wout^T        (Wout = token_embd when tied)
//
// All arithmetic is f32 (sums of squares in double). One Forward holds the K/V cache of a single
// sequence of up to n_ctx tokens; eval() appends a batch of tokens to it. Memory: the cache plus
// activations of one batch; weights stay in the model's mapping.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "eval/model.h"

namespace smolq {

// Receives the input of every matrix product of a batch (imatrix collection). `x` holds
// n_tokens rows of w.cols floats. Called from the evaluating thread, in graph order.
class ActivationObserver {
 public:
  virtual ~ActivationObserver() = default;
  virtual void observe(const WeightMatrix& w, const float* x, int64_t n_tokens) = 0;
};

class Forward {
 public:
  // n_ctx: the longest sequence (cache size); max_batch: most tokens per eval() call;
  // max_seqs: most sequences per eval_sequences() call (each has its own cache).
  Forward(const Model& model, int64_t n_ctx, int64_t max_batch, int n_threads, int max_seqs = 1);

  // Forget the sequence (the next eval starts at position 0).
  void reset() { n_past_ = 0; }
  int64_t n_past() const { return n_past_; }
  int64_t n_ctx() const { return n_ctx_; }

  // Append `tokens` at positions n_past() ... and compute the logits of batch rows
  // [first_output, tokens.size()) into `logits` (row-major, n_vocab per row; may be empty
  // when first_output == tokens.size()). With an observer, every matmul input of every row is
  // reported (rows that need no logits are not skipped in the last layer).
  void eval(std::span<const int32_t> tokens, int64_t first_output, std::span<float> logits,
            ActivationObserver* observer = nullptr);

  // n_seq independent sequences of n_ctx tokens each (tokens: one after the other), each from
  // an empty cache, in one pass: every matrix product sees all n_seq * n_ctx rows (one weight
  // decode for all), attention stays within each sequence. Writes the logits of positions
  // [first_output, n_ctx) of every sequence, sequence after sequence. The values are bit-identical
  // to evaluating each sequence alone with eval(). Leaves n_past() at 0.
  void eval_sequences(std::span<const int32_t> tokens, int n_seq, int64_t first_output, std::span<float> logits);

  // Bytes of the cache and activation buffers (for logs and memory estimates).
  uint64_t buffer_bytes() const;

 private:
  void matmul_obs(const WeightMatrix& w, const float* x, int64_t n, float* y, ActivationObserver* obs);
  void run(std::span<const int32_t> tokens, int n_seq, int64_t first_output, std::span<float> logits,
           ActivationObserver* obs);
  void attention(size_t il, int n_seq, int64_t n, int64_t pos0);
  void pack_keys(size_t il, int n_seq, int64_t pos0, int64_t n);
  // Cache rows of (layer, sequence): [n_ctx][kv_dim].
  size_t cache_offset(size_t il, int s) const {
    return (il * static_cast<size_t>(max_seqs_) + static_cast<size_t>(s)) * static_cast<size_t>(n_ctx_) * c_.kv_dim();
  }

  static constexpr int kMaxQueryBlock = 6;  // queries per attention task (the matmul tile's tokens)

  const Model& m_;
  const ModelConfig& c_;
  int64_t n_ctx_, max_batch_;
  int n_threads_;
  int max_seqs_;
  int64_t n_past_ = 0;
  float kq_scale_;
  // RoPE cos/sin for every position: [n_ctx][rope_dim] as (cos, sin) pairs.
  std::vector<float> rope_cs_;
  // K/V cache: [n_layer][max_seqs][n_ctx][kv_dim], K after RoPE.
  std::vector<float> k_cache_, v_cache_;
  // Batch activations (B = max_batch):
  std::vector<float> x_;        // [B][n_embd] residual stream
  std::vector<float> xn_;       // [B][n_embd] normalised input of a block
  std::vector<float> q_;        // [B][q_dim]
  std::vector<float> attn_;     // [B][q_dim] attention output (heads concatenated)
  std::vector<float> gate_, up_;// [B][n_ff]
  std::vector<float> tmp_;      // [B][n_embd] output of attn_output / ffn_down
  std::vector<float> scores_;   // [n_threads][kMaxQueryBlock][n_ctx] attention probabilities
  // AVX-512: the K cache again, packed for the 8-row kernel (dot_rows_packed): per layer,
  // sequence and KV head, groups of 8 positions, 8 * head_dim floats each. Empty on other CPUs.
  bool packed_keys_ = false;
  int query_block_ = 3;         // 6 with packed keys (AVX-512 tiles), else 3
  int64_t key_groups_ = 0;      // ceil(n_ctx / 8)
  std::vector<float> k_packed_;
};

// cos/sin of every rotary pair at positions [0, n_pos) for the model's RoPE settings (base,
// linear or YaRN scaling, llama3 frequency factors): out[pos * rope_dim + 2i], [.. + 2i + 1].
std::vector<float> rope_table(const ModelConfig& c, std::span<const float> freq_factors, int64_t n_pos);

}  // namespace smolq
