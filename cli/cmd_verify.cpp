// `smolq verify MODEL [QUANT.gguf ...] -f TEXT [--types Q8_0,Q6_K,...|all] [--imatrix FILE|auto]
//               [--calib TEXT] [--ctx 512] [--chunks 16] [--prompts FILE] [--out DIR] [...]`
//
// "Which quant should I ship?", measured on the user's model: builds each requested quant (or
// takes the given GGUF files), evaluates all of them against the full-precision model on the
// same text, and writes report.md, report.json and report.html (verify/sweep.h,
// verify/report_writers.h). Steps and progress go to stderr; the summary table fills on stdout
// as quants finish. Results are cached in DIR/cache, so an interrupted or extended run
// resumes where it stopped.
#include <sys/ioctl.h>
#include <unistd.h>

#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>

#include "cli/options.h"
#include "cli/progress.h"
#include "formats/error.h"
#include "formats/hf_cache.h"
#include "formats/interrupt.h"
#include "formats/mapped_file.h"
#include "verify/report_writers.h"
#include "verify/sweep_cache.h"
#include "verify/sweep.h"
#include "verify/sweep_types.h"

namespace smolq::cli {
namespace {

constexpr const char* kDefaultTypes = "Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q3_K_M,Q2_K";

// Default prompts: a fact, a short creative task, an explanation.
const std::vector<std::string> kDefaultPrompts{
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in one sentence what quantizing a neural network means.",
};

uint64_t parse_size(const std::string& s) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (const std::exception&) {
    throw UsageError("--max-memory: expected a size like 8G or 512M, got '" + s + "'");
  }
  std::string unit = s.substr(pos);
  for (auto& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
  if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();
  double mult = 1;
  if (unit == "K") mult = 1024.0;
  else if (unit == "M") mult = 1024.0 * 1024;
  else if (unit == "G") mult = 1024.0 * 1024 * 1024;
  else if (unit == "T") mult = 1024.0 * 1024 * 1024 * 1024;
  else if (!unit.empty() && unit != "B") throw UsageError("--max-memory: unknown unit in '" + s + "'");
  if (v <= 0) throw UsageError("--max-memory must be positive");
  return static_cast<uint64_t>(v * mult);
}

// --prompts FILE: a .json file holding a list whose items are strings (one user turn) or lists
// of {"role", "content"} messages; any other file: one prompt per non-empty line.
std::vector<std::vector<ChatMessage>> read_prompts(const std::string& path) {
  std::vector<std::vector<ChatMessage>> out;
  if (std::filesystem::path(path).extension() == ".json") {
    simdjson::dom::parser parser;
    simdjson::dom::array arr;
    if (parser.load(path).get(arr)) throw FormatError(path, "expected a JSON list of prompts");
    for (auto item : arr) {
      std::string_view text;
      simdjson::dom::array msgs;
      if (!item.get(text)) {
        out.push_back({{"user", std::string(text)}});
      } else if (!item.get(msgs)) {
        std::vector<ChatMessage> conv;
        for (auto m : msgs) {
          std::string_view role, content;
          if (m["role"].get(role) || m["content"].get(content))
            throw FormatError(path, "each message needs string fields \"role\" and \"content\"");
          conv.push_back({std::string(role), std::string(content)});
        }
        out.push_back(std::move(conv));
      } else {
        throw FormatError(path, "a prompt must be a string or a list of messages");
      }
    }
  } else {
    std::istringstream in(read_text_file(path));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") != std::string::npos) out.push_back({{"user", line}});
    }
  }
  if (out.empty()) throw UsageError(path + " holds no prompts");
  return out;
}

// Progress on stderr: one bar per stage, replaced when the stage changes. The summary table goes
// to stdout: on a terminal it is redrawn in place as chunks finish (rows still running say how
// many chunks they have); otherwise each row is printed once, when it is complete.
//
// The live table lists its rows as the report will: largest file first, ties in the order the
// quants were asked for (run_sweep's stable sort), so its last state is the report's table. Rows
// wider than the terminal wrap; the redraw counts the screen rows each line takes, moves the
// cursor up over all of them and erases to the end of the screen before drawing again. (A table
// taller than the window cannot be reached by the cursor: the screen still ends with the whole
// table, and only the scrollback above it holds partial copies.)
class Display {
 public:
  // `order`: the quants' labels as requested; a row's rank among equal file sizes.
  explicit Display(std::vector<std::string> order)
      : live_(isatty(STDOUT_FILENO) && isatty(STDERR_FILENO)), order_(std::move(order)) {}

