// `smolq verify`'s sweep: orchestration of the steps in sweep_build.cpp and sweep_eval.cpp,
// prompts through the chat template, and the choice (Pareto front, recommendation).
#include "verify/sweep.h"

#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "formats/error.h"
#include "formats/gguf.h"
#include "formats/mapped_file.h"
#include "eval/perplexity_input.h"
#include "verify/sweep_cache.h"
#include "verify/sweep_internal.h"

namespace smolq {
namespace fs = std::filesystem;

namespace sweep {

std::string safe_label(const std::string& label) {
  std::string s;
  for (char ch : label) s += (std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.') ? ch : '_';
  return s.empty() ? "quant" : s;
}

namespace {

Tokenizer load_tokenizer(const Model& m) {
  if (auto t = model_tokenizer(m)) return std::move(*t);
  throw Error(m.path() + " has no tokenizer (no tokenizer metadata / tokenizer.json): the sweep needs the model's tokenizer");
}

struct PromptSetup {
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> ids;
  std::string format;
};

PromptSetup setup_prompts(const SweepOptions& o, const Model& m, const Tokenizer& tok) {
  PromptSetup p;
  std::string why;
  const std::string source = o.chat_template.empty() ? model_chat_template(m, why) : o.chat_template;
  std::optional<ChatTemplate> tpl;
  if (!source.empty()) {
    try {
      tpl.emplace(source);
      p.format = o.chat_template.empty() ? "the model's chat template" : "the given chat template";
    } catch (const TemplateError& e) {
      why = std::string("its chat template is outside the supported subset (") + e.what() + ")";
    }
  }
  const std::string bos = tok.bos_id() >= 0 ? tok.token_text(tok.bos_id()) : "";
  const std::string eos = tok.eos_id() >= 0 ? tok.token_text(tok.eos_id()) : "";
  for (const auto& conv : o.prompts) {
    std::string text;
    bool templated = false;
    if (tpl) {
      try {
        text = tpl->apply(conv, /*add_generation_prompt=*/true, bos, eos);
        templated = true;
      } catch (const TemplateError& e) {
        why = std::string("rendering the chat template failed (") + e.what() + ")";
        tpl.reset();
      }
    }
    if (templated) {
      // As HF's apply_chat_template(tokenize=True): the template places special tokens itself.
      p.ids.push_back(tok.encode(text, /*add_special=*/false, /*parse_special=*/true));
    } else {
      text.clear();
      for (const auto& msg : conv) text += (text.empty() ? "" : "\n\n") + msg.content;
      p.ids.push_back(tok.encode(text, /*add_special=*/true, /*parse_special=*/false));
    }
    if (p.ids.back().empty()) throw UsageError("a prompt tokenizes to nothing");
    p.texts.push_back(std::move(text));
  }
  if (!tpl) p.format = "plain prompts: " + (why.empty() ? std::string("no chat template") : why);
  return p;
}

// End-of-turn and end-of-text tokens: EOS and every control token (<|im_end|>, <|endoftext|>...).
std::vector<int32_t> stop_tokens(const Tokenizer& tok) {
  std::vector<int32_t> v;
  if (tok.eos_id() >= 0) v.push_back(tok.eos_id());
  for (size_t id = 0; id < tok.vocab_size(); ++id)
    if (tok.token_type(static_cast<int32_t>(id)) == TokenType::kControl && static_cast<int32_t>(id) != tok.eos_id())
      v.push_back(static_cast<int32_t>(id));
  return v;
}

// The -f text as the one evaluation stream; without a separate calibration text and when one
// is needed, its first half calibrates and only the second half is evaluated.
void prepare_text(Context& c, bool needs_calib, bool has_targets, std::vector<int32_t>& calib, std::string& calib_desc) {
  const EvalTokens toks = tokenize_text_file(*c.base, c.o.eval_text, /*parse_special=*/false);
  c.eval = c.o.eval;
  c.eval.add_bos = toks.add_bos;
  c.eval.bos_id = toks.bos_id;
  c.eval.score = true;
  const std::string text_name = fs::path(c.o.eval_text).filename().string();
  c.res.eval_text = c.o.eval_text;
  if (needs_calib && c.o.calib_text.empty()) {
    // No separate calibration text: calibrate on the first half, evaluate on the second.
    const size_t half = toks.ids.size() / 2;
    calib.assign(toks.ids.begin(), toks.ids.begin() + static_cast<ptrdiff_t>(half));
    c.eval_tokens.assign(toks.ids.begin() + static_cast<ptrdiff_t>(half), toks.ids.end());
    calib_desc = "the first half of " + text_name + " (tokens 0.." + std::to_string(half) + ")";
    c.res.eval_desc = "the second half of " + text_name + " (tokens " + std::to_string(half) + ".." +
                    std::to_string(toks.ids.size()) + "; the first half calibrated the " +
                    (c.o.imatrix == ImatrixMode::kAuto ? (has_targets ? "imatrix and the target profile" : "imatrix")
                                                     : has_targets ? "target profile" : "+opt rows") + ")";
  } else {
    c.eval_tokens = toks.ids;
    c.res.eval_desc = text_name + " (" + std::to_string(toks.ids.size()) + " tokens)";
    if (needs_calib) {
      calib = tokenize_text_file(*c.base, c.o.calib_text, false).ids;
      calib_desc = fs::path(c.o.calib_text).filename().string() + " (" + std::to_string(calib.size()) + " tokens)";
    }
  }
  for (size_t i = 0; i < c.eval_tokens.size(); ++i)
    if (c.eval_tokens[i] < 0 || static_cast<uint64_t>(c.eval_tokens[i]) >= c.base->config().n_vocab)
      throw Error("token " + std::to_string(i) + " of the evaluation text is outside the model's vocabulary");
  c.eval_tokens_hash = ContentHasher().add_bytes(c.eval_tokens.data(), c.eval_tokens.size() * sizeof(int32_t)).digest();
  c.res.eval = c.eval;
  c.res.eval_tokens = static_cast<int64_t>(c.eval_tokens.size());
  c.res.n_chunks = plan_chunks(c.res.eval_tokens, c.eval);
  c.res.positions = c.res.n_chunks * (c.eval.n_ctx - c.eval.n_ctx / 2 - 1);
  c.log("evaluation: " + std::to_string(c.res.n_chunks) + " chunks of " + std::to_string(c.eval.n_ctx) + " tokens from " +
        c.res.eval_desc + ", " + std::to_string(c.res.positions) + " scored positions per model");
  c.streams.push_back(sweep::text_stream(c));
}

}  // namespace
}  // namespace sweep

std::vector<std::string> render_prompts(const SweepOptions& o, std::string& format) {
  auto m = Model::open(o.model);
  const Tokenizer tok = sweep::load_tokenizer(*m);
  sweep::PromptSetup p = sweep::setup_prompts(o, *m, tok);
  format = p.format;
  return p.texts;
}

std::vector<size_t> pareto_front(const std::vector<double>& size, const std::vector<double>& kld) {
  std::vector<size_t> idx(size.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return size[a] != size[b] ? size[a] < size[b] : kld[a] < kld[b]; });
  std::vector<size_t> front;
  double best = 0;
  for (size_t i : idx) {  // by size: a point is on the front when it beats every smaller one
    if (front.empty() || kld[i] < best) {
      front.push_back(i);
      best = kld[i];
    }
  }
  return front;
}

std::optional<size_t> smallest_within(const std::vector<double>& size, const std::vector<double>& kld, double budget) {
  std::optional<size_t> best;
  for (size_t i = 0; i < size.size(); ++i)
    if (kld[i] <= budget && (!best || size[i] < size[*best] || (size[i] == size[*best] && kld[i] < kld[*best]))) best = i;
  return best;
}

std::vector<FileType> sweep_all_types(bool have_imatrix) {
  std::vector<FileType> v;
  for (const auto& f : all_file_types()) {
    switch (f.id) {
      case FileType::kAllF32:
      case FileType::kF16:
      case FileType::kBF16:
      case FileType::kMXFP4_MOE:
      case FileType::kTQ1_0:
      case FileType::kTQ2_0: continue;
      default: break;
    }
    if (f.requires_imatrix && !have_imatrix) continue;
    v.push_back(f.id);
  }
  return v;
}

SweepResult run_sweep(const SweepOptions& o, const SweepEvents& ev) {
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  if (o.quants.empty()) throw UsageError("nothing to compare: give --types or quantized GGUF files");
  if (o.eval_text.empty() && !o.eval_set) throw UsageError("give the evaluation text with -f (or --eval-set)");
  SweepResult res;
  sweep::Context c(o, ev, res);
  fs::create_directories(c.cache_dir);
  fs::create_directories(c.quant_dir);

  // 1. the baseline and its tokenizer
  c.base = Model::open(o.model);
  res.model = o.model;
  res.model_desc = c.base->describe();
  res.model_bytes = c.base->weight_bytes();
  res.n_params = c.base->config().n_params();
  res.n_layers = static_cast<int>(c.base->n_layers());
  res.tied_output = c.base->tied_output();
  c.log("baseline: " + o.model + "\n  " + res.model_desc);
  c.log("fingerprint of the baseline (cache key)");
  c.base_fp = fingerprint_model(o.model);
  c.tokenizer = sweep::load_tokenizer(*c.base);

  // 2. the evaluation text or set (and the calibration text of an automatic imatrix)
  bool has_targets = false;
  bool has_opt = false;  // TYPE+opt rows calibrate on the same tokens (docs/optimize.md)
  for (const auto& q : o.quants) has_targets = has_targets || q.at_target, has_opt = has_opt || q.optimize;
  const bool needs_calib = o.imatrix == ImatrixMode::kAuto || has_targets || has_opt;
  std::vector<int32_t> calib;
  std::string calib_desc;
  if (o.eval_set) {
    c.eval = o.eval;
    std::tie(c.eval.add_bos, c.eval.bos_id) = model_bos(*c.base);
    c.eval.score = true;
    sweep::prepare_categories(c, needs_calib, calib, calib_desc);
    if (needs_calib && !o.calib_text.empty()) {
      calib = tokenize_text_file(*c.base, o.calib_text, false).ids;
      calib_desc = fs::path(o.calib_text).filename().string() + " (" + std::to_string(calib.size()) + " tokens)";
    }
    res.eval = c.eval;
    c.log("evaluation: " + res.eval_desc + ", " + std::to_string(res.n_chunks) + " chunks, " +
          std::to_string(res.positions) + " scored positions per model");
  } else {
    sweep::prepare_text(c, needs_calib, has_targets, calib, calib_desc);
  }

  c.calib_tokens = calib;
  c.calib_desc = calib_desc;
  c.calib_fp = ContentHasher().add("calib").add_bytes(calib.data(), calib.size() * sizeof(int32_t)).digest();

  // 3. importance matrix
  sweep::prepare_imatrix(c, calib, calib_desc);

  // 4. prompts and the baseline's generations
  if (!o.prompts.empty() && o.n_generate > 0) {
    sweep::PromptSetup p = sweep::setup_prompts(o, *c.base, *c.tokenizer);
    res.prompt_format = p.format;
    res.prompt_texts = p.texts;
    c.prompt_ids = std::move(p.ids);
    c.stop_ids = sweep::stop_tokens(*c.tokenizer);
    for (const auto& conv : o.prompts) res.prompts.push_back(conv.empty() ? "" : conv.back().content);
    c.log("generations: " + std::to_string(c.prompt_ids.size()) + " prompts, " + std::to_string(o.n_generate) +
          " tokens each, " + res.prompt_format);
    res.base_generations = sweep::generate_all(c, *c.base, c.base_fp, "baseline");
  }

  // 5. quants: build (or reuse), then their per-tensor error
  std::vector<sweep::Target> targets;
  for (const auto& spec : o.quants) {
    try {
      targets.push_back(sweep::prepare_quant(c, spec));
    } catch (const UsageError& e) {
      if (!spec.optional) throw;
      res.notes.push_back(spec.label + " skipped: " + e.what());
      c.log("skip " + spec.label + ": " + e.what());
      continue;
    }
    sweep::measure_tensor_errors(c, targets.back());
  }
  if (targets.empty()) throw UsageError("no quant could be built (see the notes above)");

  // 6. evaluation
  sweep::evaluate_targets(c, targets);
  res.base_ppl = targets.front().row.kld.ppl_base.value;
  res.base_ppl_unc = targets.front().row.kld.ppl_base.unc;
  for (size_t i = 0; i < res.categories.size() && i < targets.front().row.category_kld.size(); ++i) {
    res.categories[i].base_ppl = targets.front().row.category_kld[i].ppl_base.value;
    res.categories[i].base_ppl_unc = targets.front().row.category_kld[i].ppl_base.unc;
  }
  for (auto& t : targets) res.quants.push_back(std::move(t.row));
  std::stable_sort(res.quants.begin(), res.quants.end(),
                   [](const QuantRow& a, const QuantRow& b) { return a.file_size > b.file_size; });

  // 7. the choice
  std::vector<double> size, kld;
  for (const auto& q : res.quants) {
    size.push_back(static_cast<double>(q.file_size));
    kld.push_back(q.kld.kld.value);
  }
  res.pareto = pareto_front(size, kld);
  res.kld_budget = o.kld_budget;
  res.budget_every_category = o.budget_every_category && !res.categories.empty();
  if (res.budget_every_category)  // the budget must hold for every category: the worst one's KLD
    for (size_t i = 0; i < res.quants.size(); ++i) kld[i] = worst_category_kld(res.quants[i]);
  res.recommended = smallest_within(size, kld, o.kld_budget);
  res.seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  return res;
}

}  // namespace smolq
