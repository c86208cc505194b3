// README.md of a release (release/card.h). Sections, in order: front matter, title and summary,
// files (size, bits per weight, KLD, PPL, top-1 agreement, sha256), the choice (recommendation
// with its rule, Pareto front), memory (from the estimate), how to run, mixed-precision recipes,
// how the files were made.
#include "release/card.h"

#include <algorithm>
#include <map>

#include "verify/report_writers.h"

namespace smolq {
namespace card {

std::string bytes(uint64_t n) { return std::to_string(n); }
std::string mib(uint64_t n) { return report::fmt("%.1f MiB", static_cast<double>(n) / (1024.0 * 1024.0)); }
std::string bpw(double v) { return report::fmt("%.4f", v); }
std::string kld(double v) { return report::fmt("%.6f", v); }
std::string ppl(double v) { return report::fmt("%.4f", v); }
std::string percent(double v) { return report::fmt("%.2f", v); }

}  // namespace card

namespace {

using report::fmt;

const ReleaseFile* find_kind(const ReleaseResult& r, const std::string& kind) {
  for (const auto& f : r.files)
    if (f.kind == kind) return &f;
  return nullptr;
}
const ReleaseFile* file_of_quant(const ReleaseResult& r, size_t i) {
  for (const auto& f : r.files)
    if (f.kind == "quant" && f.quant && *f.quant == i) return &f;
  return nullptr;
}
const ReleaseFile* recipe_for(const ReleaseResult& r, const std::string& name) {
  for (const auto& f : r.files)
    if (f.kind == "recipe" && f.recipe_for == name) return &f;
  return nullptr;
}
std::string link(const std::string& name) { return "[`" + name + "`](" + name + ")"; }
std::string ctx_label(uint64_t c) { return c % 1024 == 0 ? std::to_string(c / 1024) + "k" : std::to_string(c); }

std::string summary(const ReleaseResult& r, const CardFacts& f) {
  const SweepResult& s = r.sweep;
  std::string o = "# " + f.model_name + " GGUF\n\n";
  o += "GGUF files of ";
  o += f.base_model.empty() ? "`" + f.model_name + "`" : "[" + f.base_model + "](https://huggingface.co/" + f.base_model + ")";
  o += " for llama.cpp, each measured against the original model on the same text: mean KL divergence of the "
       "next-token distributions, perplexity and how often the most likely next token is the same (top-1). "
       "Sizes and bits per weight are those of the files themselves. Made with smolq " SMOLQ_VERSION
       "; every number below is in `report.json`, and `report.html` plots them.\n\n";
  o += fmt("The original (%s) has a perplexity of %s ± %s on the evaluation text.\n\n", s.model_desc.c_str(),
           card::ppl(s.base_ppl).c_str(), card::ppl(s.base_ppl_unc).c_str());
  return o;
}

std::string files_table(const ReleaseResult& r, const CardFacts& facts) {
  const SweepResult& s = r.sweep;
  std::string o = "## Files\n\n";
  o += "| file | type | bytes | size | bits/weight | mean KLD | PPL | top-1 % | |\n";
  o += "|---|---|---:|---:|---:|---:|---:|---:|---|\n";
  if (const ReleaseFile* full = find_kind(r, "full"))
    o += "| " + link(full->name) + " | " + (facts.full_type ? std::string(file_type_info(*facts.full_type).name) : "") + " | " + card::bytes(full->size) + " | " + card::mib(full->size) + " | " + card::bpw(8.0 * static_cast<double>(full->size) / static_cast<double>(s.n_params)) +
         " (file) | | | | full precision |\n";
  for (size_t i = 0; i < s.quants.size(); ++i) {
    const QuantRow& q = s.quants[i];
    const ReleaseFile* f = file_of_quant(r, i);
    if (!f) continue;
    std::string mark;
    if (report::is_recommended(s, i)) mark = "**recommended**";
    if (report::on_pareto(s, i)) mark += std::string(mark.empty() ? "" : ", ") + "Pareto";
    o += "| " + link(f->name) + " | " + q.label + " | " + card::bytes(q.file_size) + " | " + card::mib(q.file_size) + " | " +
         card::bpw(q.bpw) + " | " + card::kld(q.kld.kld.value) + " | " + card::ppl(q.kld.ppl_q.value) + " ± " +
         card::ppl(q.kld.ppl_q.unc) + " | " + card::percent(100.0 * q.kld.same_top.value) + " | " + mark + " |\n";
  }
  o += "\nBits per weight: 8 × tensor bytes / weights, every tensor counted (for the full-precision file: 8 × file "
       "bytes / weights). A type's name is not its size: tensors whose rows do not fit the type's blocks take "
       "another format (on 576- and 960-wide models, most K-quant tensors fall back to 32-weight formats).\n\n";
  // The reports hold timings (they change with every run): their digests are in SHA256SUMS
  // only, so the card stays the same for the same inputs.
  o += "sha256 of the files (`SHA256SUMS` has these and the reports', for `sha256sum -c SHA256SUMS`):\n\n"
       "| file | sha256 |\n|---|---|\n";
  for (const auto& f : r.files)
    if (f.kind != "card" && f.kind != "report") o += "| `" + f.name + "` | `" + f.sha256 + "` |\n";
  return o + "\n";
}

std::string choice(const ReleaseResult& r) {
  const SweepResult& s = r.sweep;
  std::string o = "## Which file\n\n";
  if (s.recommended) {
    const ReleaseFile* f = file_of_quant(r, *s.recommended);
    const QuantRow& q = s.quants[*s.recommended];
    o += "**Recommended: `" + (f ? f->name : q.label) + "`** (" + q.label + ", " + card::mib(q.file_size) + ", mean KLD " +
         card::kld(q.kld.kld.value) + ").\n\n";
  } else {
    o += "**No file is recommended:** none is within the KLD budget; pick from the Pareto front below by size.\n\n";
  }
  o += "Rule: the smallest file whose mean KL divergence against the original is at most " + card::kld(s.kld_budget) +
       " nats (`--kld-budget`).\n\n";
  o += "Pareto front (no other file is both smaller and closer to the original), smallest first:\n\n";
  for (size_t p : s.pareto) {
    const ReleaseFile* f = file_of_quant(r, p);
    const QuantRow& q = s.quants[p];
    o += "- `" + (f ? f->name : q.label) + "`: " + card::mib(q.file_size) + ", mean KLD " + card::kld(q.kld.kld.value) + "\n";
  }
  return o + "\n";
}

// Files from the closest to the original to the farthest: the full-precision file, then by KLD.
std::vector<std::string> by_quality(const ReleaseResult& r) {
  std::vector<std::pair<double, std::string>> v;
  for (const auto& f : r.files) {
    if (f.kind == "full") v.emplace_back(-1.0, f.name);
    if (f.kind == "quant" && f.quant) v.emplace_back(r.sweep.quants[*f.quant].kld.kld.value, f.name);
  }
  std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (auto& [k, n] : v) out.push_back(n);
  return out;
}

std::string memory(const ReleaseResult& r) {
  std::string o = "## Memory\n\n";
  o += "What llama.cpp allocates to run each file (`smolq estimate`: weights + KV cache (f16) + compute buffer "
       "(micro-batch 512, flash attention off) + output buffer + fixed overhead), by context length:\n\n";
  o += "| file |";
  for (uint64_t c : r.contexts) o += " context " + ctx_label(c) + " |";
  o += "\n|---|";
  for (size_t i = 0; i < r.contexts.size(); ++i) o += "---:|";
  o += "\n";
  std::map<std::string, const ReleaseMemory*> mem;
  for (const auto& m : r.memory) mem[m.file] = &m;
  uint64_t lo = UINT64_MAX, hi = 0;
  for (const auto& name : by_quality(r)) {
    const ReleaseMemory* m = mem.count(name) ? mem[name] : nullptr;
    if (!m) continue;
    o += "| `" + name + "` |";
    for (uint64_t t : m->total) {
      o += " " + card::mib(t) + " |";
      lo = std::min(lo, t);
      hi = std::max(hi, t);
    }
    o += "\n";
  }
  if (r.memory.empty()) return o + "\n";
  // Budgets: powers of two from the one below the smallest total to the first that holds all.
  uint64_t b = 64ull << 20;
  while (b * 2 <= lo) b *= 2;
  o += "\nThe file closest to the original that fits a memory budget (— : none fits):\n\n| budget |";
  for (uint64_t c : r.contexts) o += " context " + ctx_label(c) + " |";
  o += "\n|---|";
  for (size_t i = 0; i < r.contexts.size(); ++i) o += "---|";
  o += "\n";
  for (;; b *= 2) {
    o += "| " + (b >= (1ull << 30) ? std::to_string(b >> 30) + " GiB" : std::to_string(b >> 20) + " MiB") + " |";
    for (size_t c = 0; c < r.contexts.size(); ++c) {
      std::string best = "—";
      for (const auto& name : by_quality(r))
        if (mem.count(name) && mem[name]->total[c] <= b) {
          best = "`" + name + "`";
          break;
        }
      o += " " + best + " |";
    }
    o += "\n";
    if (b >= hi) break;
  }
  return o + "\n";
}

std::string how_to_run(const ReleaseResult& r, const CardFacts& f) {
  std::string o = "## Run with llama.cpp\n\n```sh\n";
  const uint64_t ctx = f.max_ctx ? std::min<uint64_t>(f.max_ctx, 8192) : 4096;
  for (const auto& name : by_quality(r)) o += "llama-cli -m " + name + " -c " + std::to_string(ctx) + "\n";
  o += "```\n\nAs a server (OpenAI-compatible API on port 8080):\n\n```sh\n";
  std::string rec;
  if (r.sweep.recommended)
    if (const ReleaseFile* q = file_of_quant(r, *r.sweep.recommended)) rec = q->name;
  if (rec.empty() && !by_quality(r).empty()) rec = by_quality(r).front();
  o += "llama-server -m " + rec + " -c " + std::to_string(ctx) + " --port 8080\n```\n\n";
  return o;
}

std::string recipes(const ReleaseResult& r, const CardFacts& f) {
  std::string o;
  const ReleaseFile* imat = find_kind(r, "imatrix");
  const ReleaseFile* full = find_kind(r, "full");
  for (size_t i = 0; i < r.sweep.quants.size(); ++i) {
    const ReleaseFile* q = file_of_quant(r, i);
    const ReleaseFile* rec = q ? recipe_for(r, q->name) : nullptr;
    if (!rec) continue;
    if (o.empty())
      o = "## Mixed-precision files\n\nA `-target` file has the size of the standard file it is named after, with every "
          "tensor's type chosen by smolq from a measured sensitivity profile of the model (lowest predicted KL "
          "divergence within the size). Its recipe rebuilds the same types with stock llama.cpp:\n\n";
    const std::string label = r.sweep.quants[i].label;
    const std::string ftype = label.substr(0, label.find('@'));
    o += "```sh\nllama-quantize";
    if (imat) o += " --imatrix " + imat->name;
    o += " --tensor-type-file " + rec->name + " \\\n    " +
         (full ? full->name : f.model_name + "-F16.gguf") + " " + q->name + " " + ftype + "\n```\n\n";
  }
  if (!o.empty() && !find_kind(r, "full"))
    o += "(The F16 file is the checkpoint converted with llama.cpp's `convert_hf_to_gguf.py --outtype f16`; "
         "`smolq release --outtype f16` ships it.)\n\n";
  return o;
}

std::string provenance(const ReleaseResult& r, const CardFacts& f) {
  const SweepResult& s = r.sweep;
  std::string o = "## How these files were made\n\n";
  o += "- Tool: smolq " SMOLQ_VERSION " (`smolq release`), GGUF version 3.\n";
  o += "- Source: " + (f.base_model.empty() ? std::string("the checkpoint") : "`" + f.base_model + "`") + " (" + s.model_desc + ").\n";
  if (const ReleaseFile* im = find_kind(r, "imatrix"))
    o += "- Importance matrix `" + im->name + "`: " + s.imatrix_desc + ".\n";
  else
    o += "- No importance matrix.\n";
  o += fmt("- Evaluation: %s; %lld chunks of %lld tokens, the second half of each chunk scored (%lld positions per "
           "file), llama-perplexity's KL-divergence protocol, every file against the original's logits of the same "
           "chunk.\n",
           s.eval_desc.c_str(), static_cast<long long>(s.n_chunks), static_cast<long long>(s.eval.n_ctx),
           static_cast<long long>(s.positions));
  for (const auto& n : s.notes) o += "- Note: " + n + "\n";
  if (!f.license.empty())
    o += "- License: " + f.license + (f.license_file.empty() ? "" : " (`" + f.license_file + "`)") + ", as the original.\n";
  return o;
}

}  // namespace

MetaTree card_front_matter(const CardFacts& f) {
  MetaTree t;
  t.kind = MetaTree::Kind::Map;
  auto add = [&](const char* k, MetaTree v) { t.fields.emplace_back(k, std::move(v)); };
  if (!f.base_model.empty()) {
    add("base_model", meta_scalar(f.base_model));
    add("base_model_relation", meta_scalar("quantized"));
  }
  add("quantized_by", meta_scalar(f.quantized_by.empty() ? "smolq" : f.quantized_by));
  if (!f.license.empty()) add("license", meta_scalar(f.license));
  std::vector<std::string> tags{"gguf", "llama.cpp", "quantized", "smolq"};
  for (const auto& tag : f.tags)
    if (std::find(tags.begin(), tags.end(), tag) == tags.end()) tags.push_back(tag);
  add("tags", meta_list(tags));
  if (!f.languages.empty()) add("language", meta_list(f.languages));
  add("pipeline_tag", meta_scalar(f.pipeline_tag));
  add("library_name", meta_scalar("gguf"));
  return t;
}

std::string render_card(const ReleaseResult& r, const CardFacts& f) {
  return write_front_matter(card_front_matter(f)) + "\n" + summary(r, f) + files_table(r, f) + choice(r) + memory(r) +
         how_to_run(r, f) + recipes(r, f) + provenance(r, f);
}

}  // namespace smolq
