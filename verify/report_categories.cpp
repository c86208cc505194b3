// The category x quant view of an `--eval-set` sweep (verify/sweep.h CategoryResult): the
// tables of report.md / report.html and the "categories" block of report.json. Every cell is
// one category's statistics over its own positions (not a share of the pooled mean).
#include "verify/report_writers.h"

namespace smolq {
namespace report {
namespace {

std::string category_context(const CategoryResult& c) {
  std::string s = fmt("%lld tokens, %lld×%lld", static_cast<long long>(c.tokens), static_cast<long long>(c.n_chunks),
                      static_cast<long long>(c.n_ctx));
  if (c.chat) s += c.templated ? ", chat template" : ", chat as plain text";
  return s;
}

// The category with the largest mean KLD of each quant (its name, "" without categories).
std::string worst_name(const SweepResult& r, const QuantRow& q) {
  int at = -1;
  worst_category_kld(q, &at);
  return at >= 0 && static_cast<size_t>(at) < r.categories.size() ? r.categories[static_cast<size_t>(at)].name : "";
}

}  // namespace

std::string category_markdown(const SweepResult& r) {
  if (r.categories.empty()) return "";
  std::string s = "## Per category\n\n";
  s += "Mean KLD (nats) and same top-1 (%) of each quant on each category of " + r.eval_set_name +
       ": each category is evaluated on its own text, context and chunks; the worst category of each quant is in bold.\n\n";
  s += "| category | text | base PPL |";
  for (const auto& q : r.quants) s += " " + q.label + " |";
  s += "\n|:---|:---|---:|";
  for (size_t i = 0; i < r.quants.size(); ++i) s += "---:|";
  s += "\n";
  for (size_t ci = 0; ci < r.categories.size(); ++ci) {
    const CategoryResult& c = r.categories[ci];
    s += "| " + c.name + " | " + category_context(c) + fmt(" | %.3f |", c.base_ppl);
    for (const auto& q : r.quants) {
      if (ci >= q.category_kld.size()) {
        s += " - |";
        continue;
      }
      const KldReport& k = q.category_kld[ci];
      const bool worst = worst_name(r, q) == c.name;
      s += fmt(" %s%.4f%s · %.1f%% |", worst ? "**" : "", k.kld.value, worst ? "**" : "", 100.0 * k.same_top.value);
    }
    s += "\n";
  }
  s += "| **all (pooled)** | " + fmt("%lld positions", static_cast<long long>(r.positions)) + fmt(" | %.3f |", r.base_ppl);
  for (const auto& q : r.quants) s += fmt(" %.4f · %.1f%% |", q.kld.kld.value, 100.0 * q.kld.same_top.value);
  s += "\n\n";
  for (const auto& c : r.categories)
    if (!c.description.empty()) s += "- **" + c.name + "**: " + c.description + (c.note.empty() ? "" : " (" + c.note + ")") + "\n";
  return s + "\n";
}

std::string category_html(const SweepResult& r) {
  if (r.categories.empty()) return "";
  std::string s = "<h2>Per category</h2>\n<div class=\"wide\"><h3>Mean KLD per category and quant (colour: log scale; "
                  "cell: mean KLD and same top-1)</h3>\n" + svg_category_heatmap(r) + "</div>\n";
  s += "<table>\n<tr><th>category</th><th>text</th><th>base PPL</th>";
  for (const auto& q : r.quants) s += "<th>" + xml_escape(q.label) + "</th>";
  s += "</tr>\n";
  for (size_t ci = 0; ci < r.categories.size(); ++ci) {
    const CategoryResult& c = r.categories[ci];
    s += "<tr><td title=\"" + xml_escape(c.description) + "\">" + xml_escape(c.name) + "</td><td>" +
         xml_escape(category_context(c)) + fmt("</td><td>%.3f</td>", c.base_ppl);
    for (const auto& q : r.quants) {
      if (ci >= q.category_kld.size()) {
        s += "<td>-</td>";
        continue;
      }
      const KldReport& k = q.category_kld[ci];
      const bool worst = worst_name(r, q) == c.name;
      s += fmt("<td>%s%.4f%s<br/><span class=\"small\">%.1f%%</span></td>", worst ? "<b>" : "", k.kld.value, worst ? "</b>" : "",
               100.0 * k.same_top.value);
    }
    s += "</tr>\n";
  }
  s += "</table>\n";
  return s;
}

void category_json(JsonWriter& j, const SweepResult& r) {
  j.key("eval_set").value(r.eval_set_name).key("budget_every_category").value(r.budget_every_category);
  j.key("categories").begin_array();
  for (size_t ci = 0; ci < r.categories.size(); ++ci) {
    const CategoryResult& c = r.categories[ci];
    j.begin_object().key("name").value(c.name).key("description").value(c.description).key("chat").value(c.chat);
    j.key("templated").value(c.templated).key("n_ctx").value(c.n_ctx).key("tokens").value(c.tokens);
    j.key("n_chunks").value(c.n_chunks).key("positions").value(c.positions).key("note").value(c.note);
    j.key("base_ppl").value(c.base_ppl).key("base_ppl_uncertainty").value(c.base_ppl_unc).key("quants").begin_array();
    for (const auto& q : r.quants) {
      if (ci >= q.category_kld.size()) continue;
      const KldReport& k = q.category_kld[ci];
      j.begin_object().key("label").value(q.label).key("kld_mean").value(k.kld.value).key("kld_uncertainty").value(k.kld.unc);
      j.key("same_top_percent").value(100.0 * k.same_top.value).key("ppl").value(k.ppl_q.value);
      j.key("ppl_uncertainty").value(k.ppl_q.unc).key("worst").value(worst_name(r, q) == c.name).end_object();
    }
    j.end_array().end_object();
  }
  j.end_array();
}

}  // namespace report
}  // namespace smolq
