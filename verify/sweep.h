// `smolq verify`'s engine: build several quants of one model, measure each against the
// full-precision model on the same text, and collect what a reader needs to choose one.
//
//   1. the baseline: the model as given (HF folder or GGUF), opened once;
//   2. optionally an importance matrix: a given file, or collected from a calibration text
//      that is not the evaluation text (`auto`);
//   3. each quant: built from the baseline (convert --type / quantize) or taken as given, with
//      its file size, effective bits per weight and per-tensor importance-weighted error;
//   4. evaluation: llama-perplexity's KL-divergence protocol (eval/perplexity.h), every quant
//      against the baseline's logits of the same chunk. Quants whose models fit the memory
//      budget together are evaluated in one pass over the text (one baseline forward per chunk);
//   5. greedy generations for a few prompts (through the model's chat template when it has one);
//   6. the Pareto front of (file size, mean KLD) and the smallest quant within a KLD budget.
//
// Everything expensive is cached under <out>/cache, keyed by an xxHash of what determines it
// (verify/sweep_cache.h): a rerun, an interrupted run or a run with more types or chunks
// computes only what is missing, and the numbers are identical to a run from scratch.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "convert/naming.h"
#include "quantize/mixtures.h"
#include "text/chat_template.h"
#include "eval/metrics.h"
#include "eval/perplexity.h"

