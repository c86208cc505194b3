// Formatting shared by the verify reports and the terminal table (verify/report_writers.h).
#include <cstdarg>
#include <cstdio>
#include <filesystem>

#include "formats/atomic_file.h"
#include "verify/report_writers.h"

namespace smolq {
namespace report {

std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

std::string mib(uint64_t bytes) { return fmt("%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0)); }

std::string chunks_desc(const SweepResult& r) {
  if (r.categories.empty())
    return fmt("%lld chunks of %lld tokens", static_cast<long long>(r.n_chunks), static_cast<long long>(r.eval.n_ctx));
  return fmt("%lld chunks over %zu categories, each at its own context", static_cast<long long>(r.n_chunks),
             r.categories.size());
}

std::string seconds(double s) {
  if (s < 100) return fmt("%.1f s", s);
  const int t = static_cast<int>(s + 0.5);
  return t < 3600 ? fmt("%dm%02ds", t / 60, t % 60) : fmt("%dh%02dm", t / 3600, (t / 60) % 60);
}

double delta_ppl_percent(const QuantRow& q) { return (q.kld.ppl_ratio.value - 1.0) * 100.0; }

double kld_percentile(const QuantRow& q, const std::string& name) {
  for (const auto& [n, v] : q.kld.kld_percentiles)
    if (n == name) return v;
  return 0;
}

bool on_pareto(const SweepResult& r, size_t i) {
  for (size_t p : r.pareto)
    if (p == i) return true;
  return false;
}
bool is_recommended(const SweepResult& r, size_t i) { return r.recommended && *r.recommended == i; }

std::string model_name(const SweepResult& r) {
  std::filesystem::path p(r.model);
  while (!p.empty() && !p.has_filename()) p = p.parent_path();
  return p.filename().string();
}

const std::vector<TableColumn>& summary_columns() {
  static const std::vector<TableColumn> kColumns{
      {"type", [](const QuantRow& q) { return q.label; }},
      {"size", [](const QuantRow& q) { return mib(q.file_size); }},
      {"bpw", [](const QuantRow& q) { return fmt("%.2f", q.bpw); }},
      {"PPL", [](const QuantRow& q) { return fmt("%.4f ± %.4f", q.kld.ppl_q.value, q.kld.ppl_q.unc); }},
      {"ΔPPL", [](const QuantRow& q) { return fmt("%+.2f%%", delta_ppl_percent(q)); }},
      {"KLD mean", [](const QuantRow& q) { return fmt("%.5f", q.kld.kld.value); }},
      {"KLD median", [](const QuantRow& q) { return fmt("%.5f", kld_percentile(q, "median")); }},
      {"KLD p99", [](const QuantRow& q) { return fmt("%.4f", kld_percentile(q, "99.0")); }},
      {"same top-1", [](const QuantRow& q) { return fmt("%.2f%%", 100.0 * q.kld.same_top.value); }},
      {"RMS Δp", [](const QuantRow& q) { return fmt("%.3f%%", 100.0 * q.kld.rms_p_diff.value); }},
      {"RMS drift", [](const QuantRow& q) { return fmt("%.4f", q.kld.rms_logit_drift); }},
      {"max drift", [](const QuantRow& q) { return fmt("%.3f", q.kld.max_logit_drift); }},
      {"build", [](const QuantRow& q) { return q.built ? seconds(q.build_seconds) : std::string("given"); }},
      {"eval", [](const QuantRow& q) { return seconds(q.eval_seconds); }},
  };
  return kColumns;
}

namespace {

// Display width of UTF-8 text (the tables use a few non-ASCII characters: ±, Δ).
size_t display_width(const std::string& s) {
  size_t w = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++w;
  return w;
}

// Column widths of the terminal table; the first fits labels like "IQ2_XXS@target".
constexpr int kWidths[] = {14, 10, 5, 17, 8, 9, 10, 8, 10, 8, 9, 9, 7, 7};

std::string pad(const std::string& s, size_t w, bool left) {
  const size_t n = display_width(s);
  if (n >= w) return s;
  return left ? s + std::string(w - n, ' ') : std::string(w - n, ' ') + s;
}

}  // namespace

std::string text_table_header() {
  std::string s;
  const auto& cols = summary_columns();
  for (size_t i = 0; i < cols.size(); ++i) {
    if (i) s += ' ';
    s += pad(cols[i].header, static_cast<size_t>(kWidths[i]), i == 0);
  }
  return s;
}

std::string text_table_row(const QuantRow& q) {
  std::string s;
  const auto& cols = summary_columns();
  for (size_t i = 0; i < cols.size(); ++i) {
    if (i) s += ' ';
    s += pad(cols[i].cell(q), static_cast<size_t>(kWidths[i]), i == 0);
  }
  return s;
}

std::string recommendation_text(const SweepResult& r) {
  std::string s;
  if (r.recommended) {
    const QuantRow& q = r.quants[*r.recommended];
    s = fmt("Smallest quant within the KLD budget of %g: %s (%s, %.2f bpw, mean KLD %.5f, same top-1 %.1f%%).",
            r.kld_budget, q.label.c_str(), mib(q.file_size).c_str(), q.bpw, q.kld.kld.value, 100.0 * q.kld.same_top.value);
    if (r.budget_every_category) s += fmt(" The budget holds in every category (worst: %.5f).", worst_category_kld(q));
  } else {
    size_t best = 0;
    for (size_t i = 1; i < r.quants.size(); ++i)
      if (r.quants[i].kld.kld.value < r.quants[best].kld.kld.value) best = i;
    s = fmt(r.budget_every_category ? "No quant is within the KLD budget of %g in every category; the closest is %s (mean KLD %.5f)."
                                    : "No quant is within the KLD budget of %g; the closest is %s (mean KLD %.5f).", r.kld_budget,
            r.quants.empty() ? "-" : r.quants[best].label.c_str(), r.quants.empty() ? 0.0 : r.quants[best].kld.kld.value);
  }
  s += " Pareto front (smaller file or lower KLD than every other quant):";
  for (size_t k = 0; k < r.pareto.size(); ++k) s += (k ? ", " : " ") + r.quants[r.pareto[k]].label;
  return s + ".";
}

}  // namespace report

std::vector<std::string> write_reports(const SweepResult& r, const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::vector<std::pair<std::string, std::string>> files{
      {dir + "/report.md", report_markdown(r)}, {dir + "/report.json", report_json(r)}, {dir + "/report.html", report_html(r)}};
  std::vector<std::string> paths;
  for (const auto& [path, content] : files) {
    write_file_atomic(path, content);
    paths.push_back(path);
  }
  return paths;
}

}  // namespace smolq