  void log(const std::string& line) {
    if (bar_) bar_->finish();
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::fprintf(stderr, "[%6.1fs] %s\n", t, line.c_str());
    table_is_last_ = false;
  }
  void progress(const std::string& stage, int64_t done, int64_t total, const std::string& status) {
    if (!bar_ || stage != stage_) {
      bar_.reset();
      stage_ = stage;
      const char* unit = stage.rfind("build", 0) == 0 ? "w" : stage == "evaluate" ? "chunk" : stage.rfind("tensor", 0) == 0 ? "t" : "";
      bar_ = std::make_unique<ProgressBar>(stage, total, unit[0] ? unit : (stage == "imatrix" ? "tok" : "step"));
    }
    bar_->update(done, status);
  }
  void running(const QuantRow& q, int64_t done, int64_t total) {
    if (!live_) return;
    set_row(q, report::text_table_row(q) + report::fmt("  (chunk %lld/%lld)", static_cast<long long>(done),
                                                        static_cast<long long>(total)));
    redraw();
  }
  void ready(const QuantRow& q) {
    set_row(q, report::text_table_row(q));
    if (live_) {
      redraw();
      return;
    }
    if (!header_) out(report::text_table_header() + "\n");
    header_ = true;
    out(report::text_table_row(q) + "\n");
  }
  void done() { bar_.reset(); }

 private:
  struct Row {
    std::string label;
    uint64_t file_size;
    size_t rank;       // position in order_ (order_.size() when not listed)
    std::string text;  // the table line
  };

  void set_row(const QuantRow& q, std::string text) {
    for (auto& r : rows_)
      if (r.label == q.label) {
        r.text = std::move(text);
        return;
      }
    const size_t rank = static_cast<size_t>(std::find(order_.begin(), order_.end(), q.label) - order_.begin());
    Row row{q.label, q.file_size, rank, std::move(text)};
    const auto at = std::find_if(rows_.begin(), rows_.end(), [&](const Row& r) {
      return r.file_size != row.file_size ? r.file_size < row.file_size : r.rank > row.rank;
    });
    rows_.insert(at, std::move(row));
  }

