// The declarative Hugging Face -> GGUF tensor map for the Llama family (llama, smollm3).
// Each rule names an HF tensor pattern, its GGUF name, and the row permutation llama.cpp
// expects (attn_q / attn_k rows are reordered so that llama.cpp's "normal" RoPE, which
// rotates adjacent pairs, reproduces HF's rotate-half RoPE).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "formats/safetensors.h"

namespace smolq {

enum class RowPermute { None, QueryHeads, KeyHeads };

struct MappedTensor {
  std::string hf_name;
  std::string gguf_name;
  const StTensor* source = nullptr;
  RowPermute permute = RowPermute::None;
  int layer = -1;                     // block index, -1 for global tensors
  std::vector<uint64_t> gguf_shape;   // ggml order: {cols, rows} for 2-D
};

// Map every tensor of the checkpoint. Throws FormatError listing all missing tensors and all
// tensors no rule maps (ignorable ones such as rotary `inv_freq` buffers are skipped), and
// checks every shape against the config. Output order is canonical (token_embd, blocks in
// order, output_norm, output), independent of shard layout.
std::vector<MappedTensor> map_checkpoint(const ModelConfig& cfg, const SafetensorsCheckpoint& ck);

}  // namespace smolq
