// `--eval-set DIR` for `smolq verify` and `smolq imatrix` (eval/eval_set.h, docs/verify.md):
// the options and how they fill each command's settings. Kept out of the commands' files so
// the two commands share one spelling and one reading of it.
#pragma once
#include <optional>

#include "cli/options.h"
#include "eval/eval_set.h"
#include "eval/perplexity_input.h"
#include "verify/sweep.h"

namespace smolq::cli {

// verify: --eval-set, --max-ctx, --budget-all-categories.
void add_verify_eval_set_options(po::options_description& opts);
// Reads them into `o` (the set itself, the context cap, the per-category budget). With
// --eval-set, --chunks caps each category's chunks only when given; -f is refused.
void apply_verify_eval_set_options(const po::variables_map& vm, SweepOptions& o);

// imatrix: --eval-set.
void add_imatrix_eval_set_option(po::options_description& opts);
// The calibration tokens of an imatrix run: with --eval-set, every category's calibration text
// ("calib"; through the chat template where the category asks for it), each cut to whole
// chunks of `n_ctx` tokens so no chunk mixes two categories; else --tokens or the -f text.
EvalTokens imatrix_input_tokens(const po::variables_map& vm, const Model& model, int64_t n_ctx);

}  // namespace smolq::cli
