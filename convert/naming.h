// `general.*` metadata for a converted model: name, basename, finetune, size label, license,
// following the conventions llama.cpp's converter uses so hubs and tools display it alike.
#pragma once
#include <cstdint>
#include <string>

#include "formats/gguf.h"

namespace smolq {

struct ModelNaming {
  std::string name;       // general.name: the checkpoint folder's name unless overridden
  std::string basename;   // part before the size label ("SmolLM2" of "SmolLM2-135M-Instruct")
  std::string finetune;   // part after it ("Instruct"), may be empty
  std::string size_label; // "135M", "1.7B"
  std::string license;    // "apache-2.0", "mit", or empty when unknown
};

// "135M" / "1.7B" style label with at least two significant digits, as llama.cpp writes it.
std::string size_label_for(uint64_t n_params);
ModelNaming derive_naming(const std::string& hf_dir, uint64_t n_params, const std::string& name_override);
void write_general_metadata(const ModelNaming& n, const std::string& arch, GgufMetadata& meta);

}  // namespace smolq
