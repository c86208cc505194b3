#include "formats/model_config.h"

#include <simdjson.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdio>

#include "formats/error.h"
#include "formats/mapped_file.h"

namespace smolq {
namespace {

using simdjson::dom::element;
using simdjson::dom::object;

// Small typed accessors over a parsed config object; errors name the file and the field.
class JsonFields {
 public:
  JsonFields(object o, std::string path) : o_(o), path_(std::move(path)) {}
  bool has(const char* k) const {
    element e;
    return o_[k].get(e) == simdjson::SUCCESS && !e.is_null();
  }
  uint64_t u64(const char* k) const {
    element e = need(k);
    int64_t i;
    uint64_t u;
    double d;
    if (e.get(u) == simdjson::SUCCESS) return u;
    if (e.get(i) == simdjson::SUCCESS && i >= 0) return static_cast<uint64_t>(i);
    if (e.get(d) == simdjson::SUCCESS && d >= 0 && d == std::floor(d) && d < 1e18) return static_cast<uint64_t>(d);
    throw FormatError(path_, std::string("field '") + k + "' must be a non-negative integer");
  }
  std::optional<uint64_t> opt_u64(const char* k) const { return has(k) ? std::optional(u64(k)) : std::nullopt; }
  double f64(const char* k) const {
    element e = need(k);
    double d;
    int64_t i;
    uint64_t u;
    if (e.get(d) == simdjson::SUCCESS) return d;
    if (e.get(i) == simdjson::SUCCESS) return static_cast<double>(i);
    if (e.get(u) == simdjson::SUCCESS) return static_cast<double>(u);
    throw FormatError(path_, std::string("field '") + k + "' must be a number");
  }
  std::string str(const char* k) const {
    std::string_view s;
    if (need(k).get(s) != simdjson::SUCCESS) throw FormatError(path_, std::string("field '") + k + "' must be a string");
    return std::string(s);
  }
  bool boolean(const char* k, bool dflt) const {
    if (!has(k)) return dflt;
    bool b;
    if (need(k).get(b) != simdjson::SUCCESS) throw FormatError(path_, std::string("field '") + k + "' must be true or false");
    return b;
  }
  std::optional<int64_t> opt_id(const char* k) const {
    // Token ids may be an int or a list of ints (eos_token_id); take the first.
    if (!has(k)) return std::nullopt;
    element e = need(k);
    int64_t i;
    if (e.get(i) == simdjson::SUCCESS) return i;
    simdjson::dom::array a;
    if (e.get(a) == simdjson::SUCCESS) {
      for (element x : a)
        if (x.get(i) == simdjson::SUCCESS) return i;
    }
    throw FormatError(path_, std::string("field '") + k + "' must be a token id");
  }
  element need(const char* k) const {
    element e;
    if (o_[k].get(e) != simdjson::SUCCESS || e.is_null())
      throw FormatError(path_, std::string("missing field '") + k + "'");
    return e;
  }
  const std::string& path() const { return path_; }

