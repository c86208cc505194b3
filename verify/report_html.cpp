// report.html: one self-contained page — inline CSS and SVG, no scripts, no fonts or images to
// fetch — so it opens offline, can be mailed around and renders the same everywhere. The markup
// is also well-formed XML (every element closed, only XML's five named entities), which lets
// tests parse it strictly.
#include <algorithm>

#include "verify/report_writers.h"

namespace smolq {
namespace {

using report::fmt;
using report::xml_escape;

constexpr const char* kStyle = R"(
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1200px;
       color: #1a202c; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #e2e8f0; padding-bottom: 4px; }
.meta { color: #4a5568; font-size: 13px; line-height: 1.5; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e2e8f0; }
th { background: #f7fafc; text-align: right; white-space: nowrap; }
td { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.l, th.l { text-align: left; }
tr.rec td { background: #fffaf0; }
tr.rec td:first-child { box-shadow: inset 4px 0 0 #dd6b20; }
.tag { font-size: 11px; padding: 1px 5px; border-radius: 3px; margin-left: 4px; }
.pareto { background: #ebf4ff; color: #2b6cb0; }
.best { background: #feebc8; color: #9c4221; }
.callout { background: #fffaf0; border-left: 4px solid #dd6b20; padding: 10px 14px; margin: 16px 0; font-size: 14px; }
.plots { display: flex; gap: 20px; flex-wrap: wrap; }
.plot { flex: 1 1 560px; min-width: 0; }
.plot h3, .wide h3 { font-size: 14px; margin: 8px 0 4px 0; color: #2d3748; }
.gen td { text-align: left; white-space: pre-wrap; vertical-align: top; font-size: 12px; max-width: 900px; }
.gen td.who { font-weight: bold; white-space: nowrap; }
.gen tr.base td { background: #f7fafc; }
details { margin: 8px 0; }
summary { cursor: pointer; color: #2b6cb0; }
.small { font-size: 12px; color: #4a5568; }
)";

std::string summary_table(const SweepResult& r) {
  const auto& cols = report::summary_columns();
  std::string s = "<table>\n<tr>";
  for (size_t k = 0; k < cols.size(); ++k) s += std::string(k == 0 ? "<th class=\"l\">" : "<th>") + xml_escape(cols[k].header) + "</th>";
  s += "</tr>\n";
  for (size_t i = 0; i < r.quants.size(); ++i) {
    s += report::is_recommended(r, i) ? "<tr class=\"rec\">" : "<tr>";
    for (size_t k = 0; k < cols.size(); ++k) {
      std::string v = xml_escape(cols[k].cell(r.quants[i]));
      if (k == 0) {
        v = "<b>" + v + "</b>";
        if (report::is_recommended(r, i)) v += "<span class=\"tag best\">recommended</span>";
        if (report::on_pareto(r, i)) v += "<span class=\"tag pareto\">Pareto</span>";
      }
      s += std::string(k == 0 ? "<td class=\"l\">" : "<td>") + v + "</td>";
    }
    s += "</tr>\n";
  }
  return s + "</table>\n";
}

std::string tensor_details(const SweepResult& r) {
  std::string s = "<details><summary>Tensor types and the ten largest per-tensor errors of each quant</summary>\n";
  for (const auto& q : r.quants) {
    std::string types;
    for (const auto& [t, n] : q.tensor_types) types += (types.empty() ? "" : ", ") + t + fmt(" ×%llu", static_cast<unsigned long long>(n));
    s += "<h3>" + xml_escape(q.label) + "</h3><p class=\"small\">" + xml_escape(q.file_type) + ": " + xml_escape(types) +
         (q.imatrix_used ? "; importance matrix used" : "") + "</p>\n";
    std::vector<const TensorError*> v;
    for (const auto& t : q.tensors) v.push_back(&t);
    std::sort(v.begin(), v.end(), [](const TensorError* a, const TensorError* b) { return a->rel > b->rel; });
    s += "<table><tr><th class=\"l\">tensor</th><th class=\"l\">type</th><th>weights</th><th>relative error</th><th>weighted MSE</th></tr>\n";
    for (size_t k = 0; k < v.size() && k < 10; ++k)
      s += "<tr><td class=\"l\">" + xml_escape(v[k]->name) + "</td><td class=\"l\">" + xml_escape(v[k]->type) + "</td>" +
           fmt("<td>%llu</td><td>%.3f%%</td><td>%.3g</td></tr>\n", static_cast<unsigned long long>(v[k]->n_elements), 100.0 * v[k]->rel, v[k]->wmse);
    s += "</table>\n";
  }
  return s + "</details>\n";
}

std::string generations(const SweepResult& r) {
  if (r.prompts.empty()) return "";
  std::string s = "<h2>Generations</h2>\n<p class=\"meta\">Greedy decoding, the same prompt for every model; prompts given through " +
                  xml_escape(r.prompt_format) + ".</p>\n";
  for (size_t p = 0; p < r.prompts.size(); ++p) {
    s += "<h3>Prompt " + std::to_string(p + 1) + ": " + xml_escape(r.prompts[p]) + "</h3>\n<table class=\"gen\">\n";
    auto row = [&](const std::string& who, const std::vector<Generation>& g, bool base) {
      if (p >= g.size()) return;
      s += std::string(base ? "<tr class=\"base\">" : "<tr>") + "<td class=\"who\">" + xml_escape(who) + "</td><td>" +
           xml_escape(g[p].text) + (g[p].stopped ? "" : " …") + "</td></tr>\n";
    };
    row("baseline", r.base_generations, true);
    for (const auto& q : r.quants) row(q.label, q.generations, false);
    s += "</table>\n";
  }
  return s;
}

}  // namespace

std::string report_html(const SweepResult& r) {
  const std::string name = report::model_name(r);
  std::string s = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n";
  s += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n";
  s += "<title>smolq verify: " + xml_escape(name) + "</title>\n<style>" + std::string(kStyle) + "</style>\n</head>\n<body>\n";
  s += "<h1>Which quant of " + xml_escape(name) + "?</h1>\n<div class=\"meta\">";
  s += "Baseline <code>" + xml_escape(r.model) + "</code>: " + xml_escape(r.model_desc) +
       fmt(" — %.1fM parameters, %s, perplexity %.4f ± %.4f.<br/>", r.n_params / 1e6, report::mib(r.model_bytes).c_str(), r.base_ppl, r.base_ppl_unc);
  s += "Evaluated on " + xml_escape(r.eval_desc) + ": " + report::chunks_desc(r) +
       fmt(", %lld scored positions per quant (llama-perplexity's KL-divergence protocol).<br/>",
           static_cast<long long>(r.positions));
  s += "Importance matrix: " + xml_escape(r.imatrix_desc) + ".";
  for (const auto& n : r.notes) s += "<br/>Note: " + xml_escape(n);
  s += "</div>\n";

  s += "<div class=\"callout\">" + xml_escape(report::recommendation_text(r)) + "</div>\n";
  s += "<h2>Summary</h2>\n" + summary_table(r);
  s += "<p class=\"small\">KLD: KL divergence of each quant's next-token distribution from the baseline's, in nats per "
       "position. Same top-1: positions whose most likely token is unchanged. RMS Δp: change of the probability of "
       "the actual next token. Drift: differences of raw logits. Size and bits per weight are those of the real "
       "file, after fallbacks for rows that do not fit a type's blocks.</p>\n";

  s += "<div class=\"plots\">\n<div class=\"plot\"><h3>File size against mean KLD (Pareto front dashed, recommendation circled)</h3>\n" +
       report::svg_size_vs_kld(r) + "</div>\n";
  s += "<div class=\"plot\"><h3>Perplexity ± its uncertainty (baseline dashed; labels: ΔPPL)</h3>\n" + report::svg_ppl(r) + "</div>\n</div>\n";
  s += report::category_html(r);
  s += "<h2>Where the error comes from</h2>\n<div class=\"wide\"><h3>Relative weight error per layer "
       "(sqrt of Σ w·(dq − x)² / Σ w·x² over the layer's matrices)</h3>\n" + report::svg_layer_heatmap(r) + "</div>\n";
  s += tensor_details(r);
  s += generations(r);

  s += "<h2>Run</h2>\n<p class=\"small\">";
  s += fmt("%d threads, batch %lld, %s in total. Cache: %d builds done, %d reused; %lld quant chunks computed, %lld reused; "
           "%lld baseline chunks computed, %lld reused. ",
           r.eval.n_threads, static_cast<long long>(r.eval.n_batch), report::seconds(r.seconds).c_str(), r.cache.builds_done,
           r.cache.builds_reused, static_cast<long long>(r.cache.chunks_computed), static_cast<long long>(r.cache.chunks_reused),
           static_cast<long long>(r.cache.base_chunks_computed), static_cast<long long>(r.cache.base_chunks_reused));
  s += "Made by smolq " + std::string(SMOLQ_VERSION) + " (<code>smolq verify</code>).</p>\n</body>\n</html>\n";
  return s;
}

}  // namespace smolq
