// The sweep over an evaluation set (`smolq verify --eval-set`, eval/eval_set.h): each category
// becomes one token stream with its own context and chunk count. A category evaluated with the
// same tokens and context as a `-f` run shares that run's cache records (the keys hash the
// tokens and the protocol, not where they came from), and its statistics are the same numbers.
#include <filesystem>

#include "eval/perplexity_input.h"
#include "formats/content_hash.h"
#include "formats/error.h"
#include "verify/sweep_internal.h"

namespace smolq {

double worst_category_kld(const QuantRow& q, int* which) {
  if (which) *which = -1;
  if (q.category_kld.empty()) return q.kld.kld.value;
  double worst = q.category_kld[0].kld.value;
  int at = 0;
  for (size_t i = 1; i < q.category_kld.size(); ++i)
    if (q.category_kld[i].kld.value > worst) worst = q.category_kld[i].kld.value, at = static_cast<int>(i);
  if (which) *which = at;
  return worst;
}

namespace sweep {

Stream text_stream(const Context& c) {
  Stream s;
  s.tokens = c.eval_tokens;
  s.tokens_hash = c.eval_tokens_hash;
  s.eval = c.eval;
  s.n_chunks = c.res.n_chunks;
  return s;
}

void prepare_categories(Context& c, bool needs_calib, std::vector<int32_t>& calib, std::string& calib_desc) {
  const EvalSet& set = *c.o.eval_set;
  std::string why;
  const std::string tpl = c.o.chat_template.empty() ? model_chat_template(*c.base, why) : c.o.chat_template;
  const bool own_calib = needs_calib && c.o.calib_text.empty();
  int64_t n_chunks = 0, positions = 0, tokens = 0;
  std::vector<std::vector<int32_t>> calib_streams;
  for (const EvalCategory& cat : set.categories) {
    CategoryTokens ct = tokenize_category(*c.base, *c.tokenizer, tpl, cat, CategoryText::kEval);
    Stream s;
    s.name = cat.name;
    s.eval = c.eval;
    s.eval.add_bos = ct.add_bos;
    s.eval.bos_id = ct.bos_id;
    s.eval.score = true;
    s.eval.n_ctx = ct.n_ctx;
    if (c.o.max_ctx > 0 && s.eval.n_ctx > c.o.max_ctx) s.eval.n_ctx = c.o.max_ctx;
    // The category's own chunk count, capped by --chunks.
    s.eval.n_chunks = cat.n_chunks;
    if (c.o.eval.n_chunks > 0 && (s.eval.n_chunks < 0 || s.eval.n_chunks > c.o.eval.n_chunks)) s.eval.n_chunks = c.o.eval.n_chunks;
    for (size_t i = 0; i < ct.ids.size(); ++i)
      if (ct.ids[i] < 0 || static_cast<uint64_t>(ct.ids[i]) >= c.base->config().n_vocab)
        throw Error("token " + std::to_string(i) + " of category '" + cat.name + "' is outside the model's vocabulary");
    try {
      s.n_chunks = plan_chunks(static_cast<int64_t>(ct.ids.size()), s.eval);
    } catch (const Error& e) {
      throw Error("category '" + cat.name + "' of " + set.manifest + ": " + e.what());
    }
    s.tokens = std::move(ct.ids);
    s.tokens_hash = ContentHasher().add_bytes(s.tokens.data(), s.tokens.size() * sizeof(int32_t)).digest();

    CategoryResult r;
    r.name = cat.name;
    r.description = cat.description;
    r.chat = cat.chat;
    r.templated = ct.templated;
    r.n_ctx = s.eval.n_ctx;
    r.tokens = static_cast<int64_t>(s.tokens.size());
    r.n_chunks = s.n_chunks;
    r.positions = s.n_chunks * (s.eval.n_ctx - s.eval.n_ctx / 2 - 1);
    r.note = ct.note;
    if (!ct.note.empty()) c.res.notes.push_back("category " + cat.name + ": " + ct.note);
    c.log("category " + cat.name + ": " + std::to_string(r.tokens) + " tokens, " + std::to_string(r.n_chunks) + " chunks of " +
          std::to_string(r.n_ctx) + (cat.chat ? (ct.templated ? ", chat template" : ", chat as plain text") : ""));
    n_chunks += r.n_chunks;
    positions += r.positions;
    tokens += r.tokens;
    c.res.categories.push_back(std::move(r));
    c.streams.push_back(std::move(s));

    if (own_calib) {
      if (cat.calib_files.empty())
        throw UsageError("category '" + cat.name + "' of " + set.manifest +
                         " has no calibration text (\"calib\"): give --calib for --imatrix auto / NAME@target");
      calib_streams.push_back(tokenize_category(*c.base, *c.tokenizer, tpl, cat, CategoryText::kCalib).ids);
    }
  }
  // Round-robin whole chunks: --calib-chunks N then samples every category.
  if (own_calib) calib = interleave_chunks(calib_streams, c.eval.n_ctx);
  if (own_calib) calib_desc = "the calibration texts of the " + std::to_string(set.categories.size()) + " categories of " +
                              set.name + " (" + std::to_string(calib.size()) + " tokens)";
  c.res.eval_set_name = set.name;
  c.res.eval_text = set.manifest;
  c.res.eval_desc = std::to_string(set.categories.size()) + " categories of the evaluation set " + set.name + " (" +
                    set.manifest + ")";
  c.res.eval_tokens = tokens;
  c.res.n_chunks = n_chunks;
  c.res.positions = positions;
}

}  // namespace sweep
}  // namespace smolq
