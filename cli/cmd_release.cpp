// `smolq release MODEL --out DIR [--types LADDER] [--imatrix auto|FILE] [--calib TEXT] -f TEXT
//                [--outtype f16|bf16] [--base-model ORG/NAME] [--license ID] [...]`
//
// A folder ready to publish (release/release.h): the quants, their measurements, the model
// card, recipes and checksums. Options and printing only; the work is release/.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/options.h"
#include "cli/progress.h"
#include "formats/error.h"
#include "formats/hf_cache.h"
#include "formats/interrupt.h"
#include "release/release.h"
#include "verify/report_writers.h"
#include "verify/sweep_types.h"

namespace smolq::cli {
namespace {

constexpr const char* kDefaultLadder = "Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q3_K_M,Q2_K";

void add_release_options(po::options_description& opts) {
  opts.add_options()
      (kOptModel, po::value<std::string>(), "the full-precision model (HF folder, GGUF, or repo id org/name[@revision] from the Hugging Face cache)")
      (kOptOutput, po::value<std::string>(), "the release folder (new, empty, or an earlier release: replaced whole)")
      (kOptFile, po::value<std::string>(), "evaluation text (plain text; e.g. WikiText-2's wiki.test.raw)")
      ("types", po::value<std::string>(), (std::string("the ladder: file types, comma-separated (default: ") + kDefaultLadder + "); NAME@target adds a measured mixed-precision file of NAME's size with its llama.cpp recipe").c_str())
      (kOptImatrix, po::value<std::string>(), "importance matrix for the builds: a file, or 'auto' to collect one from --calib (shipped as <Model>.imatrix.gguf)")
      ("calib", po::value<std::string>(), "calibration text for --imatrix auto and NAME@target files (default: the first half of -f; the second half is then evaluated)")
      ("calib-chunks", po::value<int64_t>()->default_value(32), "calibrate --imatrix auto on at most this many chunks (-1: all)")
      ("outtype", po::value<std::string>(), "also ship the full-precision file: f16 or bf16")
      ("base-model", po::value<std::string>(), "the Hub repo id the files are made from (default: the repo id of a model from the Hugging Face cache)")
      ("license", po::value<std::string>(), "the card's license id (default: the checkpoint's card, or its LICENSE file)")
      ("quantized-by", po::value<std::string>()->default_value("smolq"), "the card's quantized_by")
      ("work", po::value<std::string>(), "work folder: the sweep's cache and builds, kept for re-runs (default: <output>.work)")
      (kOptCtxSize, po::value<int64_t>()->default_value(512), "tokens per evaluation chunk")
      ("chunks", po::value<int64_t>()->default_value(16), "chunks to evaluate (-1: the whole text)")
      (kOptBatchSize, po::value<int64_t>()->default_value(512), "tokens per forward call (does not change results)")
      (kOptThreads, po::value<int>()->default_value(0), "worker threads (0: all cores)")
      ("n-predict,n", po::value<int>()->default_value(0), "greedy tokens per default prompt, shown in report.html (0: no generations)")
      ("kld-budget", po::value<double>()->default_value(0.02), "largest mean KLD (nats) a recommended file may have")
      (kOptQuiet, "no progress bars");
}

const std::vector<std::string> kPrompts{"What is the capital of France?", "Write a haiku about the sea."};

ReleaseOptions release_options(const po::variables_map& vm) {
  if (!vm.count("model")) throw UsageError("give the full-precision model (HF folder, GGUF or repo id)");
  if (!vm.count("output")) throw UsageError("give the release folder with --out DIR");
  if (!vm.count("file")) throw UsageError("give the evaluation text with -f (for example WikiText-2's wiki.test.raw)");
  ReleaseOptions o;
  SweepOptions& s = o.sweep;
  const ModelRef ref = resolve_model_ref(vm["model"].as<std::string>());
  s.model = ref.path;
  s.naming.repo_id = vm.count("base-model") ? vm["base-model"].as<std::string>() : ref.repo_id;
  o.base_model = s.naming.repo_id;
  o.out_dir = vm["output"].as<std::string>();
  while (o.out_dir.size() > 1 && o.out_dir.back() == '/') o.out_dir.pop_back();
  s.out_dir = vm.count("work") ? vm["work"].as<std::string>() : o.out_dir + ".work";
  s.eval_text = vm["file"].as<std::string>();
  if (vm.count("calib")) s.calib_text = vm["calib"].as<std::string>();
  if (vm.count("imatrix")) {
    const std::string im = vm["imatrix"].as<std::string>();
    s.imatrix = im == "auto" ? ImatrixMode::kAuto : ImatrixMode::kFile;
    if (im != "auto") s.imatrix_file = im;
    s.calib_chunks = vm["calib-chunks"].as<int64_t>();
    if (s.calib_chunks == 0 || s.calib_chunks < -1) throw UsageError("--calib-chunks must be positive (or -1 for all)");
  }
  s.quants = parse_sweep_types(vm.count("types") ? vm["types"].as<std::string>() : kDefaultLadder, s.imatrix != ImatrixMode::kNone);
  bool has_targets = false;
  for (const auto& q : s.quants) has_targets = has_targets || q.at_target;
  if (vm.count("calib") && s.imatrix != ImatrixMode::kAuto && !has_targets)
    throw UsageError("--calib is the text for --imatrix auto and NAME@target files");
  for (size_t i = 0; i < s.quants.size(); ++i)
    for (size_t k = 0; k < i; ++k)
      if (s.quants[i].label == s.quants[k].label) throw UsageError("'" + s.quants[i].label + "' is listed twice");
  if (vm.count("outtype")) {
    const std::string t = lower_ascii(vm["outtype"].as<std::string>());
    if (t != "f16" && t != "bf16") throw UsageError("--outtype must be f16 or bf16 (got '" + t + "')");
    o.full_type = t == "f16" ? FileType::kF16 : FileType::kBF16;
  }
  if (vm.count("license")) o.license = vm["license"].as<std::string>();
  o.quantized_by = vm["quantized-by"].as<std::string>();
  s.eval.n_ctx = vm["ctx-size"].as<int64_t>();
  s.eval.n_chunks = vm["chunks"].as<int64_t>();
  s.eval.n_batch = vm["batch-size"].as<int64_t>();
  s.eval.n_threads = resolve_threads(vm["threads"].as<int>());
  if (s.eval.n_chunks == 0 || s.eval.n_chunks < -1) throw UsageError("--chunks must be positive (or -1 for all)");
  s.kld_budget = vm["kld-budget"].as<double>();
  if (!(s.kld_budget > 0)) throw UsageError("--kld-budget must be positive");
  s.n_generate = vm["n-predict"].as<int>();
  if (s.n_generate < 0) throw UsageError("--n-predict must be >= 0");
  if (s.n_generate > 0)
    for (const auto& p : kPrompts) s.prompts.push_back({{"user", p}});
  s.max_memory = default_sweep_memory();
  return o;
}

void check_inputs(const ReleaseOptions& o) {
  const SweepOptions& s = o.sweep;
  require_input(s.model);
  require_input(s.eval_text);
  if (!s.calib_text.empty()) require_input(s.calib_text);
  if (s.imatrix == ImatrixMode::kFile) require_input(s.imatrix_file);
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::weakly_canonical(s.out_dir, ec) == fs::weakly_canonical(o.out_dir, ec))
    throw UsageError("--work and --output must be different folders");
  if (fs::exists(s.out_dir, ec) && !fs::is_directory(s.out_dir, ec))
    throw UsageError("--work '" + s.out_dir + "' exists and is not a folder");
  check_release_destination(o.out_dir);
}

}  // namespace

