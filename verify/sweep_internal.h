// Shared state of one sweep run, passed between the steps in sweep.cpp (orchestration),
// sweep_build.cpp (importance matrix, quant files, per-tensor error) and sweep_eval.cpp
// (KL-divergence evaluation, generations). Not part of the public interface (verify/sweep.h).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "convert/model_source.h"
#include "formats/imatrix.h"
#include "quantize/model_writer.h"
#include "quantize/quantize_model.h"
#include "eval/model.h"
#include "verify/sweep.h"
#include "text/tokenizer.h"

namespace smolq::sweep {

// One token stream the quants are evaluated on: the -f text, or one category of --eval-set.
struct Stream {
  std::string name;                // the category's name ("" for the -f text)
  std::vector<int32_t> tokens;
  uint64_t tokens_hash = 0;
  EvalOptions eval;                // n_ctx and n_chunks of this stream, BOS as the tokenizer
  int64_t n_chunks = 0;            // chunks plan_chunks gives
};

struct Context {
  Context(const SweepOptions& opt, const SweepEvents& events, SweepResult& result)
      : o(opt), ev(events), res(result), cache_dir(opt.out_dir + "/cache"), quant_dir(opt.out_dir + "/quants") {}

  const SweepOptions& o;
  const SweepEvents& ev;
  SweepResult& res;
  std::string cache_dir, quant_dir;

  std::unique_ptr<Model> base;
  std::unique_ptr<ModelSource> source;  // the baseline as a build source (build_source())
  uint64_t base_fp = 0;            // content hash of the baseline model
  std::optional<Tokenizer> tokenizer;
  std::vector<int32_t> eval_tokens;
  uint64_t eval_tokens_hash = 0;
  EvalOptions eval;                // with the tokenizer's BOS settings
  // What the quants are evaluated on, in order: one stream of eval_tokens, or the categories.
  std::vector<Stream> streams;

  // Calibration tokens (a separate text, or the first half of the evaluation text) for the
  // automatic imatrix and the target rows' sensitivity profile; calib_fp hashes them.
  std::vector<int32_t> calib_tokens;
  std::string calib_desc;
  uint64_t calib_fp = 0;

  std::optional<ImatrixData> imatrix;
  std::string imatrix_path;        // the file the quants record as their imatrix
  uint64_t imatrix_fp = 0;         // 0: no importance matrix

  // Prompts as token ids (after the template), for the generations.
  std::vector<std::vector<int32_t>> prompt_ids;
  std::vector<int32_t> stop_ids;   // end-of-turn / end-of-text tokens

  void log(const std::string& line) const {
    if (ev.log) ev.log(line);
  }
  void progress(const std::string& stage, int64_t done, int64_t total, const std::string& status = "") const {
    if (ev.progress) ev.progress(stage, done, total, status);
  }
};

// One quant being measured: its row and the hash its evaluation records are keyed by.
struct Target {
  QuantRow row;
  uint64_t fp = 0;  // the quant's identity: build key (built) or content hash (given)
};

// sweep_build.cpp
void prepare_imatrix(Context& c, std::span<const int32_t> calib_tokens, const std::string& calib_desc);
// Builds (or finds in the cache) the quant of `spec`, or describes a given file.
Target prepare_quant(Context& c, const SweepQuantSpec& spec);
// Per-tensor and per-layer error of the quant against the baseline (cached).
void measure_tensor_errors(Context& c, Target& t);

// The quantize options of a build of `ftype` (importance data when the sweep has it).
QuantizeOptions quant_options(const Context& c, FileType ftype);
// The baseline as a build source (GGUF file or checkpoint), opened on first use: every quant
// of the sweep is planned and written through it, as `smolq quantize` / `convert` do.
const ModelSource& build_source(Context& c);
WriteResult build_quant(Context& c, const QuantizeOptions& q, const std::string& out, const std::string& stage,
                        int& imatrix_used);
WriteResult write_quant(Context& c, const BuildPlan& plan, const std::string& out, const std::string& stage,
                        int& imatrix_used);

// sweep_target.cpp
// A target-driven quant (measured mixed precision) with the file size of the `size_of` file.
WriteResult build_target_quant(Context& c, FileType size_of, const std::string& out, const std::string& stage,
                               int& imatrix_used);
// Hash of what the target rows' results depend on besides the model and calibration.
uint64_t target_settings_fp();

// sweep_optimize.cpp
// The `ft` file with error-feedback rounding (a TYPE+opt row), calibrated on c.calib_tokens.
WriteResult build_optimized_quant(Context& c, FileType ft, const std::string& out, const std::string& stage,
                                  int& imatrix_used);
// Hash of what the +opt rows' results depend on besides the model, type and importance matrix.
uint64_t optimize_settings_fp(const Context& c);

// sweep_eval.cpp
// KL-divergence statistics of every target against the baseline, in memory-bounded groups;
// generations of every target. Calls ev.quant_ready as rows complete.
void evaluate_targets(Context& c, std::vector<Target>& targets);
// Greedy generations of `model` for every prompt (cached under `label` and `model_fp`).
std::vector<Generation> generate_all(Context& c, const Model& model, uint64_t model_fp, const std::string& label);

// sweep_categories.cpp
// Tokenizes the evaluation set's categories into c.streams (and the result's categories), and
// the calibration tokens: the categories' calibration texts, for --imatrix auto / target rows.
void prepare_categories(Context& c, bool needs_calib, std::vector<int32_t>& calib, std::string& calib_desc);
// The stream of the -f text (c.eval_tokens, c.eval).
Stream text_stream(const Context& c);

// sweep.cpp
// A file-name-safe version of a label.
std::string safe_label(const std::string& label);

}  // namespace smolq::sweep
