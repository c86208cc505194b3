// Architecture hyperparameters of a Llama-family model, read either from a Hugging Face
// `config.json` or from GGUF metadata. One struct so convert, verify (forward pass) and
// inspect/estimate all agree on what a model is. Parsing only: no weights here.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "formats/gguf.h"

namespace smolq {

struct RopeScaling {
  std::string type;                 // "" (none), "linear", "llama3", "yarn"
  double factor = 1.0;
  uint64_t original_context = 0;    // original_max_position_embeddings
  double low_freq_factor = 1.0;     // llama3
  double high_freq_factor = 4.0;    // llama3
};

struct ModelConfig {
  std::string arch;                 // GGUF architecture: "llama" or "smollm3"
  std::string hf_architecture;      // "LlamaForCausalLM", "SmolLM3ForCausalLM" (HF only)
  uint64_t n_vocab = 0;
  uint64_t n_embd = 0;              // hidden_size
  uint64_t n_layer = 0;
  uint64_t n_head = 0;
  uint64_t n_head_kv = 0;
  uint64_t head_dim = 0;            // per-head width (n_embd / n_head unless given)
  uint64_t n_ff = 0;                // intermediate_size
  uint64_t n_ctx_train = 0;         // max_position_embeddings
  double rope_theta = 10000.0;
  double rms_eps = 1e-5;
  uint64_t rope_dim = 0;            // rotary dimensions (= head_dim for these models)
  RopeScaling rope_scaling;
  bool tied_embeddings = false;
  // Per layer: true when the layer applies RoPE (SmolLM3 skips it on every 4th layer).
  std::vector<bool> use_rope;
  std::optional<int64_t> bos_id, eos_id, pad_id;  // from config.json when given
  std::string torch_dtype;          // "bfloat16", ... (HF only)

  uint64_t n_gqa() const { return n_head_kv ? n_head / n_head_kv : 1; }
  uint64_t q_dim() const { return n_head * head_dim; }
  uint64_t kv_dim() const { return n_head_kv * head_dim; }
  // Parameter count of the weights (embedding counted once when tied).
  uint64_t n_params() const;
};

// Parse `config.json` of a Hugging Face checkpoint. Unknown architectures and missing or
// inconsistent fields are FormatErrors naming the file and the field.
ModelConfig parse_hf_config(const std::string& config_json_path);
// Read hyperparameters from GGUF metadata (`general.architecture` + `<arch>.*` keys).
ModelConfig config_from_gguf(const GgufMetadata& meta, const std::string& path_for_errors);
// Write the `<arch>.*` hyperparameter keys llama.cpp reads.
void write_gguf_hparams(const ModelConfig& c, GgufMetadata& meta);

// `dir` must be a Hugging Face checkpoint folder (with config.json); otherwise a FormatError
// naming the real problem: no such path, a GGUF file, a safetensors file, a folder without
// config.json.
void require_hf_folder(const std::string& dir);
// `meta` must be a model's (general.architecture set): an importance matrix or any other GGUF
// given as a model is refused naming `path`.
void require_model_gguf(const GgufMetadata& meta, const std::string& path);

// llama.cpp hard-codes SmolLM3's NoPE pattern: RoPE is skipped on layers with (il+1) % 4 == 0.
constexpr uint64_t kSmolLM3NoRopeStep = 4;

}  // namespace smolq
