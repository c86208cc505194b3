#include "eval/model.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <numbers>

#include "eval/matmul_int.h"
#include "formats/rope_layout.h"
#include "formats/error.h"
#include "formats/safetensors.h"
#include "quantize/registry.h"

namespace smolq {
namespace {

namespace fs = std::filesystem;

GgmlType ggml_type_of(StDtype t) {
  switch (t) {
    case StDtype::F32: return GgmlType::F32;
    case StDtype::F16: return GgmlType::F16;
    case StDtype::BF16: return GgmlType::BF16;
  }
  return GgmlType::F32;
}

// Every type we read must have a dequantizer in the registry; say which one is missing.
void require_dequantizer(const std::string& file, const std::string& tensor, GgmlType t) {
  if (!qtype(t).can_dequantize())
    throw FormatError(file, "tensor '" + tensor + "' has type " + std::string(type_info(t).name) +
                                ", which smolq cannot decode yet");
}

std::string layer_name(size_t il, const char* what) { return "blk." + std::to_string(il) + "." + what + ".weight"; }

}  // namespace

void WeightMatrix::dequantize_row(uint64_t r, float* out) const {
  dequantize_rows(type, std::span<const std::byte>(row_ptr(r), row_bytes), std::span<float>(out, cols));
}


Model::~Model() = default;

const GgufMetadata* Model::gguf_metadata() const { return gguf_ ? &gguf_->metadata() : nullptr; }

std::unique_ptr<Model> Model::open(const std::string& path) {
  std::unique_ptr<Model> m(new Model());
  m->path_ = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    m->load_hf(path);
  } else {
    m->load_gguf(path);
  }
  m->check_shapes();
  uint64_t budget = kIntPanelCacheBudget;
  for (const WeightMatrix* w : m->matrices()) attach_int_panel_cache(*const_cast<WeightMatrix*>(w), &budget);  // ours
  return m;
}

void Model::load_gguf(const std::string& path) {
  gguf_ = GgufReader::open(path);
  const auto& meta = gguf_->metadata();
  config_ = config_from_gguf(meta, path);
  auto matrix = [&](const std::string& name) {
    const GgufTensorInfo& t = gguf_->tensor(name);
    if (t.shape.size() != 2) throw FormatError(path, "tensor '" + name + "' is not 2-D");
    require_dequantizer(path, name, t.type);
    WeightMatrix w;
    w.name = name;
    w.type = t.type;
    w.cols = t.shape[0];
    w.rows = t.shape[1];
    w.row_bytes = *row_bytes(t.type, w.cols);  // the reader validated the block multiple
    w.data = gguf_->tensor_data(t).data();
    return w;
  };
  auto vec = [&](const std::string& name) {
    const GgufTensorInfo& t = gguf_->tensor(name);
    require_dequantizer(path, name, t.type);
    if (t.n_elements % type_info(t.type).block_elems != 0)
      throw FormatError(path, "tensor '" + name + "' is not a whole number of blocks");
    std::vector<float> v(t.n_elements);
    dequantize_rows(t.type, gguf_->tensor_data(t).span(), v);
    return v;
  };

  tok_embd_ = matrix("token_embd.weight");
  if (config_.n_vocab == 0) config_.n_vocab = tok_embd_.rows;
  tied_ = gguf_->find_tensor("output.weight") == nullptr;
  if (!tied_) output_ = matrix("output.weight");
  config_.tied_embeddings = tied_;
  output_norm_ = vec("output_norm.weight");
  layers_.resize(config_.n_layer);
  for (size_t il = 0; il < layers_.size(); ++il) {
    LayerWeights& L = layers_[il];
    L.attn_norm = vec(layer_name(il, "attn_norm"));
    L.ffn_norm = vec(layer_name(il, "ffn_norm"));
    L.wq = matrix(layer_name(il, "attn_q"));
    L.wk = matrix(layer_name(il, "attn_k"));
    L.wv = matrix(layer_name(il, "attn_v"));
    L.wo = matrix(layer_name(il, "attn_output"));
    L.ffn_gate = matrix(layer_name(il, "ffn_gate"));
    L.ffn_up = matrix(layer_name(il, "ffn_up"));
    L.ffn_down = matrix(layer_name(il, "ffn_down"));
    L.use_rope = config_.use_rope[il];
  }
  if (gguf_->find_tensor("rope_freqs.weight")) {
    rope_freqs_ = vec("rope_freqs.weight");
    if (rope_freqs_.size() != config_.rope_dim / 2)
      throw FormatError(path, "rope_freqs.weight has " + std::to_string(rope_freqs_.size()) + " values for " +
                                  std::to_string(config_.rope_dim) + " rotary dimensions");
  }
}

