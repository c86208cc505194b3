// The three reports of `smolq verify` (verify/sweep.h): report.md for reading and pasting,
// report.json with every number (the per-quant KLD block is exactly what
// `smolq perplexity --base --json` prints), and report.html — one self-contained file (no
// scripts, no network) with hand-written SVG plots: size vs KLD with the Pareto front, PPL per
// quant, and a per-layer error heatmap.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "formats/json_writer.h"
#include "verify/sweep.h"

namespace smolq {

std::string report_markdown(const SweepResult& r);
std::string report_json(const SweepResult& r);
// report.json with `extra` writing further keys at the end of the top-level object (smolq
// release adds its "release" section this way).
std::string report_json(const SweepResult& r, const std::function<void(JsonWriter&)>& extra);
std::string report_html(const SweepResult& r);

// Writes report.md, report.json and report.html into `dir` (each atomically); returns the paths.
std::vector<std::string> write_reports(const SweepResult& r, const std::string& dir);

namespace report {

// Shared formatting (report_format.cpp).
std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string mib(uint64_t bytes);             // "101.2 MiB"
// "8 chunks of 512 tokens", or with an evaluation set (each category at its own context)
// "16 chunks over 8 categories, each at its own context".
std::string chunks_desc(const SweepResult& r);
std::string seconds(double s);               // "15.3 s", "2m05s"
double delta_ppl_percent(const QuantRow& q); // (PPL(Q) / PPL(base) - 1) * 100
double kld_percentile(const QuantRow& q, const std::string& name);  // "median", "99.0", "max"
bool on_pareto(const SweepResult& r, size_t i);
bool is_recommended(const SweepResult& r, size_t i);
// The model's display name: the folder or file name.
std::string model_name(const SweepResult& r);

// The summary table, as the terminal shows it while the sweep runs and as report.md has it.
struct TableColumn {
  const char* header;
  std::string (*cell)(const QuantRow&);
};
const std::vector<TableColumn>& summary_columns();
std::string text_table_header();               // fixed-width, for the terminal
std::string text_table_row(const QuantRow& q); // fixed-width, for the terminal
// One sentence: the recommendation (or why there is none) and the Pareto front.
std::string recommendation_text(const SweepResult& r);

// Text for XML/HTML content and attribute values (& < > " ' escaped; invalid UTF-8 replaced).
std::string xml_escape(const std::string& s);

// The plots of report.html (report_svg.cpp): inline <svg> elements, no scripts or fonts to load.
std::string svg_size_vs_kld(const SweepResult& r);  // scatter, log KLD, Pareto front, budget line
std::string svg_ppl(const SweepResult& r);          // PPL ± uncertainty per quant, baseline line
std::string svg_layer_heatmap(const SweepResult& r);// quants x layers, relative weight error
std::string svg_category_heatmap(const SweepResult& r);  // quants x categories, mean KLD (--eval-set)

// The category x quant view of an --eval-set sweep (report_categories.cpp); "" / nothing
// written without categories, except category_json, which always writes its keys.
std::string category_markdown(const SweepResult& r);
std::string category_html(const SweepResult& r);
void category_json(JsonWriter& j, const SweepResult& r);

}  // namespace report
}  // namespace smolq
