// `smolq perplexity MODEL -f TEXT [--ctx 512] [--chunks N] [--batch B] [--threads T] [--json]`
// `smolq perplexity QUANT --base BASE -f TEXT [...]`       KL divergence of QUANT from BASE
//
// llama-perplexity's protocol and output (eval/perplexity.h), so numbers compare one for one:
// the running "[i]ppl," line and "Final estimate: PPL = x +/- y"; in KL mode its per-chunk table
// and the three statistics blocks, plus smolq's logit drift. MODEL and BASE are GGUF files or
// Hugging Face checkpoint folders. Results go to stdout; information, progress and timing to
// stderr.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

#include "formats/cpu_features.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "formats/atomic_file.h"
#include "formats/error.h"
#include "formats/hf_cache.h"
#include "formats/interrupt.h"
#include "eval/matmul.h"
#include "eval/model.h"
#include "eval/perplexity.h"
#include "eval/perplexity_input.h"

namespace smolq::cli {
namespace {

std::string json_string(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else {
      o += static_cast<char>(c);
    }
  }
  return o + "\"";
}

std::string fmt(const char* f, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, f, args...);
  return buf;
}

// .npy (format 1.0) header for a C-order float32 matrix: magic, version, u16 header length,
// a Python dict literal padded with spaces so the data starts at a multiple of 64 bytes.
std::string npy_header(uint64_t rows, uint64_t cols) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                     std::to_string(cols) + "), }";
  const size_t prefix = 10;  // magic (6) + version (2) + length (2)
  size_t total = prefix + dict.size() + 1;
  total = (total + 63) / 64 * 64;
  dict.resize(total - prefix - 1, ' ');
  dict += '\n';
  std::string h = "\x93NUMPY";
  h += '\x01';
  h += '\x00';
  const uint16_t len = static_cast<uint16_t>(dict.size());
  h.append(reinterpret_cast<const char*>(&len), 2);
  return h + dict;
}

EvalTokens load_tokens(const Model& m, const po::variables_map& vm) {
  const bool parse_special = vm.count("parse-special") > 0;
  EvalTokens t = vm.count("tokens") ? read_token_ids(m, vm["tokens"].as<std::string>())
                                    : tokenize_text_file(m, vm["file"].as<std::string>(), parse_special);
  const std::string bos = vm["add-bos"].as<std::string>();
  if (bos == "yes") t.add_bos = true;
  else if (bos == "no") t.add_bos = false;
  else if (bos != "auto") throw UsageError("--add-bos must be auto, yes or no");
  if (t.add_bos && t.bos_id < 0) {
    if (!m.config().bos_id) throw UsageError("--add-bos yes: the model defines no BOS token");
    t.bos_id = static_cast<int32_t>(*m.config().bos_id);
  }
  return t;
}

void log_setup(const Model& m, const char* role) {
  std::fprintf(stderr, "%s: %s\n  %s\n", role, m.path().c_str(), m.describe().c_str());
}

int run_kl(const po::variables_map& vm, const EvalOptions& o, const Model& quant, const EvalTokens& toks) {
  auto base = Model::open(resolve_model_ref(vm["base"].as<std::string>()).path);
  log_setup(*base, "base");
  const bool json = vm.count("json") > 0;
  const int64_t n_chunks = plan_chunks(static_cast<int64_t>(toks.ids.size()), o);
  std::fprintf(stderr, "kl-divergence: %lld chunks, n_ctx=%lld, batch=%lld, threads=%d, %zu tokens%s\n",
               static_cast<long long>(n_chunks), static_cast<long long>(o.n_ctx), static_cast<long long>(o.n_batch),
               o.n_threads, toks.ids.size(), o.add_bos ? ", BOS at every chunk" : "");
  ProgressBar bar("kl-divergence", n_chunks * o.n_ctx * 2, "tok");
  if (!json) bar.print_above(KldStats::chunk_header());
  KldResult r = run_kl_divergence(*base, quant, toks.ids, o, [&](const ChunkProgress& p, const KldStats& s) {
    if (!json) bar.print_above(s.chunk_line(p.chunk));
    bar.update(p.tokens_done * 2, fmt("KLD %.5f", s.report().kld.value));
  });
  bar.finish();
  if (r.stats.count() < 100) std::fprintf(stderr, "warning: only %lld scored positions; statistics are rough\n",
                                          static_cast<long long>(r.stats.count()));
  const KldReport rep = r.stats.report();
  if (json) {
    std::string s = "{\"model\": " + json_string(quant.path()) + ", \"base\": " + json_string(base->path()) +
                    ", \"text\": " + json_string(toks.source) + fmt(", \"n_ctx\": %lld, \"n_chunks\": %lld", static_cast<long long>(o.n_ctx),
                                                                     static_cast<long long>(r.n_chunks)) +
                    fmt(", \"seconds\": %.3f, ", r.seconds);
    const std::string body = kld_report_json(rep);
    std::printf("%s%s\n", s.c_str(), body.c_str() + 1);  // splice the report's fields in
  } else {
    std::printf("\n%s", format_kld_report(rep).c_str());
  }
  if (!std::isfinite(rep.kld.value))
    throw Error(quant.path() + " vs " + base->path() +
                ": KL divergence is not finite: a model's logits are NaN/Inf (check its weights with `smolq inspect --check-data`)");
  std::fprintf(stderr, "%lld tokens x 2 models in %.2f s (%.1f tok/s per model, %d threads)\n",
               static_cast<long long>(r.tokens_evaluated), r.seconds, r.tokens_evaluated / std::max(1e-9, r.seconds),
               o.n_threads);
  return 0;
}

