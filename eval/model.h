// The weights of a Llama-family model as the reference forward pass reads them, from either
// a GGUF file (any tensor type the quant registry can dequantize) or a Hugging Face checkpoint
// folder (config.json + safetensors), so an unquantized model needs no conversion.
//
// Weights stay in their stored encoding inside the file mapping ("weights once"): the matmul
// dequantizes small row tiles on the fly through the registry (eval/matmul.h). Only the
// 1-D norm vectors are copied out as floats, and F16/BF16 matrices on the integer path keep
// an int16 copy (2 bytes a weight, eval/matmul_int.h) made by their first product.
//
// One layout serves both sources: llama.cpp's. Its converter permutes the rows of every
// attn_q / attn_k head so that RoPE rotates adjacent pairs (x[2i], x[2i+1]) instead of
// Hugging Face's "rotate half" pairs (x[i], x[i + d/2]). For an HF checkpoint we apply the
// same permutation here, as a row order on the stored rows, so the forward pass has a single
// RoPE code path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "formats/model_config.h"

namespace smolq {

class SafetensorsCheckpoint;
struct IntPanelCache;  // eval/matmul_int.h

// A 2-D weight in its stored encoding: `rows` output features of `cols` inputs each (GGUF
// shape {cols, rows}; HF shape [rows, cols]). Logical row r is stored row row_order[r] (the
// identity when row_order is empty).
struct WeightMatrix {
  std::string name;                 // GGUF tensor name ("blk.3.attn_q.weight"): imatrix key
  GgmlType type = GgmlType::F32;
  uint64_t rows = 0, cols = 0;
  uint64_t row_bytes = 0;           // bytes of one stored row
  const std::byte* data = nullptr;  // rows * row_bytes bytes inside a mapping the Model owns
  std::vector<uint32_t> row_order;  // HF Q/K: stored row of logical row r
  // F16/BF16 weights on the integer path: their re-quantized panels, filled by the first matmul
  // and kept (eval/matmul_int.h); null elsewhere (Model::open attaches it).
  std::shared_ptr<IntPanelCache> int_panels;

  const std::byte* row_ptr(uint64_t r) const {
    return data + (row_order.empty() ? r : row_order[r]) * row_bytes;
  }
  // Decode logical row r into out[0, cols) through the registry's dequantizer.
  void dequantize_row(uint64_t r, float* out) const;
  // Plain f32 storage in logical order: the matmul can read rows in place.
  bool is_plain_f32() const { return type == GgmlType::F32 && row_order.empty(); }
};

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;                   // [n_embd] RMSNorm gains
  WeightMatrix wq, wk, wv, wo, ffn_gate, ffn_up, ffn_down;  // GGUF attn_q ... ffn_down
  bool use_rope = true;                                     // false on SmolLM3's NoPE layers
};

class Model {
 public:
  // `path`: a .gguf file, or a Hugging Face folder (config.json + *.safetensors).
  static std::unique_ptr<Model> open(const std::string& path);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const std::string& path() const { return path_; }
  bool is_gguf() const { return gguf_ != nullptr; }
  // GGUF metadata (tokenizer, names); nullptr for an HF checkpoint.
  const GgufMetadata* gguf_metadata() const;
  // The folder of an HF checkpoint (where tokenizer.json lives); empty for GGUF.
  const std::string& hf_dir() const { return hf_dir_; }
  const ModelConfig& config() const { return config_; }

  const WeightMatrix& tok_embd() const { return tok_embd_; }
  // The output projection: output.weight, or token_embd when the embeddings are tied.
  const WeightMatrix& output() const { return tied_ ? tok_embd_ : output_; }
  bool tied_output() const { return tied_; }
  std::span<const float> output_norm() const { return output_norm_; }
  const LayerWeights& layer(size_t il) const { return layers_[il]; }
  size_t n_layers() const { return layers_.size(); }
  // llama3-style RoPE: per-dimension-pair frequency divisors (rope_dim / 2), else empty.
  std::span<const float> rope_freq_factors() const { return rope_freqs_; }

  // Every 2-D weight: token_embd, output (untied only), then each layer's seven matrices.
  std::vector<const WeightMatrix*> matrices() const;

  // Sensitivity profiling (mix/sensitivity.h) measures the model with one tensor replaced
  // by a quantized copy. substitute_weight makes the matrix named `name` (GGUF name) read its
  // rows from `data` instead: `type` rows of `row_bytes`, in logical row order, owned by the
  // caller and alive until restore_weight(name). Not to be called while a Forward runs.
  // Throws Error for an unknown name.
  void substitute_weight(const std::string& name, GgmlType type, const std::byte* data, uint64_t row_bytes);
  void restore_weight(const std::string& name);
  // Memory hint: the pages of the file mapping that hold matrix `name` as stored (the original,
  // also while substituted) are no longer needed; a later read faults them in again. Keeps the
  // resident set of a pass that reads each matrix once (eval/gram.h) near one layer. Its
  // integer panels (IntPanelCache, eval/matmul_int.h) are freed too. Pages: a no-op for matrices
  // not read from a GGUF mapping.
  void release_pages(const std::string& name) const;

  // Total bytes of the weight tensors as stored, and the most common matrix type (for logs).
  uint64_t weight_bytes() const;
  std::string describe() const;

 private:
  Model() = default;
  void load_gguf(const std::string& path);
  void load_hf(const std::string& dir);
  void check_shapes() const;

  std::string path_, hf_dir_;
  std::unique_ptr<GgufReader> gguf_;
  std::unique_ptr<SafetensorsCheckpoint> st_;
  ModelConfig config_;
  WeightMatrix tok_embd_, output_;
  bool tied_ = false;
  std::vector<float> output_norm_;
  std::vector<LayerWeights> layers_;
  std::vector<float> rope_freqs_;
  std::vector<std::pair<std::string, WeightMatrix>> substituted_;  // originals of substitute_weight
  WeightMatrix* find_matrix(const std::string& name);
};

}  // namespace smolq
