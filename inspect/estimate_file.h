// The estimate of a file that exists: its own metadata and tensor list as the candidate, so
// `smolq release` shows the memory of exactly the files it ships (and the estimate's file size
// is checked against the real one).
#pragma once
#include <string>

#include "formats/gguf.h"
#include "formats/model_config.h"
#include "inspect/estimate_report.h"
#include "inspect/memory_model.h"

namespace smolq {

// The hyperparameters the memory model reads, from a model's config and (for the BPE merges
// held in host memory) its GGUF metadata.
MemoryModelShape memory_shape(const ModelConfig& c, const GgufMetadata& meta);

// A written GGUF file as an estimate candidate named `name`.
QuantCandidate candidate_from_file(const GgufReader& r, std::string name);

}  // namespace smolq
