// What `smolq inspect` finds in a model: one report type for a GGUF file, a safetensors file
// or a Hugging Face folder, built from headers only, plus the sums users ask for (bytes and
// parameters per type, bits per weight per layer and overall). Building a report never
// throws for a damaged file: problems become findings and the report holds what could be read.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "formats/model_config.h"
#include "inspect/gguf_scan.h"

namespace smolq {

struct TensorRow {
  std::string name;
  std::vector<uint64_t> shape;  // as stored: ggml order for GGUF (row length first), row-major for safetensors
  std::string type;             // "Q4_K", "BF16", "type#99" when unknown
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  bool size_known = true;
  std::optional<int> layer;     // N of "blk.N." / "model.layers.N."
  double bpw() const { return n_elements ? 8.0 * static_cast<double>(n_bytes) / static_cast<double>(n_elements) : 0.0; }
};

struct TypeTotal {
  std::string type;
  uint64_t n_tensors = 0, n_elements = 0, n_bytes = 0;
};

struct LayerTotal {
  std::optional<int> layer;     // nullopt: tensors outside the repeated blocks (embeddings, output)
  uint64_t n_tensors = 0, n_elements = 0, n_bytes = 0;
  std::string types;            // the types used, most bytes first: "Q4_K, Q6_K, F32"
  double bpw() const { return n_elements ? 8.0 * static_cast<double>(n_bytes) / static_cast<double>(n_elements) : 0.0; }
};

struct SpecialToken {
  std::string role;             // "bos", "eos", "unk", "pad", ...
  std::optional<int64_t> id;
  std::string text;             // the token's text when known
};

struct TokenizerSummary {
  std::string model;            // "gpt2" (GGUF) / "BPE" (tokenizer.json)
  std::string pre;              // GGUF pre-tokenizer name, or the HF pre-tokenizer chain
  uint64_t vocab_size = 0;
  uint64_t n_merges = 0;
  uint64_t n_control = 0;       // special / control tokens
  std::vector<SpecialToken> special;
  std::optional<bool> add_bos, add_eos;
  bool has_chat_template = false;
  uint64_t chat_template_chars = 0;
};

enum class SourceKind { kGguf, kSafetensors, kHfFolder };

struct InspectReport {
  std::string path;
  SourceKind kind = SourceKind::kGguf;
  uint64_t file_bytes = 0;      // the file, or all weight shards of a folder
  std::string format_line;      // "GGUF v3, alignment 32, data at 0x1b3f40"
  GgufMetadata metadata;        // GGUF key/values, or safetensors __metadata__ as strings
  std::optional<ModelConfig> config;
  std::optional<TokenizerSummary> tokenizer;
  std::vector<TensorRow> tensors;
  std::vector<Finding> findings;

  uint64_t tensor_bytes() const;
  uint64_t n_params() const;
  // Tensor data bits per parameter (what llama.cpp prints as "BPW").
  double effective_bpw() const;
  // Whole-file bits per parameter (metadata and padding included).
  double file_bpw() const;
  bool has_errors() const;
};

// Build a report; `path` is a .gguf file, a .safetensors file (or index) or an HF folder.
// Throws only when the path does not exist or cannot be opened.
InspectReport inspect_path(const std::string& path);
InspectReport inspect_gguf(const std::string& path);
InspectReport inspect_safetensors(const std::string& path);
InspectReport inspect_hf_folder(const std::string& dir);

// Tokenizer facts from GGUF metadata (tokenizer.ggml.*); nullopt without tokenizer keys.
std::optional<TokenizerSummary> tokenizer_from_gguf(const GgufMetadata& meta);
// Tokenizer facts from an HF folder's tokenizer.json / tokenizer_config.json; findings for
// unreadable files go to `findings`.
std::optional<TokenizerSummary> tokenizer_from_hf(const std::string& dir, std::vector<Finding>& findings);

std::vector<TypeTotal> totals_by_type(const std::vector<TensorRow>& rows);  // most bytes first
std::vector<LayerTotal> totals_by_layer(const std::vector<TensorRow>& rows); // non-block first, then by layer
// "blk.12.attn_q.weight" -> 12, "model.layers.3.mlp.up_proj.weight" -> 3.
std::optional<int> tensor_layer(std::string_view name);

}  // namespace smolq
