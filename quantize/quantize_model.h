// The model-level quantization driver shared by `smolq quantize` (GGUF in) and
// `smolq convert --type` (safetensors in): plan every tensor's type with llama.cpp's mixture
// rules, attach importance vectors, decide what is copied and what is (re)quantized, and
// stamp the metadata llama-quantize writes. The bytes themselves are produced by
// write_gguf_model (quantize/model_writer.h).
#pragma once
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "quantize/mixtures.h"
#include "quantize/model_writer.h"

namespace smolq {

// One input tensor: its shape and source type, a way to read rows as f32, and (for GGUF
// input) its encoded bytes so an unchanged tensor is copied verbatim.
struct SourceTensor {
  TensorShape shape;
  RowSource rows;
  std::span<const std::byte> encoded;  // empty for non-GGUF sources
};

struct QuantizeOptions {
  FileType ftype = FileType::kQ4_K_M;
  MixtureOptions mixture;                  // pure, type overrides, leave-output-tensor
  const ImatrixData* imatrix = nullptr;    // importance data, if any
  std::string imatrix_path;                // recorded in quantize.imatrix.file
  // llama-quantize's --include-weights / --exclude-weights: plain substrings of tensor names
  // (not regexes: "blk.1." must not select blk.10), at most one of the two lists non-empty.
  std::vector<std::string> include_weights;  // use the imatrix only for names containing one
  std::vector<std::string> exclude_weights;  // never use the imatrix for names containing one
  bool allow_requantize = false;           // quantized input may be quantized again
  std::vector<std::string> override_kv;    // KEY=TYPE:VALUE, as llama-quantize takes them
  // Only planning (--dry-run): a missing imatrix or a forbidden requantization becomes a
  // warning instead of an error, so the plan can still be shown (llama-quantize does the same).
  bool dry_run = false;
  // Per-tensor types chosen by the target allocator (quantize/allocate_plan.h): a tensor named
  // here takes exactly this type, instead of the mixture's choice (no fallback: the allocator
  // only offers types that fit the rows). Tensors not named follow `ftype` as usual.
  std::map<std::string, GgmlType> assigned_types;
  // --optimize without --imatrix: the calibration pass supplies importance data for every
  // matrix it reaches (verify/optimize.h), and checks the rest itself; types that need an
  // imatrix are planned without one.
  bool importance_from_calibration = false;
};

struct QuantizePlanResult {
  MixturePlan plan;
  std::vector<OutputTensor> outputs;       // in the source order
  std::vector<std::string> warnings;       // one line each (requantizing, missing imatrix rows)
  int imatrix_used = 0;                    // tensors quantized with importance data
  // imatrix entries left after --include/--exclude-weights (quantize.imatrix.entries_count,
  // which llama-quantize counts after filtering); 0 without an imatrix.
  int imatrix_entries = 0;
};

// Plans the output. Throws UsageError for option problems (a file type that needs an
// imatrix without one, requantizing without --allow-requantize, both include and exclude
// lists) and Error for an imatrix that does not fit the model (the message names the tensor).
QuantizePlanResult plan_quantization(const std::vector<SourceTensor>& sources, const ModelFacts& facts,
                                     const QuantizeOptions& opt);

// Metadata llama-quantize writes on top of the source's: general.file_type,
// general.quantization_version, quantize.imatrix.* (when entries are left after filtering:
// file and dataset as strings, entries_count and chunks_count as u32, chunks_count only when
// known), --override-kv values; and general.quantized_by naming smolq. split.* keys are dropped.
void stamp_quantize_metadata(GgufMetadata& meta, const QuantizeOptions& opt, const QuantizePlanResult& r);

// Parses one --override-kv "KEY=TYPE:VALUE" (TYPE: int, float, bool, str). Stored with the
// GGUF types llama-quantize writes: int -> u32 of |value| (llama.cpp PR 14182), float -> f32.
std::pair<std::string, GgufValue> parse_override_kv(const std::string& spec);

// ModelFacts from GGUF metadata (architecture, layer and head counts, experts).
ModelFacts facts_from_gguf(const GgufMetadata& meta);

}  // namespace smolq
