#include "inspect/model_check.h"

#include <sys/stat.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "formats/error.h"
#include "formats/finite_scan.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "quantize/tensor_quantizer.h"

namespace smolq {
namespace {

using Shape = std::vector<uint64_t>;  // ggml order (row length first)

// One weight llama.cpp creates for llama / smollm3, with its GGUF and HF names (the HF name
// relative to "model." / "model.layers.N.") and its shape in ggml order.
struct Expected {
  std::string gguf, hf;
  Shape shape;
  bool required = true;
};

std::vector<Expected> global_tensors(const ModelConfig& c) {
  return {
      {"token_embd.weight", "model.embed_tokens.weight", {c.n_embd, c.n_vocab}},
      {"output_norm.weight", "model.norm.weight", {c.n_embd}},
      // llama.cpp: optional; without it the output layer is token_embd (tied).
      {"output.weight", "lm_head.weight", {c.n_embd, c.n_vocab}, !c.tied_embeddings},
      {"rope_freqs.weight", "", {c.rope_dim / 2}, false},
  };
}

std::vector<Expected> layer_tensors(const ModelConfig& c) {
  return {
      {"attn_norm.weight", "input_layernorm.weight", {c.n_embd}},
      {"attn_q.weight", "self_attn.q_proj.weight", {c.n_embd, c.q_dim()}},
      {"attn_k.weight", "self_attn.k_proj.weight", {c.n_embd, c.kv_dim()}},
      {"attn_v.weight", "self_attn.v_proj.weight", {c.n_embd, c.kv_dim()}},
      {"attn_output.weight", "self_attn.o_proj.weight", {c.q_dim(), c.n_embd}},
      {"ffn_norm.weight", "post_attention_layernorm.weight", {c.n_embd}},
      {"ffn_gate.weight", "mlp.gate_proj.weight", {c.n_embd, c.n_ff}},
      {"ffn_up.weight", "mlp.up_proj.weight", {c.n_embd, c.n_ff}},
      {"ffn_down.weight", "mlp.down_proj.weight", {c.n_ff, c.n_embd}},
      // Optional biases llama.cpp's llama graph accepts.
      {"attn_q.bias", "", {c.q_dim()}, false},
      {"attn_k.bias", "", {c.kv_dim()}, false},
      {"attn_v.bias", "", {c.kv_dim()}, false},
      {"attn_output.bias", "", {c.n_embd}, false},
  };
}

Shape trimmed(Shape s) {
  while (s.size() > 1 && s.back() == 1) s.pop_back();
  return s;
}

std::string shape_text(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

void error(InspectReport& r, const std::string& m) { r.findings.push_back({Severity::kError, FormatError::kNoOffset, m}); }
void warning(InspectReport& r, const std::string& m) { r.findings.push_back({Severity::kWarning, FormatError::kNoOffset, m}); }

// Compare the report's tensors with the expected list. `name_of` gives an expected tensor's
// name in the report's naming (empty: this naming has no such tensor), `stored` turns an
// expected ggml shape into the report's order.
void check_tensor_set(InspectReport& r, const ModelConfig& c, bool hf) {
  std::map<std::string, const TensorRow*> rows;
  for (const auto& t : r.tensors) rows[t.name] = &t;
  std::set<std::string> known;
  const std::string what = hf ? "config.json" : "the GGUF metadata";
  auto expect = [&](const Expected& e, const std::string& name) {
    if (name.empty()) return;
    known.insert(name);
    auto it = rows.find(name);
    if (it == rows.end()) {
      if (e.required) error(r, "tensor '" + name + "' is missing (" + what + " describes a model that needs it)");
      return;
    }
    Shape want = trimmed(e.shape), have = trimmed(it->second->shape);
    if (hf) std::reverse(want.begin(), want.end());
    if (have != want)
      error(r, "tensor '" + name + "' has shape " + shape_text(it->second->shape) + "; " + what + " gives " +
                   shape_text(want));
    if (!hf && it->second->type.rfind("type#", 0) == 0)
      error(r, "tensor '" + name + "' has a ggml type llama.cpp does not know (" + it->second->type + ")");
  };
  for (const auto& e : global_tensors(c)) expect(e, hf ? e.hf : e.gguf);
  for (uint64_t il = 0; il < c.n_layer; ++il)
    for (const auto& e : layer_tensors(c)) {
      const std::string prefix = hf ? "model.layers." + std::to_string(il) + "." : "blk." + std::to_string(il) + ".";
      expect(e, e.hf.empty() && hf ? "" : prefix + (hf ? e.hf : e.gguf));
    }
  // Tensors nobody creates: llama.cpp fails with "wrong number of tensors"; the converter
  // refuses weights it cannot map.
  std::vector<std::string> extra;
  uint64_t max_layer = 0;
  bool beyond = false;
  for (const auto& t : r.tensors) {
    if (known.count(t.name)) continue;
    if (hf && t.name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // recomputed, ignored
    if (hf && t.name == "lm_head.weight" && c.tied_embeddings) continue;          // tied: not used
    if (t.layer && static_cast<uint64_t>(*t.layer) >= c.n_layer) {
      beyond = true;
      max_layer = std::max<uint64_t>(max_layer, static_cast<uint64_t>(*t.layer));
    }
    extra.push_back(t.name);
  }
  if (beyond)
    error(r, (hf ? std::string("num_hidden_layers") : c.arch + ".block_count") + " is " + std::to_string(c.n_layer) +
                 " but tensors go up to layer " + std::to_string(max_layer));
  if (!extra.empty()) {
    std::string list;
    for (size_t i = 0; i < extra.size() && i < 5; ++i) list += (i ? ", " : "") + extra[i];
    if (extra.size() > 5) list += ", ... (" + std::to_string(extra.size()) + " in all)";
    error(r, std::to_string(extra.size()) + " tensor(s) the " + c.arch + " architecture does not use: " + list);
  }
}

void check_gguf_tokenizer(InspectReport& r, const ModelConfig& c) {
  const GgufMetadata& m = r.metadata;
  const auto model = m.opt_string("tokenizer.ggml.model");
  if (!model) {
    error(r, "tokenizer.ggml.model is missing (llama.cpp cannot load a vocabulary without it)");
    return;
  }
  if (*model == "none" || *model == "no_vocab") return;
  const GgufValue* toks = m.find("tokenizer.ggml.tokens");
  if (!toks || toks->type != GgufType::ARRAY || toks->as_array().elem_type != GgufType::STRING ||
      toks->as_array().items.empty()) {
    error(r, "tokenizer.ggml.tokens is missing or empty");
    return;
  }
  const uint64_t n = toks->as_array().items.size();
  for (const char* k : {"tokenizer.ggml.token_type", "tokenizer.ggml.scores"}) {
    const GgufValue* v = m.find(k);
    if (v && v->type == GgufType::ARRAY && v->as_array().items.size() != n)
      error(r, std::string(k) + " has " + std::to_string(v->as_array().items.size()) + " entries for " +
                   std::to_string(n) + " tokens");
  }
  if (*model == "gpt2" && !m.has("tokenizer.ggml.merges")) error(r, "tokenizer.ggml.merges is missing (BPE needs its merges)");
  if (c.n_vocab != n)
    error(r, "the vocabulary has " + std::to_string(n) + " tokens but token_embd.weight has " + std::to_string(c.n_vocab) +
                 " rows");
  for (const char* role : {"bos", "eos", "unknown", "padding", "eot"}) {
    const std::string key = std::string("tokenizer.ggml.") + role + "_token_id";
    const GgufValue* v = m.find(key);
    if (v && v->is_integer() && (v->as_i64() < 0 || static_cast<uint64_t>(v->as_i64()) >= n))
      warning(r, key + " = " + std::to_string(v->as_i64()) + " is outside the vocabulary of " + std::to_string(n) +
                     " (llama.cpp ignores it)");
  }
}

void check_gguf(InspectReport& r) {
  const auto arch = r.metadata.opt_string("general.architecture");
  if (!arch) {
    if (r.metadata.opt_string("general.type").value_or("") == "imatrix" || r.metadata.has("imatrix.chunk_count"))
      r.findings.push_back({Severity::kInfo, FormatError::kNoOffset, "an importance matrix, not a model"});
    else if (!r.tensors.empty() || r.metadata.size() > 0)
      error(r, "general.architecture is missing: not a model llama.cpp can load");
    return;
  }
  if (*arch != "llama" && *arch != "smollm3") {
    r.findings.push_back({Severity::kInfo, FormatError::kNoOffset,
                          "architecture '" + *arch + "': the llama.cpp loader checks cover llama and smollm3 only"});
    return;
  }
  if (!r.config) {
    // config_from_gguf's finding (a warning so the rest still prints) is a load failure here.
    for (auto& f : r.findings)
      if (f.message.rfind("hyperparameters: ", 0) == 0) f.severity = Severity::kError;
    return;
  }
  ModelConfig c = *r.config;
  // GGUF has no tie flag: llama.cpp treats output.weight as optional (absent = tied).
  c.tied_embeddings = true;
  // llama.cpp takes the vocabulary size from the tokens; token_embd must have that many rows.
  for (const auto& t : r.tensors)
    if (t.name == "token_embd.weight" && t.shape.size() >= 2) c.n_vocab = t.shape[1];
  if (!r.metadata.has(c.arch + ".attention.key_length") && c.n_embd % c.n_head != 0)
    error(r, c.arch + ".embedding_length (" + std::to_string(c.n_embd) + ") is not a multiple of the " +
                 std::to_string(c.n_head) + " heads");
  if (c.rope_dim > c.head_dim) error(r, c.arch + ".rope.dimension_count is larger than the head width");
  check_tensor_set(r, c, /*hf=*/false);
  check_gguf_tokenizer(r, c);
}

void check_hf(InspectReport& r) {
  if (!r.config) return;  // config.json problems are findings already
  const ModelConfig& c = *r.config;
  const std::string tj = r.path + "/tokenizer.json";
  struct stat st {};
  if (::stat(tj.c_str(), &st) != 0) {
    error(r, tj + ": missing (convert needs the tokenizer)");
  } else if (st.st_size == 0) {
    error(r, tj + ": empty file");
  } else if (r.tokenizer && r.tokenizer->vocab_size == 0) {
    error(r, tj + ": no vocabulary (model.vocab is missing or empty)");
  } else if (r.tokenizer && r.tokenizer->vocab_size > c.n_vocab) {
    error(r, tj + ": " + std::to_string(r.tokenizer->vocab_size) + " tokens, more than vocab_size " +
                 std::to_string(c.n_vocab) + " in config.json");
  }
  if (r.tensors.empty()) return;  // config-only folder (estimate's use) or unreadable weights
  if (!c.tied_embeddings && std::none_of(r.tensors.begin(), r.tensors.end(), [](const TensorRow& t) {
        return t.name == "lm_head.weight";
      }))
    error(r, "tie_word_embeddings is false but there is no lm_head.weight (the model has no output layer)");
  check_tensor_set(r, c, /*hf=*/true);
}

}  // namespace

void check_model(InspectReport& r) {
  switch (r.kind) {
    case SourceKind::kGguf:
      // A key of the wrong type makes a typed getter throw: that is a finding about the file
      // (the scan already names the key), never an exception out of inspect.
      try {
        check_gguf(r);
      } catch (const FormatError& e) {
        error(r, e.message());
      }
      break;
    case SourceKind::kHfFolder: check_hf(r); break;
    case SourceKind::kSafetensors: break;  // a bare weights file: no config to compare with
  }
}

uint64_t check_tensor_data(InspectReport& r) {
  uint64_t scanned = 0;
  auto report = [&](const std::string& tensor, const std::string& type, float v, uint64_t index, uint64_t ncols) {
    error(r, "tensor '" + tensor + "' (" + type + "): non-finite value " + float_text(v) + " at " +
                 element_position(index, ncols));
  };
  try {
    if (r.kind == SourceKind::kGguf) {
      auto reader = GgufReader::open(r.path);
      for (const auto& t : reader->tensors()) {
        const ByteView d = reader->tensor_data(t);
        const uint64_t ncols = t.shape.empty() ? 1 : t.shape[0];
        ++scanned;
        if (auto bad = find_non_finite_tensor(t.type, d.span(), ncols)) {
          std::vector<float> row(ncols);
          dequantize_tensor_rows(t.type, d.span(), ncols, *bad / ncols, 1, row);
          report(t.name, std::string(type_info(t.type).name), row[*bad % ncols], *bad, ncols);
        }
      }
    } else {
      auto ck = SafetensorsCheckpoint::open(r.path);
      for (const auto& t : ck->tensors()) {
        const GgmlType g = t.dtype == StDtype::F32 ? GgmlType::F32 : t.dtype == StDtype::F16 ? GgmlType::F16 : GgmlType::BF16;
        ++scanned;
        if (auto bad = find_non_finite_plain(g, t.data.span(), t.n_elements)) {
          float v = 0;
          SafetensorsCheckpoint::read_f32(t, *bad, std::span<float>(&v, 1));
          report(t.name, std::string(st_dtype_name(t.dtype)), v, *bad, t.cols());
        }
        ck->drop(t);
      }
    }
  } catch (const Error&) {
    // A file the strict readers refuse has its structural findings already.
  }
  return scanned;
}

}  // namespace smolq