namespace smolq {

// One row of the sweep: a file type to build from the baseline, or an existing GGUF.
struct SweepQuantSpec {
  std::string label;              // "Q4_K_M", or the given file's name
  std::optional<FileType> ftype;  // build this file type ...
  std::string gguf;               // ... or evaluate this file as it is
  // Skip with a note instead of failing when the type cannot be built from this model
  // (`--types all`: a mixture that needs an importance matrix for some tensor).
  bool optional = false;
  // Measured mixed precision (docs/mixed-precision.md): instead of `ftype`'s rules, a file of
  // exactly the size of `ftype`'s file whose types the allocator chooses ("Q4_K_M@target").
  bool at_target = false;
};

enum class ImatrixMode { kNone, kFile, kAuto };

struct SweepOptions {
  std::string model;                  // HF checkpoint folder or GGUF: the baseline
  std::vector<SweepQuantSpec> quants;
  ImatrixMode imatrix = ImatrixMode::kNone;
  std::string imatrix_file;           // kFile
  // kAuto: the calibration text. Empty: the first half of the evaluation text's tokens
  // calibrate and only the second half is evaluated, so the two never overlap.
  std::string calib_text;
  int64_t calib_chunks = 32;          // kAuto: at most this many chunks of n_ctx tokens (-1: all)
  std::string eval_text;              // the evaluation text (a plain text file)
  EvalOptions eval;                   // n_ctx, n_chunks, n_batch, n_threads (BOS from the tokenizer)
  std::vector<std::vector<ChatMessage>> prompts;  // conversations for the generations
  int n_generate = 48;                // greedy tokens per prompt
  std::string chat_template;          // overrides the model's template when not empty
  std::string out_dir;                // quants/, cache/ and the reports go here
  double kld_budget = 0.02;           // mean KLD (nats) a recommended quant may not exceed
  uint64_t max_memory = 0;            // bytes for models evaluated together; 0: no limit
  bool cache_base_logits = true;      // keep the baseline's logits (zstd) for later runs
  // general.* naming of files built from an HF folder (the repo id they are published from);
  // empty: the folder's own name, as `smolq convert` without a repo id.
  NamingInputs naming;
};

// Importance-weighted quantization error of one weight matrix, over all its rows:
//   wmse = sum_ij w_j (dq_ij - x_ij)^2 / sum_ij w_j      (w_j: importance of input column j, or 1)
//   rel  = sqrt(sum_ij w_j (dq_ij - x_ij)^2 / sum_ij w_j x_ij^2)   relative RMS error
struct TensorError {
  std::string name;     // GGUF name: "blk.3.ffn_down.weight"
  int layer = -1;       // -1: token_embd / output
  std::string type;     // the tensor's type in the quant ("Q5_0")
  uint64_t n_elements = 0;
  double wmse = 0, rel = 0;
  bool weighted = false;  // importance data was available for this tensor
};

struct Generation {
  std::string text;       // decoded continuation (valid UTF-8; special tokens dropped)
  int n_tokens = 0;
  bool stopped = false;   // ended on an end-of-turn / end-of-text token
};

struct QuantRow {
  std::string label, path;
  std::string file_type;          // "Q4_K_M", or "given" for a file taken as it is
  bool built = false;             // built by the sweep (not given on the command line)
  bool imatrix_used = false;
  uint64_t file_size = 0, tensor_bytes = 0, n_elements = 0;
  double bpw = 0;                 // 8 * tensor bytes / all elements (after fallbacks)
  std::vector<std::pair<std::string, uint64_t>> tensor_types;  // type name -> tensor count
  double build_seconds = 0;
  bool build_cached = false;
  KldReport kld;                  // PPL, KLD, Δp, same top, drift vs the baseline
  double eval_seconds = 0;        // this quant's forward passes, summed over chunks
  int64_t chunks_computed = 0, chunks_cached = 0;
  std::vector<TensorError> tensors;
  // Per layer: sqrt(sum_t n_t rel_t^2 / sum_t n_t) over the layer's matrices.
  std::vector<double> layer_rel;
  double embd_rel = 0, output_rel = 0;  // output_rel = embd_rel when tied
  std::vector<Generation> generations;  // one per prompt
};

struct SweepCacheStats {
  int builds_done = 0, builds_reused = 0;
  int64_t chunks_computed = 0, chunks_reused = 0;           // quant chunk evaluations
  int64_t base_chunks_computed = 0, base_chunks_reused = 0; // baseline chunk logits
  int generations_done = 0, generations_reused = 0;         // per model
  bool imatrix_reused = false;
};

struct SweepResult {
  std::string model, model_desc;
  uint64_t model_bytes = 0, n_params = 0;
  int n_layers = 0;
  bool tied_output = false;
  std::string eval_text;
  std::string eval_desc;          // which tokens of which file were evaluated
  int64_t eval_tokens = 0, n_chunks = 0, positions = 0;
  EvalOptions eval;
  std::string imatrix_desc;       // "none", the file, or how the automatic one was made
  std::string imatrix_path;       // the importance matrix the builds used ("" when none)
  double base_ppl = 0, base_ppl_unc = 0;
  double base_eval_seconds = 0;
  std::string prompt_format;      // how prompts were turned into text
  std::vector<std::string> prompts;  // the user turn of each conversation (for display)
  std::vector<std::string> prompt_texts;  // what the model was given
  std::vector<Generation> base_generations;
  std::vector<QuantRow> quants;   // by file size, largest first
  std::vector<size_t> pareto;     // indices into quants, smallest file first
  std::optional<size_t> recommended;
  double kld_budget = 0;
  std::vector<std::string> notes;
  SweepCacheStats cache;
  double seconds = 0;
};

struct SweepEvents {
  std::function<void(const std::string&)> log;  // one line per step
  // stage ("build Q4_K_M", "evaluate", ...), units done and total, a short status
  std::function<void(const std::string&, int64_t, int64_t, const std::string&)> progress;
  std::function<void(const QuantRow&)> quant_ready;  // a row's measurements are complete
  // After each chunk a quant finishes: its row with the statistics of the chunks so far.
  std::function<void(const QuantRow&, int64_t chunks_done, int64_t n_chunks)> quant_progress;
};

SweepResult run_sweep(const SweepOptions& o, const SweepEvents& ev = {});

// The prompts' text after the chat template (or plain, with the reason), without loading
// weights: for `--show-prompts` and tests. `format` receives the SweepResult::prompt_format.
std::vector<std::string> render_prompts(const SweepOptions& o, std::string& format);

// Indices of the points on the Pareto front of (size, kld), both minimised: no other point is
// at least as small in both and smaller in one. Sorted by size, smallest first.
std::vector<size_t> pareto_front(const std::vector<double>& size, const std::vector<double>& kld);
// The smallest `size` whose `kld` is within `budget`; nullopt when none is.
std::optional<size_t> smallest_within(const std::vector<double>& size, const std::vector<double>& kld, double budget);

// File types `--types all` stands for: every quantized llama.cpp file type that fits a dense,
// normally trained model (no F32/F16/BF16, no MXFP4_MOE for experts, no TQ1_0/TQ2_0 for
// ternary-trained models), without those that need an imatrix unless one is given.
std::vector<FileType> sweep_all_types(bool have_imatrix);

}  // namespace smolq
