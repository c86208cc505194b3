// `smolq imatrix MODEL -f CALIB [-o imatrix.gguf] [--output-format gguf|dat] [--ctx 512]
//                [--chunks N] [--in-file F ...] [--process-output] [--no-ppl] [--threads T]`
//
// Collects llama-imatrix's importance matrix (eval/imatrix.h) over a calibration text and
// writes it in llama.cpp's GGUF imatrix format or the legacy .dat format (formats/imatrix.h).
// --in-file merges earlier results; with --in-file and no -f the inputs are only combined.
// The text's perplexity is printed as llama-imatrix prints it (second half of each chunk).
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cli/eval_set_args.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "formats/error.h"
#include "formats/hf_cache.h"
#include "formats/imatrix.h"
#include "formats/interrupt.h"
#include "eval/imatrix.h"
#include "eval/model.h"
#include "eval/perplexity_input.h"

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

}  // namespace

int run_imatrix(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()
      (kOptModel, po::value<std::string>(), "model: GGUF file, checkpoint folder, or repo id org/name[@revision] from the Hugging Face cache")
      (kOptFile, po::value<std::string>(), "calibration text (tokenized with the model's tokenizer)")
      ("tokens", po::value<std::string>(), "calibrate on these token ids instead (integers separated by spaces or commas)")
      (kOptOutput, po::value<std::string>()->default_value("imatrix.gguf"), "output file")
      ("output-format", po::value<std::string>(), "gguf or dat (default: dat for a .dat name, else gguf)")
      (kOptCtxSize, po::value<int64_t>()->default_value(512), "tokens per chunk")
      ("chunks", po::value<int64_t>()->default_value(-1), "process at most this many chunks (-1: all)")
      (kOptBatchSize, po::value<int64_t>()->default_value(512), "tokens per forward call")
      (kOptThreads, po::value<int>()->default_value(0), "worker threads (0: all cores)")
      ("in-file", po::value<std::vector<std::string>>()->composing(), "merge an earlier imatrix (GGUF or .dat); repeatable")
      ("process-output", "also collect the output projection (output.weight; never token_embd when tied)")
      ("no-ppl", "do not compute the perplexity of the calibration text")
      ("parse-special", "match special-token text (<|im_start|>...) in the text")
      (kOptQuiet, "no progress bar");
  add_imatrix_eval_set_option(opts);
  po::positional_options_description pos;
  pos.add("model", 1);
  auto parsed = parse_args("imatrix", args, "smolq imatrix MODEL -f CALIB [-o imatrix.gguf] [options]", opts, pos);
  if (parsed.help) return 0;
  const auto& vm = parsed.vm;
  const std::string out = vm["output"].as<std::string>();
  const ImatrixFormat fmt_out = output_format(vm, out);
  const int64_t n_ctx = vm["ctx-size"].as<int64_t>();
  if (n_ctx < 16) throw UsageError("--ctx-size must be at least 16");
  const int32_t chunk_size = static_cast<int32_t>(n_ctx);
  const int threads = resolve_threads(vm["threads"].as<int>());
  const std::vector<std::string> in_files =
      vm.count("in-file") ? vm["in-file"].as<std::vector<std::string>>() : std::vector<std::string>{};
  const bool have_text = vm.count("file") || vm.count("tokens") || vm.count("eval-set");
  if (vm.count("file") && vm.count("tokens")) throw UsageError("-f and --tokens are exclusive");
  if (!have_text && in_files.empty()) throw UsageError("give a calibration text with -f, or imatrix files to combine with --in-file");
  if (have_text && !vm.count("model")) throw UsageError("collecting an imatrix needs the MODEL");
  // MODEL may be a repo id from the Hugging Face cache: checked where it resolves to.
  if (vm.count("model")) require_input(resolve_model_ref(vm["model"].as<std::string>()).path);
  if (vm.count("file")) require_input(vm["file"].as<std::string>());
  for (const auto& f : in_files) require_input(f);
  prepare_output(out);  // before the collection, which can take minutes
  install_interrupt_handlers();

  ImatrixCollector collector(vm.count("process-output") > 0, threads);
  for (const auto& f : in_files) {
    const ImatrixData d = read_imatrix(f);
    std::fprintf(stderr, "loaded %s: %zu entries, %d chunks%s\n", f.c_str(), d.entries.size(), d.chunk_count,
                 d.legacy ? " (legacy format)" : "");
    collector.merge(d, chunk_size);
  }

  std::vector<std::string> datasets;
  if (have_text) {
    auto model = Model::open(resolve_model_ref(vm["model"].as<std::string>()).path);
    std::fprintf(stderr, "model: %s\n  %s\n", model->path().c_str(), model->describe().c_str());
    const EvalTokens toks = imatrix_input_tokens(vm, *model, n_ctx);
    EvalOptions o;
    o.n_ctx = n_ctx;
    o.n_chunks = vm["chunks"].as<int64_t>();
    o.n_batch = vm["batch-size"].as<int64_t>();
    o.n_threads = threads;
    o.add_bos = toks.add_bos;
    o.bos_id = toks.bos_id;
    o.score = vm.count("no-ppl") == 0;
    if (o.n_chunks == 0 || o.n_chunks < -1) throw UsageError("--chunks must be positive (or -1 for all)");
    const int64_t n_chunks = plan_chunks(static_cast<int64_t>(toks.ids.size()), o);
    std::fprintf(stderr, "imatrix: computing over %lld chunks, n_ctx=%lld, batch=%lld, threads=%d, %zu tokens\n",
                 static_cast<long long>(n_chunks), static_cast<long long>(o.n_ctx), static_cast<long long>(o.n_batch),
                 threads, toks.ids.size());
    ProgressBar bar("imatrix", n_chunks * o.n_ctx, "tok");
    const bool stream = o.score && !(bar.enabled() && isatty(STDOUT_FILENO));
    const PerplexityResult r = collect_imatrix(*model, toks.ids, o, collector, [&](const ChunkProgress& p, const PerplexityStats& s) {
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
    std::fprintf(stderr, "%lld tokens in %.2f s (%.1f tok/s, %d threads)\n", static_cast<long long>(r.tokens_evaluated),
                 r.seconds, r.tokens_evaluated / std::max(1e-9, r.seconds), threads);
    datasets.push_back(toks.source);
  }

  const ImatrixData d = collector.data(datasets, chunk_size);
  write_imatrix(out, d, fmt_out);
  std::fprintf(stderr, "wrote %s (%s): %zu entries, %d chunks of %d tokens\n", out.c_str(),
               fmt_out == ImatrixFormat::Gguf ? "GGUF" : "legacy .dat", d.entries.size(), d.chunk_count, d.chunk_size);
  return 0;
}

}  // namespace smolq::cli
