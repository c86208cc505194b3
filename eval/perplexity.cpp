#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>

#include "formats/error.h"
#include "formats/interrupt.h"
#include "eval/forward.h"

namespace smolq {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void check_tokens(std::span<const int32_t> tokens, const Model& m) {
  const int64_t V = static_cast<int64_t>(m.config().n_vocab);
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= V)
      throw Error("token " + std::to_string(i) + " of the text has id " + std::to_string(tokens[i]) +
                  ", outside the model's vocabulary of " + std::to_string(V));
}

}  // namespace

ChunkRunner::ChunkRunner(const Model& m, const EvalOptions& o)
    : o_(o), n_vocab_(static_cast<int64_t>(m.config().n_vocab)),
      fwd_(m, o.n_ctx, std::min(o.n_batch, o.n_ctx), o.n_threads) {}

void ChunkRunner::run(std::span<const int32_t> chunk, int64_t first, std::span<float> out, ActivationObserver* obs) {
  std::vector<int32_t> toks(chunk.begin(), chunk.end());
  if (o_.add_bos) toks[0] = o_.bos_id;
  fwd_.reset();
  const int64_t n = static_cast<int64_t>(toks.size());
  const int64_t B = std::min(o_.n_batch, o_.n_ctx);
  for (int64_t b0 = 0; b0 < n; b0 += B) {
    const int64_t b1 = std::min(n, b0 + B);
    const int64_t out0 = std::clamp(first, b0, b1);  // first position of this batch with logits
    std::span<float> dst = out.subspan(static_cast<size_t>((out0 - first) * n_vocab_),
                                       static_cast<size_t>((b1 - out0) * n_vocab_));
    fwd_.eval(std::span<const int32_t>(toks).subspan(b0, b1 - b0), out0 - b0, dst, obs);
  }
}

int64_t plan_chunks(int64_t n_tokens, const EvalOptions& o) {
  if (o.n_ctx < 4) throw UsageError("--ctx must be at least 4");
  if (o.n_batch < 1) throw UsageError("--batch must be at least 1");
  if (n_tokens < 2 * o.n_ctx)
    throw Error("the text has " + std::to_string(n_tokens) + " tokens; a context of " + std::to_string(o.n_ctx) +
                " needs at least " + std::to_string(2 * o.n_ctx));
  const int64_t n_max = n_tokens / o.n_ctx;
  return o.n_chunks < 0 ? n_max : std::min(o.n_chunks, n_max);
}

PerplexityResult run_perplexity(const Model& model, std::span<const int32_t> tokens, const EvalOptions& o,
                                const PerplexityCallback& on_chunk, ActivationObserver* observer) {
  check_tokens(tokens, model);
  PerplexityResult res;
  res.n_chunks = plan_chunks(static_cast<int64_t>(tokens.size()), o);
  const int64_t V = static_cast<int64_t>(model.config().n_vocab);
  // Without scoring no position needs logits: `first` moves past the end of the chunk.
  const int64_t first = o.score ? o.n_ctx / 2 : o.n_ctx;
  ChunkRunner runner(model, o);
  std::vector<float> logits(static_cast<size_t>((o.n_ctx - first) * V));
  const auto t0 = Clock::now();
  for (int64_t c = 0; c < res.n_chunks; ++c) {
    const auto chunk = tokens.subspan(static_cast<size_t>(c * o.n_ctx), static_cast<size_t>(o.n_ctx));
    runner.run(chunk, first, logits, observer);
    // Row j of `logits` is position first + j and predicts token first + j + 1.
    for (int64_t j = 0; j + first + 1 < o.n_ctx; ++j) {
      const std::span<const float> row(logits.data() + j * V, static_cast<size_t>(V));
      res.stats.add(score_token(row, chunk[first + j + 1]).nll);
    }
    if (o.score) res.running_ppl.push_back(res.stats.ppl());
    res.tokens_evaluated += o.n_ctx;
    res.seconds = seconds_since(t0);
    if (on_chunk) on_chunk({c + 1, res.n_chunks, res.tokens_evaluated, res.n_chunks * o.n_ctx, res.seconds}, res.stats);
    check_interrupted();
  }
  return res;
}

KldResult run_kl_divergence(const Model& base, const Model& quant, std::span<const int32_t> tokens,
                            const EvalOptions& o, const KldCallback& on_chunk) {
  if (base.config().n_vocab != quant.config().n_vocab)
    throw Error("the base model has " + std::to_string(base.config().n_vocab) + " tokens, the quantized model " +
                std::to_string(quant.config().n_vocab) + ": not the same vocabulary");
  check_tokens(tokens, base);
  KldResult res;
  res.n_chunks = plan_chunks(static_cast<int64_t>(tokens.size()), o);
  const int64_t V = static_cast<int64_t>(base.config().n_vocab);
  const int64_t first = o.n_ctx / 2;
  // One chunk of logits per model; the caches of both models are alive together.
  ChunkRunner run_base(base, o), run_quant(quant, o);
  std::vector<float> lb(static_cast<size_t>((o.n_ctx - first) * V)), lq(lb.size());
  const auto t0 = Clock::now();
  for (int64_t c = 0; c < res.n_chunks; ++c) {
    const auto chunk = tokens.subspan(static_cast<size_t>(c * o.n_ctx), static_cast<size_t>(o.n_ctx));
    run_base.run(chunk, first, lb, nullptr);
    run_quant.run(chunk, first, lq, nullptr);
    for (int64_t j = 0; j + first + 1 < o.n_ctx; ++j) {
      const std::span<const float> b(lb.data() + j * V, static_cast<size_t>(V)), q(lq.data() + j * V, static_cast<size_t>(V));
      res.stats.add(compare_position(b, q, chunk[first + j + 1]), V);
    }
    res.tokens_evaluated += o.n_ctx;
    res.seconds = seconds_since(t0);
    if (on_chunk) on_chunk({c + 1, res.n_chunks, res.tokens_evaluated, res.n_chunks * o.n_ctx, res.seconds}, res.stats);
    check_interrupted();
  }
  return res;
}

std::vector<float> chunk_logits(const Model& model, std::span<const int32_t> tokens, const EvalOptions& o,
                                int64_t chunk) {
  check_tokens(tokens, model);
  const int64_t V = static_cast<int64_t>(model.config().n_vocab);
  if (chunk < 0 || (chunk + 1) * o.n_ctx > static_cast<int64_t>(tokens.size()))
    throw Error("chunk " + std::to_string(chunk) + " is beyond the end of the text");
  ChunkRunner runner(model, o);
  std::vector<float> logits(static_cast<size_t>(o.n_ctx * V));
  runner.run(tokens.subspan(static_cast<size_t>(chunk * o.n_ctx), static_cast<size_t>(o.n_ctx)), 0, logits, nullptr);
  return logits;
}

}  // namespace smolq
