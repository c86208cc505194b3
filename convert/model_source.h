// What a GGUF file is built from: a Hugging Face checkpoint folder (converted, as `smolq
// convert` does) or a GGUF file (requantized, as `smolq quantize` does). `quantize`, `convert`,
// measured mixed precision (mix/) and the verify sweep (verify/) all plan and write files
// through this one interface, so the same input and options give the same bytes whichever
// command builds them, and the planned size is the written size.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "convert/converter.h"
#include "formats/gguf.h"
#include "quantize/model_writer.h"
#include "quantize/quantize_model.h"

namespace smolq {

// Settings that only a conversion has (ignored for GGUF input).
struct HfBuildSettings {
  GgmlType weight_type = GgmlType::F16;  // plain conversion: type of 2-D weights
  FileType file_type = FileType::kF16;    // plain conversion: general.file_type
  NamingInputs naming;                    // the repo id, --metadata FILE, --name (convert/naming.h)
  TokenizerOptions tokenizer;             // --pre-tokenizer
};

// Everything decided before writing: the tensors with their types and sources, the metadata,
// and the exact layout of the file.
struct BuildPlan {
  GgufMetadata metadata;
  std::vector<OutputTensor> outputs;          // in file order
  std::optional<QuantizePlanResult> quant;    // when quantizing (a file type or a target)
  std::vector<GgufPlannedTensor> tensors;     // outputs' names, shapes and types
  uint32_t alignment = 32;
  GgufLayout layout;                          // data offset and exact file size
  // Conversion facts (empty for GGUF input).
  std::string pre_tokenizer, pre_detected_by, size_label;

  const std::vector<std::string>& warnings() const;
  int imatrix_used() const { return quant ? quant->imatrix_used : 0; }
};

class ModelSource {
 public:
  virtual ~ModelSource() = default;

  // A folder is a Hugging Face checkpoint, anything else a GGUF file.
  static std::unique_ptr<ModelSource> open(const std::string& path, const HfBuildSettings& hf = {});
  static std::unique_ptr<ModelSource> open_hf(const std::string& dir, const HfBuildSettings& hf = {});
  static std::unique_ptr<ModelSource> open_gguf(const std::string& path);

  virtual bool is_gguf() const = 0;
  const std::string& path() const { return path_; }

  // The file that `q` describes (a quantized file type, or a target's assigned types); without
  // `q`, the plain conversion of a checkpoint (HfBuildSettings::weight_type). The plan refers
  // to this source, which must outlive it.
  virtual BuildPlan plan(const std::optional<QuantizeOptions>& q) const = 0;

  // The plain conversion at another weight type than HfBuildSettings' (`convert --also f16`);
  // a GGUF source has none (throws).
  virtual BuildPlan plan_plain(GgmlType weight_type, FileType file_type) const;

  // Writes a plan of this source atomically at `out`; bytes do not depend on `threads`.
  // opened: `out` already opened with this plan (open_gguf_model), some tensors maybe placed.
  WriteResult write(const BuildPlan& p, const std::string& out, int threads,
                    const std::function<void(const WriteProgress&)>& on_progress = {},
                    GgufWriter* opened = nullptr) const {
    return write_all({{&p, out, opened}}, threads, on_progress).front();
  }

  // Several plans of this source (e.g. F16 and Q4_K_M) written in one pass over the input: each
  // source tensor is read once for all files (quantize/model_writer.h write_gguf_models), and
  // each file gets the bytes `write` would give it alone. The plans must list the same tensors
  // in the same order (every plan of one source does).
  struct PlannedFile {
    const BuildPlan* plan = nullptr;
    std::string path;
    GgufWriter* opened = nullptr;  // ModelFileOutput::opened
  };
  virtual std::vector<WriteResult> write_all(const std::vector<PlannedFile>& files, int threads,
                                             const std::function<void(const WriteProgress&)>& on_progress = {}) const = 0;

 protected:
  explicit ModelSource(std::string path) : path_(std::move(path)) {}
  // Fills tensors, alignment and layout from metadata and outputs.
  static void finish_plan(BuildPlan& p);

 private:
  std::string path_;
};

// The tensors of a GGUF file as quantizer sources (rows decoded on demand, encoded bytes kept
// for verbatim copies).
std::vector<SourceTensor> gguf_sources(const GgufReader& reader);

}  // namespace smolq