int run_ppl(const po::variables_map& vm, const EvalOptions& o, const Model& m, const EvalTokens& toks) {
  const bool json = vm.count("json") > 0;
  const int64_t n_chunks = plan_chunks(static_cast<int64_t>(toks.ids.size()), o);
  std::fprintf(stderr, "perplexity: calculating perplexity over %lld chunks, n_ctx=%lld, batch=%lld, threads=%d, %zu tokens%s\n",
               static_cast<long long>(n_chunks), static_cast<long long>(o.n_ctx), static_cast<long long>(o.n_batch),
               o.n_threads, toks.ids.size(), o.add_bos ? ", BOS at every chunk" : "");
  ProgressBar bar("perplexity", n_chunks * o.n_ctx, "tok");
  // Stream "[i]ppl," as llama.cpp does, unless the bar shares the terminal with stdout.
  const bool stream = !json && !(bar.enabled() && isatty(STDOUT_FILENO));
  auto on_chunk = [&](const ChunkProgress& p, const PerplexityStats& s) {
    if (stream) {
      std::printf("[%lld]%.4lf,", static_cast<long long>(p.chunk), s.ppl());
      std::fflush(stdout);
    }
    bar.update(p.tokens_done, fmt("ppl %.4f", s.ppl()));
  };
  PerplexityResult r;
  if (vm.count("dump-logits")) {
    // Every position's logits of every chunk, in one .npy, plus the usual scoring of them.
    const int64_t V = static_cast<int64_t>(m.config().n_vocab), first = o.n_ctx / 2;
    const auto t0 = std::chrono::steady_clock::now();
    AtomicFile out(vm["dump-logits"].as<std::string>());
    out.write(npy_header(static_cast<uint64_t>(n_chunks * o.n_ctx), static_cast<uint64_t>(V)));
    for (int64_t c = 0; c < n_chunks; ++c) {
      const std::vector<float> lg = chunk_logits(m, toks.ids, o, c);
      out.write(lg.data(), lg.size() * sizeof(float));
      for (int64_t j = first; j + 1 < o.n_ctx; ++j)
        r.stats.add(score_token(std::span<const float>(lg.data() + j * V, static_cast<size_t>(V)), toks.ids[c * o.n_ctx + j + 1]).nll);
      r.running_ppl.push_back(r.stats.ppl());
      r.tokens_evaluated += o.n_ctx;
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      on_chunk({c + 1, n_chunks, r.tokens_evaluated, n_chunks * o.n_ctx, r.seconds}, r.stats);
      check_interrupted();
    }
    out.commit();
    r.n_chunks = n_chunks;
  } else {
    r = run_perplexity(m, toks.ids, o, on_chunk);
  }
  bar.finish();
  if (json) {
    std::string s = "{\"model\": " + json_string(m.path()) + ", \"text\": " + json_string(toks.source);
    s += fmt(", \"n_ctx\": %lld, \"n_chunks\": %lld, \"count\": %lld", static_cast<long long>(o.n_ctx),
             static_cast<long long>(r.n_chunks), static_cast<long long>(r.stats.count()));
    // JSON has no NaN: a non-finite result is null (and the command fails below).
    auto num = [](double v) { return std::isfinite(v) ? fmt("%.9g", v) : std::string("null"); };
    s += ", \"ppl\": " + num(r.stats.ppl()) + ", \"ppl_uncertainty\": " + num(r.stats.ppl_uncertainty()) +
         ", \"mean_nll\": " + num(r.stats.mean_nll());
    s += ", \"running_ppl\": [";
    for (size_t i = 0; i < r.running_ppl.size(); ++i) s += (i ? ", " : "") + num(r.running_ppl[i]);
    s += fmt("], \"seconds\": %.3f, \"tokens_per_second\": %.3f}", r.seconds, r.tokens_evaluated / std::max(1e-9, r.seconds));
    std::printf("%s\n", s.c_str());
  } else {
    if (!stream)
      for (size_t i = 0; i < r.running_ppl.size(); ++i) std::printf("[%zu]%.4lf,", i + 1, r.running_ppl[i]);
    std::printf("\nFinal estimate: PPL = %.4lf +/- %.5lf\n", r.stats.ppl(), r.stats.ppl_uncertainty());
  }
  std::fflush(stdout);  // the result lines come before the timing line, also when both are one pipe
  if (r.seconds > 0)
    std::fprintf(stderr, "%lld tokens in %.2f s (%.1f tok/s, %d threads, %s kernels)\n",
                 static_cast<long long>(r.tokens_evaluated), r.seconds, r.tokens_evaluated / r.seconds, o.n_threads,
                 cpu::simd_level_name(cpu::simd_level()));
  if (!std::isfinite(r.stats.ppl()))
    throw Error(m.path() + ": perplexity is not finite (" + std::string(std::isnan(r.stats.ppl()) ? "nan" : "inf") +
                "): the model's logits are NaN/Inf (check its weights with `smolq inspect --check-data`)");
  return 0;
}

}  // namespace

