// report.md: the sweep as a document — summary table, recommendation, where the error comes
// from (per layer and the worst tensors), generations side by side, settings and cache use.
#include <algorithm>

#include "verify/report_writers.h"

namespace smolq {
namespace {

using report::fmt;

// Markdown table cells cannot hold '|' or newlines.
std::string cell(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '|') o += "\\|";
    else if (c == '\n') o += "<br>";
    else if (c != '\r') o += c;
  }
  return o;
}

std::string quote_block(const std::string& s) {
  std::string o = "> ";
  for (char c : s) {
    o += c;
    if (c == '\n') o += "> ";
  }
  return o + "\n";
}

}  // namespace

std::string report_markdown(const SweepResult& r) {
  std::string s = "# smolq verify: " + report::model_name(r) + "\n\n";
  s += "- Baseline: `" + r.model + "` — " + r.model_desc + fmt(" (%.1fM parameters, %s of weights)\n", r.n_params / 1e6, report::mib(r.model_bytes).c_str());
  s += fmt("- Baseline perplexity: %.4f ± %.4f\n", r.base_ppl, r.base_ppl_unc);
  s += "- Text: " + r.eval_desc + "; " + report::chunks_desc(r) +
       fmt(", %lld scored positions per quant (llama-perplexity's protocol)%s\n", static_cast<long long>(r.positions),
           r.eval.add_bos ? ", BOS at each chunk" : "");
  s += "- Importance matrix: " + r.imatrix_desc + "\n";
  if (r.positions < 1000) s += "- Note: fewer than 1,000 scored positions: the statistics are rough; use more `--chunks`.\n";
  for (const auto& n : r.notes) s += "- Note: " + n + "\n";

  s += "\n## Summary\n\n";
  s += "KLD: KL divergence of the quant's next-token distribution from the baseline's (nats), per position. "
       "Same top-1: positions whose most likely token is unchanged. Δp: change of the probability of the "
       "actual next token. Drift: difference of raw logits. Size and bpw are the real file's, after "
       "fallbacks for rows that do not fit a type's blocks.\n\n";
  const auto& cols = report::summary_columns();
  s += "|";
  for (const auto& c : cols) s += std::string(" ") + c.header + " |";
  s += "\n|";
  for (size_t i = 0; i < cols.size(); ++i) s += i == 0 ? ":---|" : "---:|";
  s += "\n";
  for (size_t i = 0; i < r.quants.size(); ++i) {
    s += "|";
    for (size_t k = 0; k < cols.size(); ++k) {
      std::string v = cols[k].cell(r.quants[i]);
      if (k == 0 && report::is_recommended(r, i)) v = "**" + v + "** ★";
      if (k == 0 && report::on_pareto(r, i)) v += " ◆";
      s += ' ';
      s += cell(v);
      s += " |";
    }
    s += "\n";
  }
  s += "\n★ recommended · ◆ on the Pareto front of size vs mean KLD\n\n";

  s += report::category_markdown(r);

  s += "## Recommendation\n\n" + report::recommendation_text(r) + " Change the budget with `--kld-budget`.\n\n";

  s += "## Tensor types\n\n| type | file type | tensors by type | imatrix |\n|:---|:---|:---|:---|\n";
  for (const auto& q : r.quants) {
    std::string types;
    for (const auto& [t, n] : q.tensor_types) {
      if (!types.empty()) types += ", ";
      types += t + fmt(" ×%llu", static_cast<unsigned long long>(n));
    }
    s += "| " + cell(q.label) + " | " + q.file_type + " | " + types + " | " + (q.imatrix_used ? "yes" : "no") + " |\n";
  }

  s += "\n## Where the error comes from\n\n";
  s += "Relative RMS quantization error of the weights, importance-weighted where an importance matrix "
       "was available: sqrt(Σ w·(dq − x)² / Σ w·x²) over a tensor, and over a layer the element-weighted "
       "RMS of its tensors' values. In percent.\n\n";
  s += "| layer |";
  for (const auto& q : r.quants) {
    s += ' ';
    s += cell(q.label);
    s += " |";
  }
  s += "\n|:---|";
  for (size_t i = 0; i < r.quants.size(); ++i) s += "---:|";
  s += "\n";
  auto row = [&](const std::string& name, auto get) {
    s += "| " + name + " |";
    for (const auto& q : r.quants) s += fmt(" %.2f |", 100.0 * get(q));
    s += "\n";
  };
  row(r.tied_output ? "token_embd (= output)" : "token_embd", [](const QuantRow& q) { return q.embd_rel; });
  for (int il = 0; il < r.n_layers; ++il)
    row(fmt("blk.%d", il), [il](const QuantRow& q) { return il < static_cast<int>(q.layer_rel.size()) ? q.layer_rel[static_cast<size_t>(il)] : 0.0; });
  if (!r.tied_output) row("output", [](const QuantRow& q) { return q.output_rel; });

  s += "\nThe five tensors with the largest relative error in each quant:\n\n";
  for (const auto& q : r.quants) {
    std::vector<const TensorError*> v;
    for (const auto& t : q.tensors) v.push_back(&t);
    std::sort(v.begin(), v.end(), [](const TensorError* a, const TensorError* b) { return a->rel > b->rel; });
    s += "- **" + q.label + "**:";
    for (size_t k = 0; k < v.size() && k < 5; ++k)
      s += (k ? ", " : " ") + v[k]->name + " (" + v[k]->type + fmt(", %.2f%%)", 100.0 * v[k]->rel);
    s += "\n";
  }

  if (!r.prompts.empty()) {
    s += "\n## Generations\n\nGreedy decoding; prompts given through " + r.prompt_format + ".\n";
    for (size_t p = 0; p < r.prompts.size(); ++p) {
      s += "\n### Prompt " + std::to_string(p + 1) + ": " + cell(r.prompts[p]) + "\n\n";
      auto gen = [&](const std::string& who, const std::vector<Generation>& g) {
        if (p >= g.size()) return;
        s += "**" + who + "**" + fmt(" (%d tokens%s)\n\n", g[p].n_tokens, g[p].stopped ? "" : ", cut") + quote_block(g[p].text) + "\n";
      };
      gen("baseline", r.base_generations);
      for (const auto& q : r.quants) gen(q.label, q.generations);
    }
  }

  s += "\n## Run\n\n";
  s += fmt("- %d threads, batch %lld; %s in total\n", r.eval.n_threads, static_cast<long long>(r.eval.n_batch), report::seconds(r.seconds).c_str());
  s += fmt("- cache: %d builds done, %d reused; %lld quant chunks computed, %lld reused; %lld baseline chunks computed, %lld reused\n",
           r.cache.builds_done, r.cache.builds_reused, static_cast<long long>(r.cache.chunks_computed),
           static_cast<long long>(r.cache.chunks_reused), static_cast<long long>(r.cache.base_chunks_computed),
           static_cast<long long>(r.cache.base_chunks_reused));
  for (const auto& q : r.quants) s += "- " + q.label + ": `" + q.path + "`\n";
  return s;
}

}  // namespace smolq