 private:
  object o_;
  std::string path_;
};

void check_config(const ModelConfig& c, const std::string& path) {
  auto bad = [&](const std::string& m) { throw FormatError(path, m); };
  if (c.n_embd == 0 || c.n_layer == 0 || c.n_head == 0 || c.n_head_kv == 0 || c.n_ff == 0 || c.n_vocab == 0)
    bad("hidden size, layer count, head counts, intermediate size and vocab size must all be positive");
  if (c.n_layer > 4096 || c.n_embd > (1u << 20) || c.n_ff > (1u << 22) || c.n_vocab > (1u << 24) || c.n_head > 4096)
    bad("hyperparameters out of any plausible range");
  if (c.n_head % c.n_head_kv != 0)
    bad("num_attention_heads (" + std::to_string(c.n_head) + ") is not a multiple of num_key_value_heads (" +
        std::to_string(c.n_head_kv) + ")");
  if (c.head_dim == 0 || c.head_dim % 2 != 0 || c.head_dim > (1u << 16))
    bad("head dimension must be positive, even and at most 65536");
  if (!(c.rms_eps > 0) || !(c.rope_theta > 0) || !std::isfinite(c.rms_eps) || !std::isfinite(c.rope_theta))
    bad("rms_norm_eps and rope_theta must be positive and finite");
  // llama.cpp sizes its default context by it and refuses a model without one.
  if (c.n_ctx_train == 0) bad("the training context (max_position_embeddings / " + c.arch + ".context_length) must be positive");
}

}  // namespace

uint64_t ModelConfig::n_params() const {
  const uint64_t attn = n_embd * q_dim() + 2 * n_embd * kv_dim() + q_dim() * n_embd;
  const uint64_t mlp = 3 * n_embd * n_ff;
  const uint64_t per_layer = attn + mlp + 2 * n_embd;
  return n_layer * per_layer + n_vocab * n_embd * (tied_embeddings ? 1 : 2) + n_embd;
}

ModelConfig parse_hf_config(const std::string& path) {
  const std::string text = read_text_file(path, 16u << 20);
  simdjson::dom::parser parser;
  element root;
  if (auto err = parser.parse(text).get(root))
    throw FormatError(path, std::string("invalid JSON: ") + simdjson::error_message(err));
  object o;
  if (root.get(o) != simdjson::SUCCESS) throw FormatError(path, "top level is not a JSON object");
  JsonFields f(o, path);

  ModelConfig c;
  std::string hf_arch;
  if (f.has("architectures")) {
    simdjson::dom::array a;
    if (f.need("architectures").get(a) == simdjson::SUCCESS) {
      for (element e : a) {
        std::string_view s;
        if (e.get(s) == simdjson::SUCCESS) {
          hf_arch = std::string(s);
          break;
        }
      }
    }
  }
  const std::string model_type = f.has("model_type") ? f.str("model_type") : "";
  if (hf_arch == "LlamaForCausalLM" || (hf_arch.empty() && model_type == "llama")) {
    c.arch = "llama";
  } else if (hf_arch == "SmolLM3ForCausalLM" || (hf_arch.empty() && model_type == "smollm3")) {
    c.arch = "smollm3";
  } else {
    throw FormatError(path, "unsupported architecture '" + (hf_arch.empty() ? model_type : hf_arch) +
                                "' (supported: LlamaForCausalLM, SmolLM3ForCausalLM)");
  }
  c.hf_architecture = hf_arch.empty() ? (c.arch == "llama" ? "LlamaForCausalLM" : "SmolLM3ForCausalLM") : hf_arch;
  c.n_vocab = f.u64("vocab_size");
  c.n_embd = f.u64("hidden_size");
  c.n_layer = f.u64("num_hidden_layers");
  c.n_head = f.u64("num_attention_heads");
  c.n_head_kv = f.opt_u64("num_key_value_heads").value_or(c.n_head);
  c.n_ff = f.u64("intermediate_size");
  c.n_ctx_train = f.opt_u64("max_position_embeddings").value_or(2048);
  c.rope_theta = f.has("rope_theta") ? f.f64("rope_theta") : 10000.0;
  c.rms_eps = f.has("rms_norm_eps") ? f.f64("rms_norm_eps") : 1e-6;
  c.head_dim = f.opt_u64("head_dim").value_or(c.n_head ? c.n_embd / c.n_head : 0);
  if (!f.has("head_dim") && c.n_head && c.n_embd % c.n_head != 0)
    throw FormatError(path, "hidden_size is not a multiple of num_attention_heads");
  c.rope_dim = c.head_dim;
  c.tied_embeddings = f.boolean("tie_word_embeddings", c.arch == "smollm3");
  c.bos_id = f.opt_id("bos_token_id");
  c.eos_id = f.opt_id("eos_token_id");
  c.pad_id = f.opt_id("pad_token_id");
  if (f.has("torch_dtype")) c.torch_dtype = f.str("torch_dtype");
  if (f.has("attention_bias") && f.boolean("attention_bias", false))
    throw FormatError(path, "attention_bias = true is not supported (no Llama-family SmolLM uses it)");
  if (f.has("mlp_bias") && f.boolean("mlp_bias", false)) throw FormatError(path, "mlp_bias = true is not supported");

  if (f.has("rope_scaling")) {
    object rs;
    if (f.need("rope_scaling").get(rs) != simdjson::SUCCESS) throw FormatError(path, "rope_scaling must be an object");
    JsonFields r(rs, path);
    std::string type = r.has("rope_type") ? r.str("rope_type") : (r.has("type") ? r.str("type") : "");
    if (type == "default") type = "";
    if (!type.empty() && type != "linear" && type != "llama3" && type != "yarn")
      throw FormatError(path, "unsupported rope_scaling type '" + type + "' (supported: linear, llama3, yarn)");
    c.rope_scaling.type = type;
    if (r.has("factor")) c.rope_scaling.factor = r.f64("factor");
    c.rope_scaling.original_context = r.opt_u64("original_max_position_embeddings").value_or(0);
    if (r.has("low_freq_factor")) c.rope_scaling.low_freq_factor = r.f64("low_freq_factor");
    if (r.has("high_freq_factor")) c.rope_scaling.high_freq_factor = r.f64("high_freq_factor");
  }

  // Sizes are checked before anything is sized by them (use_rope has n_layer entries).
  check_config(c, path);
  c.use_rope.assign(c.n_layer, true);
  if (c.arch == "smollm3") {
    // HF: `no_rope_layers[i]` is 1 when layer i USES rope (0 = NoPE); or an interval.
    if (f.has("no_rope_layers")) {
      simdjson::dom::array a;
      if (f.need("no_rope_layers").get(a) != simdjson::SUCCESS) throw FormatError(path, "no_rope_layers must be a list");
      size_t i = 0;
      for (element e : a) {
        int64_t v;
        if (e.get(v) != simdjson::SUCCESS) throw FormatError(path, "no_rope_layers must hold integers");
        if (i < c.use_rope.size()) c.use_rope[i] = v != 0;
        ++i;
      }
      if (i != c.n_layer)
        throw FormatError(path, "no_rope_layers has " + std::to_string(i) + " entries for " +
                                    std::to_string(c.n_layer) + " layers");
    } else {
      const uint64_t step = f.opt_u64("no_rope_layer_interval").value_or(kSmolLM3NoRopeStep);
      for (uint64_t il = 0; il < c.n_layer; ++il) c.use_rope[il] = step == 0 || (il + 1) % step != 0;
    }
  }
  return c;
}

ModelConfig config_from_gguf(const GgufMetadata& m, const std::string& path) {
  require_model_gguf(m, path);
  ModelConfig c;
  c.arch = m.get_string("general.architecture");
  if (c.arch != "llama" && c.arch != "smollm3")
    throw FormatError(path, "unsupported architecture '" + c.arch + "' (supported: llama, smollm3)");
  const std::string a = c.arch + ".";
  c.n_embd = m.get_u64(a + "embedding_length");
  c.n_layer = m.get_u64(a + "block_count");
  c.n_ff = m.get_u64(a + "feed_forward_length");
  c.n_head = m.get_u64(a + "attention.head_count");
  c.n_head_kv = m.opt_u64(a + "attention.head_count_kv").value_or(c.n_head);
  c.n_ctx_train = m.opt_u64(a + "context_length").value_or(0);
  c.rope_theta = m.opt_f64(a + "rope.freq_base").value_or(10000.0);
  c.rms_eps = m.get_f64(a + "attention.layer_norm_rms_epsilon");
  c.head_dim = m.opt_u64(a + "attention.key_length").value_or(c.n_head ? c.n_embd / c.n_head : 0);
  c.rope_dim = m.opt_u64(a + "rope.dimension_count").value_or(c.head_dim);
  if (auto v = m.opt_u64(a + "vocab_size")) {
    c.n_vocab = *v;
  } else if (const GgufValue* toks = m.find("tokenizer.ggml.tokens")) {
    c.n_vocab = toks->as_array().items.size();
  }
  if (auto t = m.opt_string(a + "rope.scaling.type")) {
    c.rope_scaling.type = *t == "none" ? "" : *t;
    c.rope_scaling.factor = m.opt_f64(a + "rope.scaling.factor").value_or(1.0);
    c.rope_scaling.original_context = m.opt_u64(a + "rope.scaling.original_context_length").value_or(0);
  }
  check_config(c, path);  // before use_rope is sized by n_layer
  c.use_rope.assign(c.n_layer, true);
  if (c.arch == "smollm3")
    for (uint64_t il = 0; il < c.n_layer; ++il) c.use_rope[il] = (il + 1) % kSmolLM3NoRopeStep != 0;
  return c;
}

void write_gguf_hparams(const ModelConfig& c, GgufMetadata& m) {
  const std::string a = c.arch + ".";
  m.set(a + "vocab_size", GgufValue::u32(static_cast<uint32_t>(c.n_vocab)));
  m.set(a + "context_length", GgufValue::u32(static_cast<uint32_t>(c.n_ctx_train)));
  m.set(a + "embedding_length", GgufValue::u32(static_cast<uint32_t>(c.n_embd)));
  m.set(a + "block_count", GgufValue::u32(static_cast<uint32_t>(c.n_layer)));
  m.set(a + "feed_forward_length", GgufValue::u32(static_cast<uint32_t>(c.n_ff)));
  m.set(a + "rope.dimension_count", GgufValue::u32(static_cast<uint32_t>(c.rope_dim)));
  m.set(a + "rope.freq_base", GgufValue::f32(static_cast<float>(c.rope_theta)));
  m.set(a + "attention.head_count", GgufValue::u32(static_cast<uint32_t>(c.n_head)));
  m.set(a + "attention.head_count_kv", GgufValue::u32(static_cast<uint32_t>(c.n_head_kv)));
  m.set(a + "attention.layer_norm_rms_epsilon", GgufValue::f32(static_cast<float>(c.rms_eps)));
  if (c.head_dim != c.n_embd / c.n_head) {
    m.set(a + "attention.key_length", GgufValue::u32(static_cast<uint32_t>(c.head_dim)));
    m.set(a + "attention.value_length", GgufValue::u32(static_cast<uint32_t>(c.head_dim)));
  }
  const auto& rs = c.rope_scaling;
  if (rs.type == "linear" || rs.type == "yarn") {
    m.set(a + "rope.scaling.type", GgufValue::str(rs.type));
    m.set(a + "rope.scaling.factor", GgufValue::f32(static_cast<float>(rs.factor)));
    if (rs.original_context)
      m.set(a + "rope.scaling.original_context_length", GgufValue::u32(static_cast<uint32_t>(rs.original_context)));
  }
  // llama3-style scaling is not a metadata key: llama.cpp reads precomputed per-dimension
  // frequency factors from the `rope_freqs.weight` tensor, which convert writes.
}

void require_hf_folder(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) throw FormatError(dir, "no such file or folder");
  if (!S_ISDIR(st.st_mode)) {
    char magic[4] = {};
    if (FILE* f = std::fopen(dir.c_str(), "rb")) {
      if (std::fread(magic, 1, 4, f) != 4) magic[0] = 0;
      std::fclose(f);
    }
    if (std::string_view(magic, 4) == "GGUF")
      throw FormatError(dir, "is a GGUF file, not a Hugging Face folder (use `smolq quantize` for GGUF input)");
    const std::string_view p(dir);
    if (p.ends_with(".safetensors") || p.ends_with(".safetensors.index.json"))
      throw FormatError(dir, "is a safetensors file, not a Hugging Face folder: give the folder that holds it "
                             "with config.json and tokenizer.json");
    throw FormatError(dir, "is a file, not a Hugging Face folder (config.json, *.safetensors, tokenizer.json)");
  }
  if (::stat((dir + "/config.json").c_str(), &st) != 0)
    throw FormatError(dir, "not a Hugging Face checkpoint folder: it has no config.json");
}

void require_model_gguf(const GgufMetadata& meta, const std::string& path) {
  if (meta.has("general.architecture")) return;
  const auto type = meta.opt_string("general.type");
  if ((type && *type == "imatrix") || meta.has("imatrix.datasets") || meta.has("imatrix.chunk_count"))
    throw FormatError(path, "is an importance matrix, not a model (no general.architecture)");
  throw FormatError(path, "is not a model: it has no general.architecture key");
}

}  // namespace smolq
