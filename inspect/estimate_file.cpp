#include "inspect/estimate_file.h"

namespace smolq {

MemoryModelShape memory_shape(const ModelConfig& c, const GgufMetadata& meta) {
  MemoryModelShape s{c.n_vocab, c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.n_ff, 0};
  if (const GgufValue* m = meta.find("tokenizer.ggml.merges"); m && m->type == GgufType::ARRAY)
    s.n_merges = m->as_array().items.size();
  return s;
}

QuantCandidate candidate_from_file(const GgufReader& r, std::string name) {
  QuantCandidate c;
  c.name = std::move(name);
  c.metadata = r.metadata();
  c.alignment = r.alignment();
  for (const auto& t : r.tensors()) c.tensors.push_back({t.name, t.shape, t.type});
  return c;
}

}  // namespace smolq
