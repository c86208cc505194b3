// `general.*` metadata for a converted model and its default file name, by the rules
// llama.cpp's converter applies (gguf-py's Metadata.load, convert_hf_to_gguf.py's
// prepare_metadata and gguf.naming_convention), so hubs and runtimes show the same fields
// for a file made by smolq as for one made by llama.cpp. In order of precedence:
//   1. --name (general.name only);
//   2. the --metadata FILE override (JSON: {"general.name": ..., "general.base_models": [...]});
//   3. the model card: README.md's front matter (name, license, base_model, datasets, tags,
//      language, pipeline_tag, ...) and generation_config.json (general.sampling.*);
//   4. the model id "org/Name-135M-Instruct": the repo id when the checkpoint comes from the
//      Hugging Face cache, else config.json's `_name_or_path` when it is an id, split into
//      organization, basename, size label, finetune and version;
//   5. the folder's own name (its real name: "." is the folder it stands for);
//   6. the size label from the parameter count.
// docs/convert.md lists the keys and the one deliberate difference from llama.cpp.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/gguf.h"

namespace smolq {

struct NamingInputs {
  std::string repo_id;        // "org/name" when known (Hugging Face cache), else ""
  std::string metadata_path;  // --metadata FILE, else ""
  std::string name_override;  // --name, else ""
};

// One base model or dataset: its fields ("name", "organization", "repo_url", ...) in order.
using MetaEntry = std::vector<std::pair<std::string, std::string>>;

struct ModelMetadata {
  // Text fields by their Metadata name: name, author, version, organization, finetune,
  // basename, description, quantized_by, size_label, license, license_name, license_link,
  // url, doi, uuid, repo_url, source_url, source_doi, source_uuid, source_repo_url.
  std::map<std::string, std::string> text;
  std::optional<std::vector<MetaEntry>> base_models, datasets;
  std::optional<std::vector<std::string>> tags, languages;
  std::map<std::string, GgufValue> sampling;  // "general.sampling.top_k" -> value

  const std::string* field(const std::string& k) const;
  std::string field_or(const std::string& k, const std::string& fallback) const;
};

// What get_model_id_components makes of an id such as "HuggingFaceTB/SmolLM2-135M-Instruct".
struct ModelIdParts {
  std::optional<std::string> full_name, organization, basename, finetune, version, size_label;
};
ModelIdParts split_model_id(std::string_view model_id, int64_t total_params);
// "smollm2-135m" -> "Smollm2 135m": words in lower case are title-cased unless versions/numbers.
std::string id_to_title(std::string_view id);

// "135M" / "1.7B" style label with at least two significant digits, as llama.cpp writes it.
std::string size_label_for(uint64_t n_params);

ModelMetadata load_model_metadata(const std::string& hf_dir, const NamingInputs& in, uint64_t n_params);
void write_general_metadata(const ModelMetadata& m, const std::string& arch, GgufMetadata& meta);

// The file name llama.cpp's converter would choose for a file with this metadata:
// Basename-SizeLabel-Finetune-Version-ENCODING.gguf ("SmolLM2-135M-Instruct-Q4_K_M.gguf"), from
// the general.* keys; `encoding` is the file type's name.
std::string default_output_name(const GgufMetadata& meta, std::string_view encoding);

}  // namespace smolq
