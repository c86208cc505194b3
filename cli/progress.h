// A one-line progress bar on stderr for long-running commands: fraction done, throughput and
// ETA, plus a short status text. Drawn only when stderr is a terminal, so logs and pipes
// stay clean; redraws are throttled. Generic: any command counting any unit can use it.
//
//   ProgressBar bar("perplexity", total_tokens, "tok");
//   bar.update(done, "ppl 12.3456");
//   bar.finish();  // erases the line (also done by the destructor)
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace smolq::cli {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, std::string unit);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  bool enabled() const { return enabled_; }
  // -q/--quiet: no bar is drawn from now on (set once by parse_args).
  static void set_quiet(bool quiet);
  static bool quiet();
  // Record progress; redraws at most every kMinRedraw unless done == total.
  void update(int64_t done, const std::string& status = "");
  // Erase the bar so normal output can follow on a clean line.
  void finish();
  // Erase the bar, write `text` to stdout, and redraw (for output interleaved with progress).
  void print_above(const std::string& text);

  // "1h02m", "3m07s", "42s".
  static std::string format_duration(double seconds);
  // "12 tensor/s", "1.5 chunk/s", and below one unit a second "24.0 s/chunk".
  static std::string format_rate(double per_second, const std::string& unit);
  // Cuts `s` to at most `cells` terminal cells (one per code point), never inside a UTF-8
  // sequence.
  static void truncate_cells(std::string& s, size_t cells);

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kMinRedraw{100};
  void draw();

  std::string label_, unit_, status_;
  int64_t total_, done_ = 0;
  bool enabled_, drawn_ = false;
  Clock::time_point start_, last_draw_;
};

}  // namespace smolq::cli
