// What a GGUF tensor is, judged from its name and shape the way llama.cpp's quantizer
// judges it: its role (the category the type-mixture rules are written against), its
// layer, whether it holds experts, and whether a quantizer may touch it at all.
//
// Role matching is llama.cpp's: substring tests in a fixed order (so "ffn_up_exps" and
// "ffn_up_shexp" are FFN_UP, "attn_q_a" is OTHER), kept as a data table in
// tensor_roles.cpp. The mixture rules (quantize/mixtures.h) only ever see these roles.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/ggml_types.h"

namespace smolq {

// llama.cpp's tensor_category, one to one. Roles with their own mixture rules; everything
// else (MLA low-rank projections, SSM weights, gates, ...) is kOther and takes the default.
enum class TensorRole : uint8_t {
  kTokenEmbd,   // token_embd.weight, per_layer_token_embd.weight
  kOutput,      // output.weight (the LM head)
  kAttnQ,       // *attn_q.weight
  kAttnK,       // *attn_k.weight
  kAttnV,       // *attn_v.weight
  kAttnQkv,     // *attn_qkv.weight (fused Q/K/V)
  kAttnKvB,     // *attn_kv_b.weight (MLA key/value up-projection)
  kAttnOutput,  // *attn_output.weight
  kFfnUp,       // *ffn_up* (dense, _exps, _shexp)
  kFfnGate,     // *ffn_gate* (dense, _exps, _shexp; ffn_gate_inp is never quantized)
  kFfnDown,     // *ffn_down* (dense, _exps, _shexp)
  kOther,
};
inline constexpr int kTensorRoleCount = 12;
std::string_view role_name(TensorRole r);

// Whether a tensor holds routed experts (3-D, one matrix per expert), a shared expert,
// or neither. Informational: the rules look at ne[2], as llama.cpp does.
enum class ExpertKind : uint8_t { kNone, kRouted, kShared };

struct TensorClass {
  TensorRole role = TensorRole::kOther;
  std::optional<int> layer;  // N of a "blk.N." prefix
  ExpertKind experts = ExpertKind::kNone;
};

TensorRole classify_role(std::string_view name);
// The N of a leading "blk.N." (llama.cpp reads it with sscanf("blk.%d.")).
std::optional<int> layer_of(std::string_view name);
TensorClass classify_tensor(std::string_view name);

// A tensor as the planner sees it: name, ggml-order shape (ne[0] is the row length),
// and the type it currently has in the source.
struct TensorShape {
  std::string name;
  std::array<uint64_t, 4> ne{1, 1, 1, 1};
  GgmlType source_type = GgmlType::F32;

  uint64_t row_length() const { return ne[0]; }
  uint64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  uint64_t n_elements() const { return ne[0] * n_rows(); }
  // ggml_n_dims: trailing dimensions of size 1 do not count; a [576, 1] tensor is 1-D.
  int n_dims() const;
};
TensorShape make_tensor(std::string name, std::initializer_list<uint64_t> ne,
                        GgmlType source_type = GgmlType::F32);

// llama.cpp's tensor_allows_quantization: nullopt when the tensor may be quantized,
// otherwise why not (shown in --dry-run plans). `quantize_output` is false under
// --leave-output-tensor.
std::optional<std::string> why_not_quantized(const TensorShape& t, bool quantize_output);

// The tensor list of a dense Llama-family decoder (llama, qwen3, gemma3, smollm3 ...), as
// convert_hf_to_gguf writes it. Used for estimates from a config alone and by the tests.
struct DecoderShape {
  uint64_t n_embd = 0, n_ff = 0, n_vocab = 0, n_layer = 0, n_head = 0, n_head_kv = 0;
  uint64_t head_dim = 0;        // 0 = n_embd / n_head
  bool tied_embeddings = false; // no output.weight: token_embd doubles as the LM head
  bool qk_norm = false;         // qwen3 / gemma3: 1-D attn_q_norm / attn_k_norm per layer
  bool post_norms = false;      // gemma: post_attention_norm / post_ffw_norm per layer
  bool rope_freqs = false;      // llama 3.1: one 1-D rope_freqs.weight (head_dim / 2)
  GgmlType weight_type = GgmlType::F16;  // source type of 2-D weights (norms are F32)
};
std::vector<TensorShape> decoder_tensors(const DecoderShape& s);

}  // namespace smolq