void Model::load_hf(const std::string& dir) {
  hf_dir_ = dir;
  config_ = parse_hf_config((fs::path(dir) / "config.json").string());
  st_ = SafetensorsCheckpoint::open(dir);
  auto matrix = [&](const std::string& hf_name, const std::string& gguf_name) {
    const StTensor& t = st_->get(hf_name);
    if (t.shape.size() != 2) throw FormatError(t.file, "tensor '" + hf_name + "' is not 2-D");
    WeightMatrix w;
    w.name = gguf_name;
    w.type = ggml_type_of(t.dtype);
    w.rows = t.shape[0];
    w.cols = t.shape[1];
    w.row_bytes = w.cols * st_dtype_size(t.dtype);
    w.data = t.data.data();
    return w;
  };
  auto vec = [&](const std::string& hf_name) {
    const StTensor& t = st_->get(hf_name);
    std::vector<float> v(t.n_elements);
    SafetensorsCheckpoint::read_f32(t, 0, v);
    return v;
  };

  tok_embd_ = matrix("model.embed_tokens.weight", "token_embd.weight");
  // An explicit lm_head wins even when tied (it then holds the same values).
  tied_ = st_->find("lm_head.weight") == nullptr;
  if (tied_ && !config_.tied_embeddings)
    throw FormatError(dir, "lm_head.weight is missing but config.json says tie_word_embeddings = false");
  if (!tied_) output_ = matrix("lm_head.weight", "output.weight");
  output_norm_ = vec("model.norm.weight");
  layers_.resize(config_.n_layer);
  for (size_t il = 0; il < layers_.size(); ++il) {
    const std::string p = "model.layers." + std::to_string(il) + ".";
    LayerWeights& L = layers_[il];
    L.attn_norm = vec(p + "input_layernorm.weight");
    L.ffn_norm = vec(p + "post_attention_layernorm.weight");
    L.wq = matrix(p + "self_attn.q_proj.weight", layer_name(il, "attn_q"));
    L.wk = matrix(p + "self_attn.k_proj.weight", layer_name(il, "attn_k"));
    L.wv = matrix(p + "self_attn.v_proj.weight", layer_name(il, "attn_v"));
    L.wo = matrix(p + "self_attn.o_proj.weight", layer_name(il, "attn_output"));
    L.ffn_gate = matrix(p + "mlp.gate_proj.weight", layer_name(il, "ffn_gate"));
    L.ffn_up = matrix(p + "mlp.up_proj.weight", layer_name(il, "ffn_up"));
    L.ffn_down = matrix(p + "mlp.down_proj.weight", layer_name(il, "ffn_down"));
    L.use_rope = config_.use_rope[il];
    // Rotate-half -> adjacent pairs (see the file comment). NoPE layers need no permutation,
    // but llama.cpp's converter permutes them too; the result is the same either way since
    // attention is invariant to a common permutation of Q and K rows.
    L.wq.row_order = qk_row_order(config_.n_head, config_.head_dim);
    L.wk.row_order = qk_row_order(config_.n_head_kv, config_.head_dim);
  }
  if (config_.rope_scaling.type == "llama3") rope_freqs_ = llama3_rope_factors(config_);
}

