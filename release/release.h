// `smolq release MODEL --out DIR`: a folder ready to publish. The verify sweep (verify/sweep.h)
// builds and measures the ladder of quants in a work folder whose cache persists (a re-run
// after adding a type does only the new work); the release then puts, in one atomic step
// (formats/atomic_dir.h), into DIR:
//   <Model>-<TYPE>.gguf                  every quant of the ladder, named as publishers name them
//   <Model>-<TYPE>-target.gguf           measured mixed-precision files (`TYPE@target` rows) ...
//   <Model>-<TYPE>-target.tensor-types.txt  ... with their llama.cpp recipe (release/recipe.h)
//   <Model>-F16.gguf / -BF16.gguf        the full-precision file, on request
//   <Model>.imatrix.gguf                 the importance matrix the quants were made with
//   README.md                            the model card (release/card.h)
//   report.json, report.html             the sweep's reports (quant paths = the names above)
//   LICENSE                              the checkpoint's license file, when it has one
//   SHA256SUMS                           `sha256sum -c` checks every other file
// An existing DIR is replaced only when it is empty or a previous release (every entry listed
// in its SHA256SUMS): a folder holding anything else (a git clone, notes) is refused before any
// work, never deleted.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "formats/ggml_types.h"
#include "inspect/estimate_report.h"
#include "verify/sweep.h"

namespace smolq {

struct ReleaseOptions {
  SweepOptions sweep;                 // the model, the ladder, the texts; sweep.out_dir: the work folder
  std::string out_dir;                // the release folder
  std::optional<FileType> full_type;  // ship the F16 / BF16 file too
  std::string base_model;             // the repo id the files are quantized from ("": unknown)
  std::string license;                // overrides the checkpoint's (a Hub license id)
  std::string quantized_by;           // the card's quantized_by ("": "smolq")
  std::vector<uint64_t> contexts;     // memory table contexts (empty: 2048 and the model's maximum)
};

// One file of the release folder.
struct ReleaseFile {
  std::string name;    // file name in the folder
  std::string kind;    // "quant", "full", "imatrix", "recipe", "card", "report", "license"
  uint64_t size = 0;
  std::string sha256;
  std::optional<size_t> quant;  // "quant": index into the sweep's quants
  std::string recipe_for;       // "recipe": the file it rebuilds
};

// Memory of one model file as `smolq estimate` computes it, at each context.
struct ReleaseMemory {
  std::string file;
  std::vector<uint64_t> total;  // bytes, per context
  uint64_t estimated_file_size = 0;
};

struct ReleaseResult {
  SweepResult sweep;                  // quants' paths are the release's file names
  std::string model_name;             // "SmolLM2-135M-Instruct"
  std::string out_dir;
  std::vector<ReleaseFile> files;     // sorted by name
  std::vector<uint64_t> contexts;
  std::vector<ReleaseMemory> memory;  // every .gguf model file
  std::vector<std::string> notes;     // for the user (not in the card)
};

// The card's inputs beyond the sweep: what the options and the checkpoint's card say.
struct CardFacts {
  std::string model_name, base_model, license, quantized_by, pipeline_tag = "text-generation";
  std::vector<std::string> tags, languages;
  std::optional<FileType> full_type;
  std::string license_file;  // "LICENSE" when shipped
  uint64_t max_ctx = 0;
};

// Throws UsageError when `dir` exists and is not empty or a previous release (see above).
void check_release_destination(const std::string& dir);

ReleaseResult run_release(const ReleaseOptions& o, const SweepEvents& ev = {});

}  // namespace smolq
