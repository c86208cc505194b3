#include "cli/eval_set_args.h"

#include <cstdio>

#include "formats/error.h"

namespace smolq::cli {

void add_verify_eval_set_options(po::options_description& opts) {
  opts.add_options()
      ("eval-set", po::value<std::string>(), "evaluate every category of this evaluation set (a folder with evalset.json; 'default': the bundled set) instead of -f; the report gains a category x quant table")
      ("max-ctx", po::value<int64_t>(), "with --eval-set: at most this many tokens per chunk in every category")
      ("budget-all-categories", "with --eval-set: the recommended quant's mean KLD must be within --kld-budget in every category (the worst one), not only over all positions");
}

void apply_verify_eval_set_options(const po::variables_map& vm, SweepOptions& o) {
  if (!vm.count("eval-set")) {
    if (vm.count("max-ctx")) throw UsageError("--max-ctx caps the categories of --eval-set");
    if (vm.count("budget-all-categories")) throw UsageError("--budget-all-categories needs --eval-set");
    return;
  }
  if (vm.count("file")) throw UsageError("-f and --eval-set are exclusive: give one text or one evaluation set");
  o.eval_set = read_eval_set(vm["eval-set"].as<std::string>());
  o.eval_text.clear();
  if (vm.count("max-ctx")) {
    o.max_ctx = vm["max-ctx"].as<int64_t>();
    if (o.max_ctx < 16) throw UsageError("--max-ctx must be at least 16");
  }
  // --chunks caps the categories only when given: by default each category's own count.
  if (vm["chunks"].defaulted()) o.eval.n_chunks = -1;
  o.budget_every_category = vm.count("budget-all-categories") > 0;
}

void add_imatrix_eval_set_option(po::options_description& opts) {
  opts.add_options()
      ("eval-set", po::value<std::string>(), "collect over every category of this evaluation set ('default': the bundled set): each category's calibration text (\"calib\"), through the chat template where the category asks for it");
}

EvalTokens imatrix_input_tokens(const po::variables_map& vm, const Model& model, int64_t n_ctx) {
  if (!vm.count("eval-set")) {
    return vm.count("tokens") ? read_token_ids(model, vm["tokens"].as<std::string>())
                              : tokenize_text_file(model, vm["file"].as<std::string>(), vm.count("parse-special") > 0);
  }
  if (vm.count("file") || vm.count("tokens")) throw UsageError("--eval-set and -f / --tokens are exclusive");
  const EvalSet set = read_eval_set(vm["eval-set"].as<std::string>());
  auto tok = model_tokenizer(model);
  if (!tok) throw Error(model.path() + " has no tokenizer: --eval-set needs the model's tokenizer");
  std::string why;
  const std::string tpl = model_chat_template(model, why);
  EvalTokens t;
  t.add_bos = tok->add_bos();
  t.bos_id = tok->bos_id();
  t.source = set.manifest;
  std::vector<std::vector<int32_t>> per_category;
  for (const EvalCategory& cat : set.categories) {
    CategoryTokens ct = tokenize_category(model, *tok, tpl, cat, CategoryText::kCalib);
    const size_t whole = ct.ids.size() / static_cast<size_t>(n_ctx);
    std::fprintf(stderr, "eval set %s: category %s: %zu calibration tokens, %zu whole chunks%s%s\n", set.name.c_str(),
                 cat.name.c_str(), ct.ids.size(), whole, ct.note.empty() ? "" : "; ", ct.note.c_str());
    per_category.push_back(std::move(ct.ids));
  }
  // Round-robin over the categories: --chunks N then samples every one of them.
  t.ids = interleave_chunks(per_category, n_ctx);
  return t;
}

}  // namespace smolq::cli