void Model::check_shapes() const {
  const ModelConfig& c = config_;
  auto expect = [&](const WeightMatrix& w, uint64_t rows, uint64_t cols) {
    if (w.rows != rows || w.cols != cols)
      throw FormatError(path_, "tensor '" + w.name + "' is " + std::to_string(w.rows) + " x " + std::to_string(w.cols) +
                                   " (rows x cols), expected " + std::to_string(rows) + " x " + std::to_string(cols));
    if (!w.row_order.empty() && w.row_order.size() != rows)
      throw FormatError(path_, "tensor '" + w.name + "': head layout does not match its row count");
  };
  auto expect_vec = [&](const std::vector<float>& v, const std::string& what) {
    if (v.size() != c.n_embd)
      throw FormatError(path_, what + " has " + std::to_string(v.size()) + " values, expected " + std::to_string(c.n_embd));
  };
  if (c.rope_dim > c.head_dim || c.rope_dim % 2 != 0)
    throw FormatError(path_, "rotary dimension count must be even and at most the head size");
  expect(tok_embd_, c.n_vocab, c.n_embd);
  if (!tied_) expect(output_, c.n_vocab, c.n_embd);
  expect_vec(output_norm_, "output_norm");
  for (size_t il = 0; il < layers_.size(); ++il) {
    const LayerWeights& L = layers_[il];
    expect_vec(L.attn_norm, layer_name(il, "attn_norm"));
    expect_vec(L.ffn_norm, layer_name(il, "ffn_norm"));
    expect(L.wq, c.q_dim(), c.n_embd);
    expect(L.wk, c.kv_dim(), c.n_embd);
    expect(L.wv, c.kv_dim(), c.n_embd);
    expect(L.wo, c.n_embd, c.q_dim());
    expect(L.ffn_gate, c.n_ff, c.n_embd);
    expect(L.ffn_up, c.n_ff, c.n_embd);
    expect(L.ffn_down, c.n_embd, c.n_ff);
  }
}

std::vector<const WeightMatrix*> Model::matrices() const {
  std::vector<const WeightMatrix*> v{&tok_embd_};
  if (!tied_) v.push_back(&output_);
  for (const LayerWeights& L : layers_)
    for (const WeightMatrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) v.push_back(w);
  return v;
}

WeightMatrix* Model::find_matrix(const std::string& name) {
  for (const WeightMatrix* w : matrices())
    if (w->name == name) return const_cast<WeightMatrix*>(w);  // matrices() only adds const
  return nullptr;
}

void Model::substitute_weight(const std::string& name, GgmlType type, const std::byte* data, uint64_t row_bytes) {
  WeightMatrix* w = find_matrix(name);
  if (!w) throw Error("no weight matrix named '" + name + "' in " + path_);
  bool saved = false;
  for (const auto& [n, orig] : substituted_) saved = saved || n == name;
  if (!saved) substituted_.emplace_back(name, *w);
  w->type = type;
  w->data = data;
  w->row_bytes = row_bytes;
  w->row_order.clear();  // the copy is in logical order
  w->int_panels = nullptr;  // not the original's panels (restore_weight brings them back)
}

void Model::restore_weight(const std::string& name) {
  for (auto it = substituted_.begin(); it != substituted_.end(); ++it)
    if (it->first == name) {
      *find_matrix(name) = std::move(it->second);
      substituted_.erase(it);
      return;
    }
}

void Model::release_pages(const std::string& name) const {
  const WeightMatrix* w = nullptr;
  for (const auto& [n, orig] : substituted_)
    if (n == name) w = &orig;
  for (const WeightMatrix* m : matrices())
    if (!w && m->name == name) w = m;
  if (!w) throw Error("no weight matrix named '" + name + "' in " + path_);
  if (w->int_panels) {  // its integer panels too (a later product would make them again, same bits)
    std::lock_guard<std::mutex> lock(w->int_panels->mutex);
    std::vector<std::byte>().swap(w->int_panels->buf);
    w->int_panels->filled = false;
  }
  if (!gguf_) return;
  const MappedFile& f = gguf_->file();
  const std::byte* base = f.view().data();
  if (w->data < base || w->data >= base + f.size()) return;
  f.drop_pages(static_cast<uint64_t>(w->data - base), w->rows * w->row_bytes);
}

uint64_t Model::weight_bytes() const {
  uint64_t n = tok_embd_.rows * tok_embd_.row_bytes + (tied_ ? 0 : output_.rows * output_.row_bytes);
  for (const auto& L : layers_)
    for (const WeightMatrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
      n += w->rows * w->row_bytes;
  return n;
}

std::string Model::describe() const {
  std::map<std::string, int> types;
  ++types[std::string(type_info(tok_embd_.type).name)];
  if (!tied_) ++types[std::string(type_info(output_.type).name)];
  for (const auto& L : layers_)
    for (const WeightMatrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
      ++types[std::string(type_info(w->type).name)];
  std::string s = config_.arch + ", " + std::to_string(config_.n_layer) + " layers, n_embd " +
                  std::to_string(config_.n_embd) + ", vocab " + std::to_string(config_.n_vocab) + ", " +
                  (is_gguf() ? "GGUF" : "HF checkpoint") + ", matrices:";
  for (const auto& [name, n] : types) s += " " + name + " x" + std::to_string(n);
  return s;
}

}  // namespace smolq
