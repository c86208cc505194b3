// The two kinds of build source (see model_source.h): an HF checkpoint through the converter,
// a GGUF file through the quantize driver.
#include "convert/model_source.h"

#include <filesystem>
#include <map>

#include "formats/error.h"
#include "formats/model_config.h"
#include "formats/safetensors.h"
#include "quantize/tensor_quantizer.h"

namespace smolq {
namespace {

std::vector<ModelFileOutput> model_files(const std::vector<ModelSource::PlannedFile>& files) {
  std::vector<ModelFileOutput> out;
  for (const auto& f : files) out.push_back({f.path, &f.plan->metadata, &f.plan->outputs, f.opened});
  return out;
}

class HfSource final : public ModelSource {
 public:
  HfSource(const std::string& dir, const HfBuildSettings& s)
      : ModelSource(dir), settings_(s), ck_(SafetensorsCheckpoint::open(dir)) {}

  bool is_gguf() const override { return false; }

  BuildPlan plan(const std::optional<QuantizeOptions>& q) const override {
    return plan_with(q, settings_.weight_type, settings_.file_type);
  }

  BuildPlan plan_plain(GgmlType weight_type, FileType file_type) const override {
    return plan_with(std::nullopt, weight_type, file_type);
  }

  std::vector<WriteResult> write_all(const std::vector<PlannedFile>& files, int threads,
                                     const std::function<void(const WriteProgress&)>& on_progress) const override {
    // Release the mapped pages of every source tensor before the one in progress (all its
    // chunks have been handed out, to every file): RSS stays ~ the tensors in flight. A page
    // still being read by a slower thread is simply read again from the page cache.
    const ModelConfig cfg = parse_hf_config(path() + "/config.json");
    std::map<std::string, const StTensor*> source_of;
    for (const auto& m : map_checkpoint(cfg, *ck_)) source_of[m.gguf_name] = m.source;
    const std::vector<OutputTensor>& order = files.front().plan->outputs;
    size_t dropped = 0;  // tensors [0, dropped) released
    auto progress = [&](const WriteProgress& wp) {
      for (; dropped < wp.tensor_index && dropped < order.size(); ++dropped)
        if (auto it = source_of.find(order[dropped].name); it != source_of.end()) ck_->drop(*it->second);
      if (on_progress) on_progress(wp);
    };
    return write_gguf_models(model_files(files), threads, progress);
  }

 private:
  // A plan at the given plain type (unused with `q`, which has its own file type).
  BuildPlan plan_with(const std::optional<QuantizeOptions>& q, GgmlType weight_type, FileType file_type) const {
    ConvertOptions opt;
    opt.input_dir = path();
    opt.weight_type = weight_type;
    opt.file_type = q ? q->ftype : file_type;
    opt.quant = q;
    opt.naming = settings_.naming;
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

  HfBuildSettings settings_;
  std::unique_ptr<SafetensorsCheckpoint> ck_;
};

// A GGUF that is not a model (an imatrix, ...) is refused naming the file, before any work.
std::unique_ptr<GgufReader> open_model_gguf(const std::string& path) {
  auto r = GgufReader::open(path);
  require_model_gguf(r->metadata(), path);
  return r;
}

class GgufSource final : public ModelSource {
 public:
  explicit GgufSource(const std::string& path)
      : ModelSource(path), reader_(open_model_gguf(path)), sources_(gguf_sources(*reader_)) {}

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

  std::vector<WriteResult> write_all(const std::vector<PlannedFile>& files, int threads,
                                     const std::function<void(const WriteProgress&)>& on_progress) const override {
    return write_gguf_models(model_files(files), threads, on_progress);
  }

 private:
  std::unique_ptr<GgufReader> reader_;
  std::vector<SourceTensor> sources_;
};

}  // namespace

BuildPlan ModelSource::plan_plain(GgmlType, FileType) const {
  throw Error("internal: a plain conversion needs a checkpoint folder, not a GGUF file");
}

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
    // The pages of rows just decoded are released (as convert does with a checkpoint): a
    // requantization holds the chunks in flight, not the whole input mapping (it held all of
    // a 3.4 GB F16 before). A later read of the same rows faults them in again.
    const uint64_t rb = row_bytes(st, ncols).value_or(0);
    const uint64_t base = reader.tensor_data(t).file_offset();
    const MappedFile* file = &reader.file();
    s.rows = [st, ncols, bytes, rb, base, file](uint64_t r0, uint64_t n, std::span<float> dst) {
      dequantize_tensor_rows(st, bytes, ncols, r0, n, dst);
      file->drop_pages(base + r0 * rb, n * rb);
    };
    sources.push_back(std::move(s));
  }
  return sources;
}

}  // namespace smolq