  // Screen rows a line of `text` takes in a window `cols` wide: characters are counted as code
  // points (the table's only non-ASCII characters, ± and Δ, are one column wide). A line exactly
  // as wide as the window takes one row: the terminal defers the wrap until the next character,
  // and the newline comes first.
  static size_t screen_rows(const std::string& text, size_t cols) {
    size_t width = 0;
    for (unsigned char c : text)
      if ((c & 0xC0) != 0x80) ++width;
    return width == 0 ? 1 : (width + cols - 1) / cols;
  }
  static size_t terminal_columns() {
    winsize ws{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 80;
  }

  // Rewrite the table where it stands when nothing was printed below it since, else below.
  void redraw() {
    if (bar_) bar_->finish();
    const size_t cols = terminal_columns();
    std::string s;
    if (table_is_last_ && drawn_ > 0) s += report::fmt("\033[%zuA", drawn_);
    s += "\r\033[J";
    const std::string header = report::text_table_header();
    s += header + "\n";
    drawn_ = screen_rows(header, cols);
    for (const auto& r : rows_) {
      s += r.text + "\n";
      drawn_ += screen_rows(r.text, cols);
    }
    std::fputs(s.c_str(), stdout);
    std::fflush(stdout);
    table_is_last_ = true;
  }
  void out(const std::string& s) {
    if (bar_) bar_->print_above(s);
    else std::fputs(s.c_str(), stdout), std::fflush(stdout);
  }

  bool live_;
  std::vector<std::string> order_;
  std::unique_ptr<ProgressBar> bar_;
  std::string stage_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::vector<Row> rows_;  // in the report's order
  size_t drawn_ = 0;       // screen rows the table took when last drawn
  bool table_is_last_ = false, header_ = false;
};

// The options of `smolq verify`.
void add_verify_options(po::options_description& opts) {
  opts.add_options()
      (kOptModel, po::value<std::vector<std::string>>(), "the full-precision model (HF folder, GGUF, or repo id org/name[@revision] from the Hugging Face cache), then any quantized GGUF files to compare")
      (kOptFile, po::value<std::string>(), "evaluation text (plain text; e.g. WikiText-2's wiki.test.raw)")
      ("types", po::value<std::string>(), (std::string("file types to build, comma-separated, or 'all' (default without GGUF files: ") + kDefaultTypes + "); NAME@target adds a measured mixed-precision file of NAME's size (docs/mixed-precision.md)").c_str())
      (kOptImatrix, po::value<std::string>(), "importance matrix for the builds: a file, or 'auto' to collect one from --calib")
      ("calib", po::value<std::string>(), "calibration text for --imatrix auto and NAME@target rows (default: the first half of -f; the second half is then evaluated)")
      ("calib-chunks", po::value<int64_t>()->default_value(32), "calibrate --imatrix auto on at most this many chunks (-1: all)")
      (kOptCtxSize, po::value<int64_t>()->default_value(512), "tokens per chunk")
      ("chunks", po::value<int64_t>()->default_value(16), "chunks to evaluate (-1: the whole text)")
      (kOptBatchSize, po::value<int64_t>()->default_value(512), "tokens per forward call (does not change results)")
      (kOptThreads, po::value<int>()->default_value(0), "worker threads (0: all cores)")
      ("prompts", po::value<std::string>(), "prompts for the generations: one per line, or a .json list of strings / message lists")
      ("n-predict,n", po::value<int>()->default_value(48), "greedy tokens per prompt (0: no generations)")
      ("chat-template-file", po::value<std::string>(), "use this Jinja chat template instead of the model's")
      (kOptOutput, po::value<std::string>(), "output folder (default: verify-<model name>)")
      ("kld-budget", po::value<double>()->default_value(0.02), "largest mean KLD (nats) a recommended quant may have")
      ("max-memory", po::value<std::string>(), "memory for models evaluated together, e.g. 8G (default: half the RAM)")
      ("no-base-cache", "do not keep the baseline's logits in the cache (saves disk; extending a run recomputes them)")
      ("show-prompts", "print the prompts as the model will see them (JSON) and exit")
      (kOptQuiet, "no progress bars");
}

// The output folder and the generations' prompts, template and length.
void set_output_and_prompts(const po::variables_map& vm, const std::string& model, SweepOptions& o) {
  // A repo id from the Hugging Face cache names the folder after the repo, not the snapshot hash.
  const ModelRef ref = resolve_model_ref(model);
  o.model = ref.path;
  o.out_dir = vm.count("output") ? vm["output"].as<std::string>() : "verify-" + ref.display_name();
  o.prompts.clear();
  if (vm.count("prompts")) {
    o.prompts = read_prompts(vm["prompts"].as<std::string>());
  } else {
    for (const auto& p : kDefaultPrompts) o.prompts.push_back({{"user", p}});
  }
  o.n_generate = vm["n-predict"].as<int>();
  if (o.n_generate < 0) throw UsageError("--n-predict must be >= 0");
  if (vm.count("chat-template-file")) o.chat_template = read_text_file(vm["chat-template-file"].as<std::string>());
}

// --show-prompts: the prompts as the model will see them, as JSON on stdout.
void show_prompts(const SweepOptions& o) {
  std::string format;
  const std::vector<std::string> texts = render_prompts(o, format);
  JsonWriter j(2, 10);
  j.begin_object().key("format").value(format).key("prompts").begin_array();
  for (const auto& t : texts) j.value(t);
  j.end_array().end_object();
  std::printf("%s\n", j.str().c_str());
}

// The texts, the importance matrix and the rows: the types to build (--types) and the given
// GGUF files (`paths` after the model).
void set_texts_and_quants(const po::variables_map& vm, const std::vector<std::string>& paths, SweepOptions& o) {
  if (!vm.count("file")) throw UsageError("give the evaluation text with -f (for example WikiText-2's wiki.test.raw)");
  o.eval_text = vm["file"].as<std::string>();
  // The calibration text of --imatrix auto and of NAME@target rows' profile.
  if (vm.count("calib")) o.calib_text = vm["calib"].as<std::string>();
  if (vm.count("imatrix")) {
    const std::string im = vm["imatrix"].as<std::string>();
    if (im == "auto") {
      o.imatrix = ImatrixMode::kAuto;
      o.calib_chunks = vm["calib-chunks"].as<int64_t>();
      if (o.calib_chunks == 0 || o.calib_chunks < -1) throw UsageError("--calib-chunks must be positive (or -1 for all)");
    } else {
      o.imatrix = ImatrixMode::kFile;
      o.imatrix_file = im;
    }
  }
  const bool have_imatrix = o.imatrix != ImatrixMode::kNone;
  if (vm.count("types") || paths.size() == 1)
    o.quants = parse_sweep_types(vm.count("types") ? vm["types"].as<std::string>() : kDefaultTypes, have_imatrix);
  bool has_targets = false;
  for (const auto& q : o.quants) has_targets = has_targets || q.at_target;
  if (vm.count("calib") && o.imatrix != ImatrixMode::kAuto && !has_targets)
    throw UsageError("--calib is the text for --imatrix auto and NAME@target rows");
  for (size_t i = 1; i < paths.size(); ++i) {
    SweepQuantSpec s;
    s.label = std::filesystem::path(paths[i]).stem().string();
    s.gguf = paths[i];
    o.quants.push_back(s);
  }
  for (size_t i = 0; i < o.quants.size(); ++i)
    for (size_t k = 0; k < i; ++k)
      if (o.quants[i].label == o.quants[k].label) throw UsageError("'" + o.quants[i].label + "' is listed twice");
}

// The evaluation protocol, the recommendation's budget and the memory and cache limits.
void set_evaluation(const po::variables_map& vm, SweepOptions& o) {
  o.eval.n_ctx = vm["ctx-size"].as<int64_t>();
  o.eval.n_chunks = vm["chunks"].as<int64_t>();
  o.eval.n_batch = vm["batch-size"].as<int64_t>();
  o.eval.n_threads = resolve_threads(vm["threads"].as<int>());
  if (o.eval.n_chunks == 0 || o.eval.n_chunks < -1) throw UsageError("--chunks must be positive (or -1 for all)");
  o.kld_budget = vm["kld-budget"].as<double>();
  if (!(o.kld_budget > 0)) throw UsageError("--kld-budget must be positive");
  o.max_memory = vm.count("max-memory") ? parse_size(vm["max-memory"].as<std::string>()) : default_sweep_memory();
  o.cache_base_logits = vm.count("no-base-cache") == 0;
}

// Every input exists and the output folder can be one, before any work: whether the folder
// was already there (an existing one is reused: its cache resumes a run).
bool check_paths(const SweepOptions& o) {
  require_input(o.model);
  require_input(o.eval_text);
  if (!o.calib_text.empty()) require_input(o.calib_text);
  if (o.imatrix == ImatrixMode::kFile) require_input(o.imatrix_file);
  for (const auto& q : o.quants)
    if (!q.gguf.empty()) require_input(q.gguf);
  std::error_code ec;
  const bool out_existed = std::filesystem::exists(o.out_dir, ec);
  if (out_existed && !std::filesystem::is_directory(o.out_dir, ec))
    throw UsageError("--output '" + o.out_dir + "' exists and is not a folder");
  return out_existed;
}

// Runs the sweep with its progress on the terminal, then writes the reports: the exit code.
// A folder this run creates is removed again if the run fails before putting anything in it.
int sweep_and_report(const SweepOptions& o, bool out_existed) {
  auto remove_if_unused = [&] {
    if (out_existed) return;
    std::error_code ec;
    for (const char* sub : {"/cache", "/quants", ""}) std::filesystem::remove(o.out_dir + sub, ec);  // only if empty
  };
  install_interrupt_handlers();
  std::vector<std::string> order;
  for (const auto& q : o.quants) order.push_back(q.label);
  Display d(std::move(order));
  SweepEvents ev;
  ev.log = [&](const std::string& line) { d.log(line); };
  ev.progress = [&](const std::string& stage, int64_t done, int64_t total, const std::string& status) {
    d.progress(stage, done, total, status);
  };
  ev.quant_ready = [&](const QuantRow& q) { d.ready(q); };
  ev.quant_progress = [&](const QuantRow& q, int64_t done, int64_t total) { d.running(q, done, total); };
  SweepResult r;
  try {
    r = run_sweep(o, ev);
  } catch (const Interrupted& e) {
    d.done();
    std::fprintf(stderr, "smolq verify: interrupted; finished steps are kept in %s/cache — run the same command again to resume\n",
                 o.out_dir.c_str());
    return 128 + e.signal();
  } catch (...) {
    d.done();
    remove_if_unused();
    throw;
  }
  d.done();
  const auto written = write_reports(r, o.out_dir);
  std::printf("\n%s\n", report::recommendation_text(r).c_str());
  for (const auto& p : written) std::fprintf(stderr, "wrote %s\n", p.c_str());
  std::fprintf(stderr, "%s in total; cache: %d builds done, %d reused; %lld chunks computed, %lld reused\n",
               report::seconds(r.seconds).c_str(), r.cache.builds_done, r.cache.builds_reused,
               static_cast<long long>(r.cache.chunks_computed), static_cast<long long>(r.cache.chunks_reused));
  return 0;
}

}  // namespace

int run_verify(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  add_verify_options(opts);
  po::positional_options_description pos;
  pos.add("model", -1);
  auto parsed = parse_args("verify", args, "smolq verify MODEL [QUANT.gguf ...] -f TEXT [--types LIST|all] [--imatrix FILE|auto] [options]",
                           opts, pos);
  if (parsed.help) return 0;
  const auto& vm = parsed.vm;
  if (!vm.count("model")) throw UsageError("give the full-precision model (HF folder or GGUF)");
  const auto paths = vm["model"].as<std::vector<std::string>>();

  SweepOptions o;
  set_output_and_prompts(vm, paths[0], o);
  if (vm.count("show-prompts")) {
    show_prompts(o);
    return 0;
  }
  set_texts_and_quants(vm, paths, o);
  set_evaluation(vm, o);
  const bool out_existed = check_paths(o);
  return sweep_and_report(o, out_existed);
}

}  // namespace smolq::cli
