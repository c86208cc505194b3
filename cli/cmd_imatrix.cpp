// `smolq imatrix MODEL -f CALIB [-o imatrix.gguf] [--output-format gguf|dat] [--ctx 512]
//                [--chunks N] [--chunk N] [--in-file F ...] [--process-output] [--no-ppl]
//                [--save-frequency N] [--output-frequency N] [--show-statistics] [--threads T]`
//
// Collects llama-imatrix's importance matrix (eval/imatrix.h) over a calibration text and
// writes it in llama.cpp's GGUF imatrix format or the legacy .dat format (formats/imatrix.h).
// --in-file merges earlier results; with --in-file and no -f the inputs are only combined.
// The text's perplexity is printed as llama-imatrix prints it (second half of each chunk);
// --show-statistics prints llama-imatrix's statistics tables (eval/imatrix_stats.h), and every
// run ends with a coverage line naming the weights whose data is partial.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/eval_set_args.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "eval/imatrix.h"
#include "eval/imatrix_stats.h"
#include "eval/model.h"
#include "eval/perplexity_input.h"
#include "formats/error.h"
#include "formats/hf_cache.h"
#include "formats/imatrix.h"
#include "formats/interrupt.h"

namespace smolq::cli {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

ImatrixFormat output_format(const po::variables_map& vm, const std::string& out) {
  if (!vm.count("output-format")) return ends_with(out, ".dat") ? ImatrixFormat::Dat : ImatrixFormat::Gguf;
  const std::string f = lower_ascii(vm["output-format"].as<std::string>());
  if (f == "gguf") return ImatrixFormat::Gguf;
  if (f == "dat") return ImatrixFormat::Dat;
  throw UsageError("--output-format must be gguf or dat");
}

po::options_description imatrix_options() {
  po::options_description opts("Options");
  opts.add_options()
      (kOptModel, po::value<std::string>(), "model: GGUF file, checkpoint folder, or repo id org/name[@revision] from the Hugging Face cache")
      (kOptFile, po::value<std::string>(), "calibration text (tokenized with the model's tokenizer)")
      ("tokens", po::value<std::string>(), "calibrate on these token ids instead (integers separated by spaces or commas)")
      (kOptOutput, po::value<std::string>()->default_value("imatrix.gguf"), "output file")
      ("output-format", po::value<std::string>(), "gguf or dat (default: dat for a .dat name, else gguf)")
      (kOptCtxSize, po::value<int64_t>()->default_value(512), "tokens per chunk")
      ("chunks", po::value<int64_t>()->default_value(-1), "process at most this many chunks (-1: all)")
      ("chunk", po::value<int64_t>()->default_value(0), "start from chunk N: skip the text's first N chunks (also --from-chunk)")
      (kOptBatchSize, po::value<int64_t>()->default_value(512), "tokens per forward call")
      (kOptThreads, po::value<int>()->default_value(0), "worker threads (0: all cores)")
      ("in-file", po::value<std::vector<std::string>>()->composing(), "merge an earlier imatrix (GGUF or .dat); repeatable")
      ("process-output", "also collect the output projection (output.weight; never token_embd when tied)")
      ("save-frequency", po::value<int64_t>()->default_value(0), "keep a copy OUTPUT.at_<chunk> every N chunks (0: none)")
      ("output-frequency", po::value<int64_t>()->default_value(0), "rewrite the output every N chunks (0: only at the end)")
      ("show-statistics", "print per-tensor statistics of the result (of the --in-file data without a text; then nothing is written unless -o is given)")
      ("no-ppl", "do not compute the perplexity of the calibration text")
      ("parse-special", "match special-token text (<|im_start|>...) in the text")
      (kOptQuiet, "no progress bar");
  add_imatrix_eval_set_option(opts);
  return opts;
}

// Tokenize, drop --chunk chunks, run the model over the rest feeding `collector`; returns the
// dataset name to record.
std::string collect(const po::variables_map& vm, const Model& model, ImatrixCollector& collector, ImatrixCheckpoints ck,
                    int threads) {
  const EvalTokens toks = imatrix_input_tokens(vm, model, ck.chunk_size);
  EvalOptions o;
  o.n_ctx = ck.chunk_size;
  o.n_chunks = vm["chunks"].as<int64_t>();
  o.n_batch = vm["batch-size"].as<int64_t>();
  o.n_threads = threads;
  o.add_bos = toks.add_bos;
  o.bos_id = toks.bos_id;
  o.score = vm.count("no-ppl") == 0;
  if (o.n_chunks == 0 || o.n_chunks < -1) throw UsageError("--chunks must be positive (or -1 for all)");
  const int64_t skip = vm["chunk"].as<int64_t>();
  const std::span<const int32_t> ids = skip_chunks(toks.ids, skip, o.n_ctx);
  if (skip > 0) std::fprintf(stderr, "imatrix: skipping the first %lld chunks (%lld tokens)\n", static_cast<long long>(skip),
                             static_cast<long long>(skip * o.n_ctx));
  const int64_t n_chunks = plan_chunks(static_cast<int64_t>(ids.size()), o);
  std::fprintf(stderr, "imatrix: computing over %lld chunks, n_ctx=%lld, batch=%lld, threads=%d, %zu tokens\n",
               static_cast<long long>(n_chunks), static_cast<long long>(o.n_ctx), static_cast<long long>(o.n_batch), threads,
               ids.size());
  ck.datasets = {toks.source};
  collector.set_checkpoints(std::move(ck));
  ProgressBar bar("imatrix", n_chunks * o.n_ctx, "tok");
  const bool stream = o.score && !(bar.enabled() && isatty(STDOUT_FILENO));
  const PerplexityResult r = collect_imatrix(model, ids, o, collector, [&](const ChunkProgress& p, const PerplexityStats& s) {
    if (stream) {
      std::printf("[%lld]%.4lf,", static_cast<long long>(p.chunk), s.ppl());
      std::fflush(stdout);
    }
    char status[64] = "";
    if (o.score) std::snprintf(status, sizeof status, "ppl %.4f", s.ppl());
    bar.update(p.tokens_done, status);
  });
  bar.finish();
  if (o.score) {
    if (!stream)
      for (size_t i = 0; i < r.running_ppl.size(); ++i) std::printf("[%zu]%.4lf,", i + 1, r.running_ppl[i]);
    std::printf("\nFinal estimate: PPL = %.4lf +/- %.5lf\n", r.stats.ppl(), r.stats.ppl_uncertainty());
  }
  std::fflush(stdout);  // the result lines come before the timing line, also when both are one pipe
  std::fprintf(stderr, "%lld tokens in %.2f s (%.1f tok/s, %d threads)\n", static_cast<long long>(r.tokens_evaluated), r.seconds,
               r.tokens_evaluated / std::max(1e-9, r.seconds), threads);
  return toks.source;
}

}  // namespace

