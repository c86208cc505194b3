#include "convert/tensor_map.h"

#include <map>
#include <set>

#include "formats/error.h"

namespace smolq {
namespace {

// `{L}` stands for the block index. Shapes are HF order [rows, cols] in terms of config
// fields, checked after mapping.
enum class Dim { Vocab, Embd, Ff, QDim, KvDim, One };
struct Rule {
  const char* hf;
  const char* gguf;
  RowPermute permute;
  Dim rows, cols;  // Dim::One for cols means a 1-D tensor of `rows` elements
};

constexpr Rule kGlobalRules[] = {
    {"model.embed_tokens.weight", "token_embd.weight", RowPermute::None, Dim::Vocab, Dim::Embd},
};
constexpr Rule kLayerRules[] = {
    {"model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight", RowPermute::None, Dim::Embd, Dim::One},
    {"model.layers.{L}.self_attn.q_proj.weight", "blk.{L}.attn_q.weight", RowPermute::QueryHeads, Dim::QDim, Dim::Embd},
    {"model.layers.{L}.self_attn.k_proj.weight", "blk.{L}.attn_k.weight", RowPermute::KeyHeads, Dim::KvDim, Dim::Embd},
    {"model.layers.{L}.self_attn.v_proj.weight", "blk.{L}.attn_v.weight", RowPermute::None, Dim::KvDim, Dim::Embd},
    {"model.layers.{L}.self_attn.o_proj.weight", "blk.{L}.attn_output.weight", RowPermute::None, Dim::Embd, Dim::QDim},
    {"model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.ffn_norm.weight", RowPermute::None, Dim::Embd, Dim::One},
    {"model.layers.{L}.mlp.gate_proj.weight", "blk.{L}.ffn_gate.weight", RowPermute::None, Dim::Ff, Dim::Embd},
    {"model.layers.{L}.mlp.up_proj.weight", "blk.{L}.ffn_up.weight", RowPermute::None, Dim::Ff, Dim::Embd},
    {"model.layers.{L}.mlp.down_proj.weight", "blk.{L}.ffn_down.weight", RowPermute::None, Dim::Embd, Dim::Ff},
};
constexpr Rule kTailRules[] = {
    {"model.norm.weight", "output_norm.weight", RowPermute::None, Dim::Embd, Dim::One},
    {"lm_head.weight", "output.weight", RowPermute::None, Dim::Vocab, Dim::Embd},
};
// Buffers some checkpoints carry that are recomputed at run time.
constexpr const char* kIgnoredSuffixes[] = {".rotary_emb.inv_freq"};

std::string subst(const char* pat, int layer) {
  std::string s(pat);
  auto pos = s.find("{L}");
  if (pos != std::string::npos) s.replace(pos, 3, std::to_string(layer));
  return s;
}

uint64_t dim_value(Dim d, const ModelConfig& c) {
  switch (d) {
    case Dim::Vocab: return c.n_vocab;
    case Dim::Embd: return c.n_embd;
    case Dim::Ff: return c.n_ff;
    case Dim::QDim: return c.q_dim();
    case Dim::KvDim: return c.kv_dim();
    case Dim::One: return 1;
  }
  return 0;
}

std::string shape_str(const std::vector<uint64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

std::vector<MappedTensor> map_checkpoint(const ModelConfig& cfg, const SafetensorsCheckpoint& ck) {
  std::vector<MappedTensor> out;
  std::vector<std::string> missing, bad_shape;
  std::set<std::string> used;

  auto apply = [&](const Rule& rule, int layer, bool optional) {
    const std::string hf = subst(rule.hf, layer);
    const StTensor* t = ck.find(hf);
    if (!t) {
      if (!optional) missing.push_back(hf);
      return;
    }
    used.insert(hf);
    std::vector<uint64_t> want_hf =
        rule.cols == Dim::One ? std::vector<uint64_t>{dim_value(rule.rows, cfg)}
                              : std::vector<uint64_t>{dim_value(rule.rows, cfg), dim_value(rule.cols, cfg)};
    if (t->shape != want_hf) {
      bad_shape.push_back(hf + " has shape " + shape_str(t->shape) + ", config implies " + shape_str(want_hf));
      return;
    }
    MappedTensor m;
    m.hf_name = hf;
    m.gguf_name = subst(rule.gguf, layer);
    m.source = t;
    m.permute = rule.permute;
    m.layer = layer;
    m.gguf_shape.assign(want_hf.rbegin(), want_hf.rend());  // ggml order: row length first
    out.push_back(std::move(m));
  };

  for (const Rule& r : kGlobalRules) apply(r, -1, false);
  for (uint64_t il = 0; il < cfg.n_layer; ++il)
    for (const Rule& r : kLayerRules) apply(r, static_cast<int>(il), false);
  apply(kTailRules[0], -1, false);
  if (cfg.tied_embeddings) {
    // A tied model's lm_head (when a checkpoint stores it anyway) is the embedding matrix.
    if (ck.find("lm_head.weight")) used.insert("lm_head.weight");
  } else {
    apply(kTailRules[1], -1, false);
  }

  std::vector<std::string> unmapped;
  for (const auto& t : ck.tensors()) {
    if (used.count(t.name)) continue;
    bool ignorable = false;
    for (const char* suf : kIgnoredSuffixes)
      if (t.name.size() >= std::string_view(suf).size() &&
          t.name.compare(t.name.size() - std::string_view(suf).size(), std::string::npos, suf) == 0)
        ignorable = true;
    if (!ignorable) unmapped.push_back(t.name);
  }

  auto join = [](const std::vector<std::string>& v, size_t max) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < max; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > max) s += ", ... (" + std::to_string(v.size()) + " in all)";
    return s;
  };
  if (!missing.empty()) throw FormatError(ck.source(), "missing tensors: " + join(missing, 12));
  if (!bad_shape.empty()) throw FormatError(ck.source(), "tensor shapes disagree with config.json: " + join(bad_shape, 6));
  if (!unmapped.empty())
    throw FormatError(ck.source(), "tensors this architecture does not use (unknown layout?): " + join(unmapped, 12));
  return out;
}

}  // namespace smolq
