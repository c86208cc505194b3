#include "cli/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace smolq::cli {
namespace {

constexpr int kBarWidth = 24;       // cells of the bar itself
constexpr int kDefaultColumns = 100;

int terminal_columns() {
  winsize ws{};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return kDefaultColumns;
}

bool g_quiet = false;

}  // namespace

void ProgressBar::set_quiet(bool quiet) { g_quiet = quiet; }
bool ProgressBar::quiet() { return g_quiet; }

// One cell per code point: labels and statuses are tensor names, type names and Latin text,
// not wide CJK.
void ProgressBar::truncate_cells(std::string& s, size_t cols) {
  size_t cells = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;  // continuation byte
    if (cells++ == cols) {
      s.resize(i);
      return;
    }
  }
}

// Below one unit a second, the time per unit says more than "0 chunk/s".
std::string ProgressBar::format_rate(double rate, const std::string& unit) {
  char buf[64];
  if (rate >= 10) std::snprintf(buf, sizeof buf, "%.0f %s/s", rate, unit.c_str());
  else if (rate >= 1) std::snprintf(buf, sizeof buf, "%.1f %s/s", rate, unit.c_str());
  else if (rate > 0) std::snprintf(buf, sizeof buf, "%.1f s/%s", 1.0 / rate, unit.c_str());
  else std::snprintf(buf, sizeof buf, "? %s/s", unit.c_str());
  return buf;
}

ProgressBar::ProgressBar(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(std::max<int64_t>(1, total)),
      enabled_(!g_quiet && isatty(STDERR_FILENO) != 0), start_(Clock::now()), last_draw_(start_ - kMinRedraw) {}

ProgressBar::~ProgressBar() { finish(); }

std::string ProgressBar::format_duration(double s) {
  const long t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

void ProgressBar::update(int64_t done, const std::string& status) {
  done_ = std::clamp<int64_t>(done, 0, total_);
  status_ = status;
  if (!enabled_) return;
  const auto now = Clock::now();
  if (done_ < total_ && now - last_draw_ < kMinRedraw) return;
  last_draw_ = now;
  draw();
}

void ProgressBar::draw() {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const double frac = static_cast<double>(done_) / static_cast<double>(total_);
  const int filled = static_cast<int>(frac * kBarWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kBarWidth, '.');
  const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  const std::string eta = rate > 0 ? format_duration(static_cast<double>(total_ - done_) / rate) : "?";
  char line[512];
  std::snprintf(line, sizeof line, "%s [%s] %3.0f%% %lld/%lld %s, %s, ETA %s", label_.c_str(), bar.c_str(),
                100.0 * frac, static_cast<long long>(done_), static_cast<long long>(total_), unit_.c_str(),
                format_rate(rate, unit_).c_str(), eta.c_str());
  std::string s = line;
  if (!status_.empty()) s += ", " + status_;  // any length: cut below
  truncate_cells(s, static_cast<size_t>(terminal_columns()) - 1);  // never wrap: \r must return to this line
  std::fprintf(stderr, "\r\033[K%s", s.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (enabled_ && drawn_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    drawn_ = false;
  }
}

void ProgressBar::print_above(const std::string& text) {
  const bool was = drawn_;
  finish();
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
  if (was) draw();
}

}  // namespace smolq::cli
