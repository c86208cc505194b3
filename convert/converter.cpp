#include "convert/converter.h"

#include <cmath>

#include "convert/naming.h"
#include "formats/rope_layout.h"
#include "formats/error.h"
#include "quantize/registry.h"

namespace smolq {

GgmlType plain_type_for(const std::vector<uint64_t>& shape, GgmlType weight_type) {
  if (shape.size() < 2) return GgmlType::F32;  // norms and other vectors stay exact
  GgmlType t = weight_type;
  if (shape[0] % type_info(t).block_elems != 0) {
    t = qtype(t).fallback;
    if (shape[0] % type_info(t).block_elems != 0) t = GgmlType::F16;
  }
  return t;
}

GgufMetadata conversion_metadata(const std::string& hf_dir, const ModelConfig& cfg, const HfTokenizerInfo* tokenizer,
                                 uint64_t n_params, FileType file_type, const NamingInputs& naming) {
  GgufMetadata m;
  write_general_metadata(load_model_metadata(hf_dir, naming, n_params), cfg.arch, m);
  write_gguf_hparams(cfg, m);
  m.set("general.file_type", GgufValue::u32(static_cast<uint32_t>(file_type)));
  if (tokenizer) write_tokenizer_metadata(*tokenizer, m);
  m.set("general.quantization_version", GgufValue::u32(2));
  m.set("general.quantized_by", GgufValue::str(std::string("smolq ") + SMOLQ_VERSION));
  return m;
}

// Rows of a mapped tensor as f32, in llama.cpp's Q/K row order. The pages of the rows read are
// released at once (each output tensor reads its rows once; a second file of the same pass, or
// a tool that reads them again, faults them back in from the page cache), so a conversion holds
// the chunks in flight, not whole tensors, of the checkpoint.
static RowSource row_source_for(const MappedTensor& m, const ModelConfig& cfg, const SafetensorsCheckpoint& ck) {
  const StTensor* t = m.source;
  const uint64_t cols = t->cols();
  const uint64_t rows = t->rows();
  uint64_t heads = 0;
  if (m.permute == RowPermute::QueryHeads) heads = cfg.n_head;
  if (m.permute == RowPermute::KeyHeads) heads = cfg.n_head_kv;
  return [t, cols, rows, heads, ck = &ck](uint64_t r0, uint64_t n, std::span<float> out) {
    if (heads == 0) {
      SafetensorsCheckpoint::read_f32(*t, r0 * cols, out);
      ck->drop_elements(*t, r0 * cols, n * cols);
      return;
    }
    for (uint64_t r = 0; r < n; ++r) {
      const uint64_t src = permuted_source_row(r0 + r, rows, heads);
      SafetensorsCheckpoint::read_f32(*t, src * cols, out.subspan(r * cols, cols));
      ck->drop_elements(*t, src * cols, cols);
    }
  };
}

ConvertPlan plan_conversion(const ConvertOptions& opt, const SafetensorsCheckpoint& ck) {
  ConvertPlan p;
  const std::string cfg_path = opt.input_dir + "/config.json";
  if (!file_exists(cfg_path)) throw FormatError(cfg_path, "missing config.json");
  p.config = parse_hf_config(cfg_path);
  const ModelConfig& cfg = p.config;
  if (cfg.arch == "smollm3") {
    // llama.cpp hard-codes SmolLM3's NoPE layers; any other pattern would be silently wrong.
    for (uint64_t il = 0; il < cfg.n_layer; ++il)
      if (cfg.use_rope[il] != ((il + 1) % kSmolLM3NoRopeStep != 0))
        throw FormatError(cfg_path, "no_rope_layers differs from the pattern llama.cpp implements for smollm3 "
                                    "(RoPE skipped exactly on every 4th layer)");
  }
  if (cfg.rope_scaling.type == "yarn")
    throw FormatError(cfg_path, "rope_scaling type 'yarn' is not supported for conversion yet");

  p.mapped = map_checkpoint(cfg, ck);
  p.tokenizer = load_hf_tokenizer(opt.input_dir, cfg, opt.tokenizer);

  // Tensors in output order, plus rope_freqs for llama3-style scaling.
  std::vector<float> rope_factors;
  if (cfg.rope_scaling.type == "llama3") rope_factors = llama3_rope_factors(cfg);
  for (const auto& m : p.mapped) {
    OutputTensor o;
    o.name = m.gguf_name;
    o.shape = m.gguf_shape;
    o.type = plain_type_for(o.shape, opt.weight_type);
    o.source = row_source_for(m, cfg, ck);
    p.outputs.push_back(std::move(o));
    uint64_t n = 1;
    for (uint64_t d : m.gguf_shape) n *= d;
    p.n_params += n;
  }
  if (!rope_factors.empty()) {
    OutputTensor o;
    o.name = "rope_freqs.weight";
    o.shape = {rope_factors.size()};
    o.type = GgmlType::F32;
    auto shared = std::make_shared<std::vector<float>>(rope_factors);
    o.source = [shared](uint64_t r0, uint64_t n, std::span<float> out) {
      std::copy(shared->begin(), shared->end(), out.begin());
    };
    // Position it right after token_embd, where llama.cpp's converter puts it.
    p.outputs.insert(p.outputs.begin() + 1, std::move(o));
  }

  // Straight to a quantized file type: the mixture planner decides every tensor's type.
  if (opt.quant) {
    std::vector<SourceTensor> sources;
    for (auto& o : p.outputs) {
      SourceTensor s;
      s.shape.name = o.name;
      for (size_t d = 0; d < o.shape.size() && d < 4; ++d) s.shape.ne[d] = o.shape[d];
      s.shape.source_type = GgmlType::F32;
      s.rows = o.source;
      sources.push_back(std::move(s));
    }
    ModelFacts facts;
    facts.arch = cfg.arch;
    facts.n_layer = static_cast<uint32_t>(cfg.n_layer);
    facts.n_head = static_cast<uint32_t>(cfg.n_head);
    facts.n_head_kv = static_cast<uint32_t>(cfg.n_head_kv);
    p.quant = plan_quantization(sources, facts, *opt.quant);
    p.outputs = p.quant->outputs;
  }

  p.metadata = conversion_metadata(opt.input_dir, cfg, &p.tokenizer, p.n_params, opt.file_type, opt.naming);
  if (p.quant) stamp_quantize_metadata(p.metadata, *opt.quant, *p.quant);
  return p;
}

}  // namespace smolq