int run_perplexity(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()
      (kOptModel, po::value<std::string>()->required(), "model: GGUF file, checkpoint folder, or repo id org/name[@revision] from the Hugging Face cache")
      (kOptFile, po::value<std::string>(), "text to evaluate (tokenized with the model's tokenizer)")
      ("tokens", po::value<std::string>(), "evaluate these token ids instead (integers separated by spaces or commas)")
      ("base", po::value<std::string>(), "KL-divergence mode: compare MODEL with this base model (GGUF, HF folder or repo id)")
      (kOptCtxSize, po::value<int64_t>()->default_value(512), "tokens per chunk")
      ("chunks", po::value<int64_t>()->default_value(-1), "evaluate at most this many chunks (-1: all)")
      (kOptBatchSize, po::value<int64_t>()->default_value(512), "tokens per forward call (does not change results)")
      (kOptThreads, po::value<int>()->default_value(0), "worker threads (0: all cores)")
      ("add-bos", po::value<std::string>()->default_value("auto"), "BOS at each chunk start: auto (tokenizer's setting), yes, no")
      ("parse-special", "match special-token text (<|im_start|>...) in the text")
      (kOptJson, "print one JSON object with every result instead of the text report")
      (kOptQuiet, "no progress bar")
      ("dump-logits", po::value<std::string>(), "also write every position's logits to this .npy file (float32, [chunks*ctx, vocab])");
  po::positional_options_description pos;
  pos.add("model", 1);
  auto parsed = parse_args("perplexity", args, "smolq perplexity MODEL (-f TEXT | --tokens IDS) [--base BASE] [options]", opts, pos);
  if (parsed.help) return 0;
  const auto& vm = parsed.vm;
  if (!vm.count("file") && !vm.count("tokens")) throw UsageError("give the text with -f (or token ids with --tokens)");
  if (vm.count("file") && vm.count("tokens")) throw UsageError("-f and --tokens are exclusive");
  if (vm.count("base") && vm.count("dump-logits")) throw UsageError("--dump-logits is for a single model");
  const int n_threads = resolve_threads(vm["threads"].as<int>());
  // MODEL and BASE may be repo ids from the Hugging Face cache: checked where they resolve to.
  const std::string model_path = resolve_model_ref(vm["model"].as<std::string>()).path;
  require_input(model_path);
  if (vm.count("base")) require_input(resolve_model_ref(vm["base"].as<std::string>()).path);
  if (vm.count("file")) require_input(vm["file"].as<std::string>());
  if (vm.count("dump-logits")) prepare_output(vm["dump-logits"].as<std::string>());
  install_interrupt_handlers();

  auto model = Model::open(model_path);
  log_setup(*model, vm.count("base") ? "model (quantized)" : "model");
  const EvalTokens toks = load_tokens(*model, vm);
  EvalOptions o;
  o.n_ctx = vm["ctx-size"].as<int64_t>();
  o.n_chunks = vm["chunks"].as<int64_t>();
  o.n_batch = vm["batch-size"].as<int64_t>();
  o.n_threads = n_threads;
  o.add_bos = toks.add_bos;
  o.bos_id = toks.bos_id;
  if (o.n_chunks == 0 || o.n_chunks < -1) throw UsageError("--chunks must be positive (or -1 for all)");
  return vm.count("base") ? run_kl(vm, o, *model, toks) : run_ppl(vm, o, *model, toks);
}

}  // namespace smolq::cli
