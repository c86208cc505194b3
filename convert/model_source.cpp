// The two kinds of build source (see model_source.h): an HF checkpoint through the converter,
// a GGUF file through the quantize driver.
#include "convert/model_source.h"

#include <filesystem>
#include <map>

#include "formats/error.h"
#include "formats/safetensors.h"
#include "quantize/tensor_quantizer.h"

namespace smolq {
namespace {

class HfSource final : public ModelSource {
 public:
  HfSource(const std::string& dir, const HfBuildSettings& s)
      : ModelSource(dir), settings_(s), ck_(SafetensorsCheckpoint::open(dir)) {}

  bool is_gguf() const override { return false; }

  BuildPlan plan(const std::optional<QuantizeOptions>& q) const override {
    ConvertOptions opt;
    opt.input_dir = path();
    opt.weight_type = settings_.weight_type;
    opt.file_type = q ? q->ftype : settings_.file_type;
    opt.quant = q;
    opt.name_override = settings_.name_override;
    opt.tokenizer = settings_.tokenizer;
    ConvertPlan cp = plan_conversion(opt, *ck_);
    BuildPlan p;
    p.metadata = std::move(cp.metadata);
    p.outputs = std::move(cp.outputs);
    p.quant = std::move(cp.quant);
    p.pre_tokenizer = cp.tokenizer.pre;
    p.pre_detected_by = cp.tokenizer.pre_detected_by;
    p.size_label = p.metadata.get_string("general.size_label");
    finish_plan(p);
    return p;
  }

  WriteResult write(const BuildPlan& p, const std::string& out, int threads,
                    const std::function<void(const WriteProgress&)>& on_progress) const override {
    // Release each source tensor's pages once it has been written: RSS stays ~ one tensor.
    const ModelConfig cfg = parse_hf_config(path() + "/config.json");
    std::map<std::string, const StTensor*> source_of;
    for (const auto& m : map_checkpoint(cfg, *ck_)) source_of[m.gguf_name] = m.source;
    const OutputTensor* current = nullptr;
    auto progress = [&](const WriteProgress& wp) {
      if (wp.tensor != current) {
        if (current && source_of.count(current->name)) ck_->drop(*source_of[current->name]);
        current = wp.tensor;
      }
      if (on_progress) on_progress(wp);
    };
    return write_gguf_model(out, p.metadata, p.outputs, threads, progress);
  }

 private:
  HfBuildSettings settings_;
  std::unique_ptr<SafetensorsCheckpoint> ck_;
};

class GgufSource final : public ModelSource {
 public:
  explicit GgufSource(const std::string& path)
      : ModelSource(path), reader_(GgufReader::open(path)), sources_(gguf_sources(*reader_)) {}

  bool is_gguf() const override { return true; }

  BuildPlan plan(const std::optional<QuantizeOptions>& q) const override {
    if (!q) throw Error("internal: a GGUF source is built with quantize options");
    BuildPlan p;
    p.quant = plan_quantization(sources_, facts_from_gguf(reader_->metadata()), *q);
    p.outputs = p.quant->outputs;
    p.metadata = reader_->metadata();
    stamp_quantize_metadata(p.metadata, *q, *p.quant);
    finish_plan(p);
    return p;
  }

  WriteResult write(const BuildPlan& p, const std::string& out, int threads,
                    const std::function<void(const WriteProgress&)>& on_progress) const override {
    return write_gguf_model(out, p.metadata, p.outputs, threads, on_progress);
  }

 private:
  std::unique_ptr<GgufReader> reader_;
  std::vector<SourceTensor> sources_;
};

}  // namespace

const std::vector<std::string>& BuildPlan::warnings() const {
  static const std::vector<std::string> kNone;
  return quant ? quant->warnings : kNone;
}

std::unique_ptr<ModelSource> ModelSource::open(const std::string& path, const HfBuildSettings& hf) {
  if (std::filesystem::is_directory(path)) return open_hf(path, hf);
  return open_gguf(path);
}

std::unique_ptr<ModelSource> ModelSource::open_hf(const std::string& dir, const HfBuildSettings& hf) {
  return std::make_unique<HfSource>(dir, hf);
}

std::unique_ptr<ModelSource> ModelSource::open_gguf(const std::string& path) {
  return std::make_unique<GgufSource>(path);
}

void ModelSource::finish_plan(BuildPlan& p) {
  p.tensors.clear();
  for (const auto& o : p.outputs) p.tensors.push_back({o.name, o.shape, o.type});
  p.alignment = static_cast<uint32_t>(p.metadata.opt_u64("general.alignment").value_or(32));
  p.layout = plan_gguf_layout(p.metadata, p.tensors, p.alignment);
}

std::vector<SourceTensor> gguf_sources(const GgufReader& reader) {
  std::vector<SourceTensor> sources;
  for (const auto& t : reader.tensors()) {
    SourceTensor s;
    s.shape.name = t.name;
    for (size_t d = 0; d < t.shape.size() && d < 4; ++d) s.shape.ne[d] = t.shape[d];
    s.shape.source_type = t.type;
    const auto bytes = reader.tensor_data(t).span();
    s.encoded = bytes;
    const GgmlType st = t.type;
    const uint64_t ncols = t.shape[0];
    s.rows = [st, ncols, bytes](uint64_t r0, uint64_t n, std::span<float> dst) {
      dequantize_tensor_rows(st, bytes, ncols, r0, n, dst);
    };
    sources.push_back(std::move(s));
  }
  return sources;
}

}  // namespace smolq
