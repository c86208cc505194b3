// smolq_bench_tokenize: single-thread tokenizer throughput on WikiText-2, ours and HF's.
//
//   smolq_bench_tokenize [--tokenizer tokenizer.json] [--text wiki.test.raw] [--repeat N]
//                        [--no-peer]
//
// Measures (best of N runs of thread CPU time, MB = 10^6 bytes of input text):
//   whole  encode() of the whole file as one string
//   lines  encode() of each line (newline kept) in turn
//   decode decode() of the whole file's ids
// then runs bench_tokenize_peer.py with the project's Python (SMOLQ_PYTHON) for HF
// `tokenizers` on the same text and prints both and the ratio. Token counts of the two must
// agree; a difference is reported (the parity tests are the real check).
#include <chrono>
#include <ctime>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "formats/error.h"
#include "formats/mapped_file.h"
#include "text/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

// CPU time of this thread: on a shared, loaded machine wall time mostly measures the
// scheduler; CPU time is what a single-thread throughput figure should count.
double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

template <class Fn>
double best_seconds(int repeat, Fn&& fn) {
  double best = 1e30;
  for (int i = 0; i < repeat; ++i) {
    const double t0 = thread_seconds();
    fn();
    best = std::min(best, thread_seconds() - t0);
  }
  return best;
}

// Runs the peer script and parses its `key value` lines.
std::map<std::string, double> run_peer(const std::string& tokenizer, const std::string& text, int repeat) {
  const std::string cmd = std::string("'") + SMOLQ_PYTHON + "' '" + SMOLQ_SOURCE_DIR +
                          "/bench/bench_tokenize_peer.py' --tokenizer '" + tokenizer + "' --text '" + text +
                          "' --repeat " + std::to_string(repeat);
  std::map<std::string, double> out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char key[64];
  double value;
  while (std::fscanf(p, "%63s %lf", key, &value) == 2) out[key] = value;
  if (pclose(p) != 0) out.clear();
  return out;
}

int run(int argc, char** argv) {
  std::string tokenizer = std::string(SMOLQ_SHARED_DIR) + "/assets/smollm2-135m-instruct/tokenizer.json";
  std::string text_path = std::string(SMOLQ_SHARED_DIR) + "/assets/wikitext-2-raw/wiki.test.raw";
  int repeat = 5;
  bool peer = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tokenizer" && i + 1 < argc) tokenizer = argv[++i];
    else if (a == "--text" && i + 1 < argc) text_path = argv[++i];
    else if (a == "--repeat" && i + 1 < argc) repeat = std::max(1, std::stoi(argv[++i]));
    else if (a == "--no-peer") peer = false;
    else throw smolq::UsageError("usage: smolq_bench_tokenize [--tokenizer F] [--text F] [--repeat N] [--no-peer]");
  }
  const auto t0 = Clock::now();
  const smolq::Tokenizer tok = smolq::Tokenizer::from_hf_json(tokenizer);
  const double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const std::string text = smolq::read_text_file(text_path);
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    nl = nl == std::string::npos ? text.size() : nl + 1;
    lines.push_back(std::string_view(text).substr(pos, nl - pos));
    pos = nl;
  }
  const double mb = text.size() / 1e6;

  std::vector<int32_t> ids;
  const double t_whole = best_seconds(repeat, [&] { ids = tok.encode(text); });
  size_t line_tokens = 0;
  const double t_lines = best_seconds(repeat, [&] {
    line_tokens = 0;
    for (std::string_view l : lines) line_tokens += tok.encode(l).size();
  });
  std::string decoded;
  const double t_decode = best_seconds(repeat, [&] { decoded = tok.decode(ids); });

  std::printf("text        %s (%.3f MB, %zu lines)\n", text_path.c_str(), mb, lines.size());
  std::printf("tokenizer   %s (pre %s, %zu tokens)\n", tokenizer.c_str(), std::string(tok.pre_name()).c_str(),
              tok.vocab_size());
  std::printf("smolq       load %.3f s | whole %.2f MB/s (%zu tokens) | lines %.2f MB/s (%zu tokens) | decode %.1f MB/s%s\n",
              load_s, mb / t_whole, ids.size(), mb / t_lines, line_tokens, mb / t_decode,
              decoded == text ? "" : " (decode != text!)");
  if (!peer) return 0;
  const auto hf = run_peer(tokenizer, text_path, std::min(repeat, 3));
  if (hf.empty()) {
    std::printf("hf          (peer script failed; is %s set up with tokenizers?)\n", SMOLQ_PYTHON);
    return 0;
  }
  std::printf("hf          load %.3f s | whole %.2f MB/s (%.0f tokens) | lines %.2f MB/s (%.0f tokens)\n",
              hf.at("load_s"), hf.at("whole_mb_s"), hf.at("whole_tokens"), hf.at("lines_mb_s"), hf.at("lines_tokens"));
  std::printf("ratio       whole %.2fx | lines %.2fx (smolq / hf)\n", mb / t_whole / hf.at("whole_mb_s"),
              mb / t_lines / hf.at("lines_mb_s"));
  if (hf.at("whole_tokens") != double(ids.size()) || hf.at("lines_tokens") != double(line_tokens))
    std::printf("WARNING     token counts differ from HF\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "smolq_bench_tokenize: %s\n", e.what());
    return 1;
  }
}
