// Fuzz target over a checkpoint's authorship metadata: README.md's YAML front matter (yaml-cpp,
// convert/model_card.cpp), config.json's `_name_or_path`, generation_config.json and a
// `--metadata` override file, through load_model_metadata, write_general_metadata and the
// default output file name (convert/naming.cpp). A model card is text anyone can publish, so
// besides malformed YAML the inputs of interest are alias bombs, deep nesting and strings
// that try to steer the output file name out of the current folder.
//
// Input: README.md ⟂ config.json ⟂ generation_config.json ⟂ metadata.json (absent parts are
// absent files; the override is used only when present).
#include "convert/naming.h"
#include "formats/error.h"
#include "fuzz/targets/fuzz_support.h"
#include "fuzz/targets/fuzz_targets.h"

namespace smolq::fuzz {

int fuzz_model_card(const uint8_t* data, size_t size) {
  std::vector<bool> present;
  const auto parts = split_parts(data, size, 4, &present);
  const char* names[] = {"README.md", "config.json", "generation_config.json", "metadata.json"};
  for (size_t i = 0; i < 4; ++i) {
    if (present[i]) write_scratch(std::string("card/") + names[i], parts[i]);
    else remove_scratch(std::string("card/") + names[i]);
  }
  const std::string dir = scratch_dir() + "/card";
  NamingInputs in;
  in.repo_id = (size & 1) ? "HuggingFaceTB/SmolLM2-135M-Instruct" : "";
  if (present[3]) in.metadata_path = dir + "/metadata.json";
  try {
    const ModelMetadata m = load_model_metadata(dir, in, 134515008);
    GgufMetadata meta;
    write_general_metadata(m, "llama", meta);
    if (!meta.opt_string("general.name")) fuzz_fail("no general.name written");
    const std::string out = default_output_name(meta, "Q4_K_M");
    if (out.find('/') != std::string::npos || out.front() == '.' || out.size() < 6 ||
        out.compare(out.size() - 5, 5, ".gguf") != 0)
      fuzz_fail("default output name is not one plain .gguf file: " + out);
  } catch (const Error&) {
  }
  return 0;
}

}  // namespace smolq::fuzz