int run_release(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  add_release_options(opts);
  po::positional_options_description pos;
  pos.add("model", 1);
  auto parsed = parse_args("release", args, "smolq release MODEL --out DIR -f TEXT [--types LADDER] [--imatrix auto|FILE] [options]",
                           opts, pos);
  if (parsed.help) return 0;
  const ReleaseOptions o = release_options(parsed.vm);
  check_inputs(o);

  install_interrupt_handlers();
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<ProgressBar> bar;
  std::string stage;
  SweepEvents ev;
  ev.log = [&](const std::string& line) {
    bar.reset();
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "[%6.1fs] %s\n", t, line.c_str());
  };
  ev.progress = [&](const std::string& st, int64_t done, int64_t total, const std::string& status) {
    if (!bar || st != stage) {
      bar.reset();
      stage = st;
      bar = std::make_unique<ProgressBar>(st, total, st == "evaluate" ? "chunk" : st == "imatrix" ? "tok" : "step");
    }
    bar->update(done, status);
  };
  ev.quant_ready = [&](const QuantRow& q) { ev.log("measured " + report::text_table_row(q)); };
  ReleaseResult r;
  try {
    r = smolq::run_release(o, ev);
  } catch (const Interrupted& e) {
    bar.reset();
    std::fprintf(stderr, "smolq release: interrupted; %s is unchanged, finished steps are kept in %s/cache\n",
                 o.out_dir.c_str(), o.sweep.out_dir.c_str());
    return 128 + e.signal();
  }
  bar.reset();
  std::printf("%s\n", report::recommendation_text(r.sweep).c_str());
  for (const auto& f : r.files) std::printf("%12llu  %s\n", static_cast<unsigned long long>(f.size), f.name.c_str());
  for (const auto& n : r.notes) std::fprintf(stderr, "note: %s\n", n.c_str());
  std::fprintf(stderr, "wrote %s; cache: %d builds done, %d reused; %lld chunks computed, %lld reused\n", o.out_dir.c_str(),
               r.sweep.cache.builds_done, r.sweep.cache.builds_reused, static_cast<long long>(r.sweep.cache.chunks_computed),
               static_cast<long long>(r.sweep.cache.chunks_reused));
  return 0;
}

}  // namespace smolq::cli
