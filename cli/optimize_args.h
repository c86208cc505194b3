// `--optimize` for `smolq quantize`, `smolq convert --type` and the --target-size/--target-bpw
// files (issue 17, docs/optimize.md): the options, the metadata that records them, and the
// call into the error-feedback driver (verify/optimize.h). The commands keep their own planning
// and writing; this file only turns planned outputs into optimised ones.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cli/options.h"
#include "quantize/model_writer.h"
#include "mix/optimize.h"

namespace smolq::cli {

struct OptimizeArgs {
  bool optimize = false;
  std::string inputs = "asym";  // "sequential" | "full" | "asym": what later layers see (and aim at)
  OptimizeSettings settings;
};

// --optimize, --opt-damp, --opt-order, --opt-inputs, --opt-chunks, --opt-ctx. The calibration
// text is the shared --calib (add_target_options) or $SMOLQ_CALIB.
void add_optimize_options(po::options_description& opts, OptimizeArgs& a);
// Reads the flag and checks the values (UsageError).
void finish_optimize_args(const po::variables_map& vm, OptimizeArgs& a);
// Without --opt-chunks, a file type whose tensors are mostly a lattice family (IQ2 / IQ3: the
// mixture's default type) calibrates on kLatticeOptChunks chunks instead of 8: its lattice
// tensors gain markedly from more tokens (docs/optimize.md, "The issue-17 table"). Call before
// the metadata is made (the calib.chunks key).
inline constexpr int64_t kLatticeOptChunks = 16;
void lattice_default_chunks(const po::variables_map& vm, OptimizeArgs& a, FileType ft);

// The calibration text: --calib, else $SMOLQ_CALIB; UsageError when neither.
std::string resolve_calib(const std::string& calib_arg);

// smolq.optimize.* as --override-kv specs, known before planning (so a --target-size budget
// counts them): method, calibration file name, its XXH3-64, chunks x tokens, inputs, damping,
// column order, and where the scale searches' importance comes from.
std::vector<std::string> optimize_metadata_kv(const OptimizeArgs& a, const std::string& calib_path, bool user_imatrix);

// Runs the calibration pass on `model_path` (the input GGUF or HF folder: the same weights as
// the outputs' sources) and replaces every tensor with a Gram matrix by its optimised bytes.
// Logs to stderr unless quiet. `out`: the output file opened with these outputs
// (open_gguf_model); when it can place tensors, each optimised one is written into it as soon as
// it is made. Otherwise the outcome owns the bytes: keep it alive until the file is written.
OptimizeOutcome run_optimize(const OptimizeArgs& a, const std::string& model_path, const std::string& calib_path,
                             std::vector<OutputTensor>& outputs, int threads, bool quiet, GgufWriter* out);

}  // namespace smolq::cli
