// `smolq convert`: a Hugging Face checkpoint folder -> one GGUF file that llama.cpp loads
// unchanged. This plans the conversion (names, types, metadata, row sources); the input is
// memory-mapped and convert/model_source.h writes the tensors one at a time on all threads
// (peak memory ~ the largest output tensor), the output appearing atomically.
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "convert/tensor_map.h"
#include "text/tokenizer_meta.h"
#include "formats/ggml_types.h"
#include "formats/model_config.h"
#include "quantize/model_writer.h"
#include "quantize/quantize_model.h"

namespace smolq {

// What a conversion plans (convert/model_source.h writes it).
struct ConvertOptions {
  std::string input_dir;
  // Plain output types: 2-D weights get `weight_type` (F32, F16, BF16 or Q8_0); 1-D tensors
  // (norms) stay F32; rows that do not fit a block format fall back as llama.cpp does.
  GgmlType weight_type = GgmlType::F16;
  FileType file_type = FileType::kF16;  // general.file_type (llama_ftype)
  // `--type Q4_K_M` etc.: plan with llama.cpp's mixture rules instead of weight_type.
  std::optional<QuantizeOptions> quant;
  std::string name_override;         // --name
  TokenizerOptions tokenizer;        // --pre-tokenizer
};

// Everything convert decided before writing: useful for --dry-run and tests.
struct ConvertPlan {
  ModelConfig config;
  HfTokenizerInfo tokenizer;
  GgufMetadata metadata;
  std::vector<MappedTensor> mapped;
  std::vector<OutputTensor> outputs;  // same order as written
  std::optional<QuantizePlanResult> quant;  // when converting straight to a file type
  uint64_t n_params = 0;
};

// Read config, tokenizer and tensor headers; decide names, types and metadata. The returned
// plan references `ck`, which must outlive it.
ConvertPlan plan_conversion(const ConvertOptions& opt, const SafetensorsCheckpoint& ck);

// The metadata convert writes for a checkpoint: general.* (naming from the folder),
// hyperparameters, file type, tokenizer (when given), quantization version and provenance.
// Shared with `smolq estimate`, so predicted sizes are the sizes written.
GgufMetadata conversion_metadata(const std::string& hf_dir, const ModelConfig& cfg, const HfTokenizerInfo* tokenizer,
                                 uint64_t n_params, FileType file_type, const std::string& name_override = "");

// The type a tensor gets for a plain output type (see ConvertOptions::weight_type).
GgmlType plain_type_for(const std::vector<uint64_t>& ggml_shape, GgmlType weight_type);

}  // namespace smolq
