// Tensor names -> roles, layers and "may this be quantized", as llama.cpp decides them.
// Everything here is name matching against small tables; the tables are llama.cpp's facts
// (the categories of tensor_get_category, the exclusions of tensor_allows_quantization).
#include "quantize/tensor_roles.h"

#include <array>
#include <cassert>
#include <charconv>

namespace smolq {
namespace {

// How a table row's text is compared with a tensor name. llama.cpp mostly uses substring
// search (std::string::find), so "blk.3.attn_v.weight" and "enc.blk.3.attn_v.weight" alike
// are attn_v; the LM head and the token embedding are exact names.
enum class Match : uint8_t { kExact, kContains, kSuffix };

bool matches(std::string_view name, Match how, std::string_view text) {
  switch (how) {
    case Match::kExact: return name == text;
    case Match::kContains: return name.find(text) != std::string_view::npos;
    case Match::kSuffix: return name.ends_with(text);
  }
  return false;
}

struct RolePattern {
  Match how;
  std::string_view text;
  TensorRole role;
};

// llama.cpp's tensor_get_category, in its order: the first pattern that matches decides.
// The order matters: "attn_qkv.weight" and "attn_kv_b.weight" are tested before
// "attn_v.weight"; "ffn_up" before "ffn_gate" (a fused "ffn_gate_up_exps" is FFN_GATE).
constexpr std::array<RolePattern, 13> kRolePatterns{{
    {Match::kExact, "output.weight", TensorRole::kOutput},
    {Match::kExact, "token_embd.weight", TensorRole::kTokenEmbd},
    {Match::kExact, "per_layer_token_embd.weight", TensorRole::kTokenEmbd},
    {Match::kContains, "attn_qkv.weight", TensorRole::kAttnQkv},
    {Match::kContains, "attn_kv_b.weight", TensorRole::kAttnKvB},
    {Match::kContains, "attn_v.weight", TensorRole::kAttnV},
    {Match::kContains, "attn_k.weight", TensorRole::kAttnK},
    {Match::kContains, "attn_q.weight", TensorRole::kAttnQ},
    {Match::kContains, "attn_output.weight", TensorRole::kAttnOutput},
    {Match::kContains, "ffn_up", TensorRole::kFfnUp},
    {Match::kContains, "ffn_gate", TensorRole::kFfnGate},
    {Match::kContains, "ffn_down", TensorRole::kFfnDown},
    {Match::kContains, "", TensorRole::kOther},  // catch-all
}};

struct Exclusion {
  Match how;
  std::string_view text;
  std::string_view why;
};

// llama.cpp's tensor_allows_quantization, beyond its shape and "ends in weight" tests:
// names that are never quantized. Each row is one of its checks, in its order.
constexpr std::array<Exclusion, 37> kExclusions{{
    {Match::kContains, "_norm.weight", "norm weights stay unquantized"},
    {Match::kContains, "ffn_gate_inp.weight", "expert router (gating) weights stay unquantized"},
    {Match::kContains, "ffn_gate_tid2eid.weight", "token-id -> expert-id routing table"},
    {Match::kContains, "altup", "small altup tensors"},
    {Match::kContains, "laurel", "small laurel tensors"},
    {Match::kContains, "per_layer_model_proj", "per-layer model projection is kept as is"},
    {Match::kExact, "position_embd.weight", "position embeddings stay unquantized"},
    {Match::kExact, "token_types.weight", "token-type embeddings stay unquantized"},
    {Match::kContains, "ssm_conv1d", "small SSM conv1d weights"},
    {Match::kContains, "shortconv.conv.weight", "small short-conv weights"},
    {Match::kContains, "indexer.k_proj.weight", "small indexer projection"},
    {Match::kContains, "indexer.q_proj.weight", "small indexer projection"},
    {Match::kContains, "time_mix_first.weight", "small RWKV weights"},
    {Match::kContains, "time_mix_w0.weight", "small RWKV weights"},
    {Match::kContains, "time_mix_w1.weight", "small RWKV weights"},
    {Match::kContains, "time_mix_w2.weight", "small RWKV weights"},
    {Match::kContains, "time_mix_v0.weight", "small RWKV weights"},
    {Match::kContains, "time_mix_v1.weight", "small RWKV weights"},
    {Match::kContains, "time_mix_v2.weight", "small RWKV weights"},
    {Match::kContains, "time_mix_a0.weight", "small RWKV weights"},
    {Match::kContains, "time_mix_a1.weight", "small RWKV weights"},
    {Match::kContains, "time_mix_a2.weight", "small RWKV weights"},
    {Match::kContains, "time_mix_g1.weight", "small RWKV weights"},
    {Match::kContains, "time_mix_g2.weight", "small RWKV weights"},
    {Match::kContains, "time_mix_decay_w1.weight", "small RWKV weights"},
    {Match::kContains, "time_mix_decay_w2.weight", "small RWKV weights"},
    {Match::kContains, "time_mix_lerp_fused.weight", "small RWKV weights"},
    {Match::kContains, "attn_rel_b.weight", "relative position bias stays unquantized"},
    {Match::kContains, ".position_embd", "multimodal position embeddings"},
    {Match::kContains, "sam.pos_embd", "multimodal position embeddings"},
    {Match::kContains, "sam.neck.", "multimodal SAM neck"},
    {Match::kContains, "sam.net_", "multimodal SAM net"},
    {Match::kContains, ".rel_pos", "multimodal relative positions"},
    {Match::kContains, ".patch_embd", "multimodal patch embeddings"},
    {Match::kContains, ".patch_merger", "multimodal patch merger"},
    {Match::kContains, "a.rvq.codebook", "audio codebook"},
    {Match::kContains, "mm.a.code_embd", "audio code embeddings"},
}};

constexpr std::array<std::string_view, kTensorRoleCount> kRoleNames{
    "token_embd", "output",   "attn_q",    "attn_k", "attn_v",   "attn_qkv",
    "attn_kv_b",  "attn_output", "ffn_up", "ffn_gate", "ffn_down", "other"};

}  // namespace

std::string_view role_name(TensorRole r) { return kRoleNames[static_cast<size_t>(r)]; }

TensorRole classify_role(std::string_view name) {
  for (const auto& p : kRolePatterns)
    if (matches(name, p.how, p.text)) return p.role;
  return TensorRole::kOther;
}

std::optional<int> layer_of(std::string_view name) {
  constexpr std::string_view kPrefix = "blk.";
  if (!name.starts_with(kPrefix)) return std::nullopt;
  const char* first = name.data() + kPrefix.size();
  const char* last = name.data() + name.size();
  int layer = 0;
  auto [end, ec] = std::from_chars(first, last, layer);
  // sscanf's "blk.%d." needs digits followed by a dot.
  if (ec != std::errc{} || end == last || *end != '.') return std::nullopt;
  return layer;
}

// Routed experts are stored as one 3-D stack per layer ("ffn_down_exps"); a shared expert
// is an ordinary matrix ("ffn_down_shexp"). Both keep their FFN role for the rules.
TensorClass classify_tensor(std::string_view name) {
  TensorClass c;
  c.role = classify_role(name);
  c.layer = layer_of(name);
  if (name.find("_exps") != std::string_view::npos)
    c.experts = ExpertKind::kRouted;
  else if (name.find("_shexp") != std::string_view::npos)
    c.experts = ExpertKind::kShared;
  return c;
}

// ggml counts dimensions from the highest one that is not 1, so a [576, 1] vector is 1-D
// (and therefore never quantized) however it was declared.
int TensorShape::n_dims() const {
  for (int i = 3; i >= 1; --i)
    if (ne[i] > 1) return i + 1;
  return 1;
}

TensorShape make_tensor(std::string name, std::initializer_list<uint64_t> ne, GgmlType source_type) {
  assert(ne.size() >= 1 && ne.size() <= 4);
  TensorShape t;
  t.name = std::move(name);
  size_t i = 0;
  for (uint64_t d : ne) t.ne[i++] = d;
  t.source_type = source_type;
  return t;
}

std::optional<std::string> why_not_quantized(const TensorShape& t, bool quantize_output) {
  // Only matrices (2-D) and expert stacks (3-D) are quantized; biases, norms, scalars are not.
  if (t.n_dims() < 2) return "1-D tensor, kept as is";
  if (!t.name.ends_with("weight")) return "not a weight (name does not end in 'weight')";
  if (!quantize_output && t.name == "output.weight") return "output.weight left as is (--leave-output-tensor)";
  for (const auto& x : kExclusions)
    if (matches(t.name, x.how, x.text)) return std::string(x.why);
  return std::nullopt;
}

// convert_hf_to_gguf's names for a Llama-style block. Shapes are in ggml order
// {ne[0] = input width, ne[1] = output width}: attn_q maps n_embd -> n_head * head_dim,
// attn_k / attn_v map n_embd -> n_head_kv * head_dim (GQA), attn_output maps the heads back,
// and the SwiGLU MLP is gate/up n_embd -> n_ff, down n_ff -> n_embd. Norms are 1-D F32.
std::vector<TensorShape> decoder_tensors(const DecoderShape& s) {
  assert(s.n_embd && s.n_layer && s.n_head && s.n_head_kv && s.n_vocab && s.n_ff);
  const uint64_t head_dim = s.head_dim ? s.head_dim : s.n_embd / s.n_head;
  const uint64_t q_width = s.n_head * head_dim, kv_width = s.n_head_kv * head_dim;
  const GgmlType w = s.weight_type, f32 = GgmlType::F32;
  std::vector<TensorShape> out;
  out.push_back(make_tensor("token_embd.weight", {s.n_embd, s.n_vocab}, w));
  out.push_back(make_tensor("output_norm.weight", {s.n_embd}, f32));
  if (!s.tied_embeddings) out.push_back(make_tensor("output.weight", {s.n_embd, s.n_vocab}, w));
  if (s.rope_freqs) out.push_back(make_tensor("rope_freqs.weight", {head_dim / 2}, f32));
  for (uint64_t i = 0; i < s.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    // ggml order: {input width, output width}; a row is one output's input weights.
    out.push_back(make_tensor(p + "attn_norm.weight", {s.n_embd}, f32));
    out.push_back(make_tensor(p + "attn_q.weight", {s.n_embd, q_width}, w));
    out.push_back(make_tensor(p + "attn_k.weight", {s.n_embd, kv_width}, w));
    out.push_back(make_tensor(p + "attn_v.weight", {s.n_embd, kv_width}, w));
    out.push_back(make_tensor(p + "attn_output.weight", {q_width, s.n_embd}, w));
    if (s.qk_norm) {
      out.push_back(make_tensor(p + "attn_q_norm.weight", {head_dim}, f32));
      out.push_back(make_tensor(p + "attn_k_norm.weight", {head_dim}, f32));
    }
    if (s.post_norms) out.push_back(make_tensor(p + "post_attention_norm.weight", {s.n_embd}, f32));
    out.push_back(make_tensor(p + "ffn_norm.weight", {s.n_embd}, f32));
    out.push_back(make_tensor(p + "ffn_gate.weight", {s.n_embd, s.n_ff}, w));
    out.push_back(make_tensor(p + "ffn_up.weight", {s.n_embd, s.n_ff}, w));
    out.push_back(make_tensor(p + "ffn_down.weight", {s.n_ff, s.n_embd}, w));
    if (s.post_norms) out.push_back(make_tensor(p + "post_ffw_norm.weight", {s.n_embd}, f32));
  }
  return out;
}

}  // namespace smolq