int run_imatrix(const std::vector<std::string>& args) {
  po::options_description opts = imatrix_options();
  po::positional_options_description pos;
  pos.add("model", 1);
  auto parsed = parse_args("imatrix", args, "smolq imatrix MODEL -f CALIB [-o imatrix.gguf] [options]", opts, pos);
  if (parsed.help) return 0;
  const auto& vm = parsed.vm;
  const std::string out = vm["output"].as<std::string>();
  const ImatrixFormat fmt_out = output_format(vm, out);
  const int64_t n_ctx = vm["ctx-size"].as<int64_t>();
  if (n_ctx < 16 || n_ctx > INT32_MAX) throw UsageError("--ctx-size must be at least 16");
  const int32_t chunk_size = static_cast<int32_t>(n_ctx);
  const int threads = resolve_threads(vm["threads"].as<int>());
  const std::vector<std::string> in_files =
      vm.count("in-file") ? vm["in-file"].as<std::vector<std::string>>() : std::vector<std::string>{};
  const bool have_text = vm.count("file") || vm.count("tokens") || vm.count("eval-set");
  const bool show_stats = vm.count("show-statistics") > 0;
  if (vm.count("file") && vm.count("tokens")) throw UsageError("-f and --tokens are exclusive");
  if (!have_text && in_files.empty())
    throw UsageError(show_stats ? "--show-statistics needs an imatrix (--in-file) or a calibration text (-f)"
                                : "give a calibration text with -f, or imatrix files to combine with --in-file");
  if (have_text && !vm.count("model")) throw UsageError("collecting an imatrix needs the MODEL");
  for (const char* o : {"save-frequency", "output-frequency"})
    if (vm[o].as<int64_t>() < 0) throw UsageError(std::string("--") + o + " must be >= 0");
  // Statistics of existing files only: llama-imatrix writes nothing then; -o asks for the merge.
  const bool write = have_text || !show_stats || !vm["output"].defaulted();
  // MODEL may be a repo id from the Hugging Face cache: checked where it resolves to.
  if (vm.count("model")) require_input(resolve_model_ref(vm["model"].as<std::string>()).path);
  if (vm.count("file")) require_input(vm["file"].as<std::string>());
  for (const auto& f : in_files) require_input(f);
  if (write) prepare_output(out);  // before the collection, which can take minutes
  install_interrupt_handlers();

  const bool process_output = vm.count("process-output") > 0;
  ImatrixCollector collector(process_output, threads);
  for (const auto& f : in_files) {
    const ImatrixData d = read_imatrix(f);
    std::fprintf(stderr, "loaded %s: %zu entries, %d chunks%s\n", f.c_str(), d.entries.size(), d.chunk_count,
                 d.legacy ? " (legacy format)" : "");
    collector.merge(d, chunk_size);
  }

  std::vector<std::string> datasets, expected;
  if (have_text) {
    auto model = Model::open(resolve_model_ref(vm["model"].as<std::string>()).path);
    std::fprintf(stderr, "model: %s\n  %s\n", model->path().c_str(), model->describe().c_str());
    ImatrixCheckpoints ck{.path = out,
                          .format = fmt_out,
                          .save_every = vm["save-frequency"].as<int64_t>(),
                          .output_every = vm["output-frequency"].as<int64_t>(),
                          .datasets = {},
                          .chunk_size = chunk_size};
    datasets.push_back(collect(vm, *model, collector, std::move(ck), threads));
    expected = imatrix_weight_names(*model, process_output);
  }

  const ImatrixData d = collector.data(datasets, chunk_size);
  if (write) {
    write_imatrix(out, d, fmt_out);
    std::fprintf(stderr, "wrote %s (%s): %zu entries, %d chunks of %d tokens\n", out.c_str(),
                 fmt_out == ImatrixFormat::Gguf ? "GGUF" : "legacy .dat", d.entries.size(), d.chunk_count, d.chunk_size);
  }
  std::fputs(format_imatrix_coverage(imatrix_coverage(d, expected)).c_str(), stderr);
  if (show_stats) {
    const std::string source = !have_text && in_files.size() == 1 ? in_files[0] : (write ? out : std::string("the merged inputs"));
    std::fputs(format_imatrix_statistics(imatrix_statistics(d), source).c_str(), stdout);
  }
  return 0;
}

}  // namespace smolq::cli
