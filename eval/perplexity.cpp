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

int chunks_per_pass(const Model& m, const EvalOptions& o, bool observed) {
  if (observed || o.n_batch < o.n_ctx) return 1;
  if (o.chunks_per_pass > 0) return o.chunks_per_pass;
  const ModelConfig& c = m.config();
  // Per chunk: its logits, K/V caches and the widest activations (gate and up).
  const double per_chunk = 4.0 * static_cast<double>(o.n_ctx) *
                           (static_cast<double>(c.n_vocab) / 2 + 2.0 * c.n_layer * c.kv_dim() + 2.0 * c.n_ff);
  constexpr double kBudget = 256.0 * (1 << 20);
  return static_cast<int>(std::clamp(kBudget / per_chunk, 1.0, 4.0));
}

ChunkRunner::ChunkRunner(const Model& m, const EvalOptions& o, int max_chunks)
    : o_(o), n_vocab_(static_cast<int64_t>(m.config().n_vocab)), max_chunks_(std::max(1, max_chunks)),
      fwd_(m, o.n_ctx, std::min(o.n_batch, o.n_ctx), o.n_threads, max_chunks_) {}

void ChunkRunner::run_many(std::span<const int32_t> chunks, int k, int64_t first, std::span<float> out) {
  const size_t per_out = static_cast<size_t>((o_.n_ctx - first) * n_vocab_);
  if (k == 1 || max_chunks_ == 1) {
    for (int i = 0; i < k; ++i)
      run(chunks.subspan(static_cast<size_t>(i * o_.n_ctx), static_cast<size_t>(o_.n_ctx)), first,
          out.subspan(i * per_out, per_out));
    return;
  }
  std::vector<int32_t> toks(chunks.begin(), chunks.end());
  if (o_.add_bos)
    for (int i = 0; i < k; ++i) toks[static_cast<size_t>(i * o_.n_ctx)] = o_.bos_id;
  fwd_.eval_sequences(toks, k, first, out.subspan(0, k * per_out));
}

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
  const int per_pass = chunks_per_pass(model, o, observer != nullptr);
  ChunkRunner runner(model, o, per_pass);
  const size_t per_chunk = static_cast<size_t>((o.n_ctx - first) * V);
  std::vector<float> logits(per_pass * per_chunk);
  const auto t0 = Clock::now();
  for (int64_t c0 = 0; c0 < res.n_chunks; c0 += per_pass) {
    const int k = static_cast<int>(std::min<int64_t>(per_pass, res.n_chunks - c0));
    const auto chunks = tokens.subspan(static_cast<size_t>(c0 * o.n_ctx), static_cast<size_t>(k * o.n_ctx));
    if (observer) runner.run(chunks, first, logits, observer);
    else runner.run_many(chunks, k, first, logits);
    for (int i = 0; i < k; ++i) {
      const int64_t c = c0 + i;
      const auto chunk = chunks.subspan(static_cast<size_t>(i * o.n_ctx), static_cast<size_t>(o.n_ctx));
      // Row j of the chunk's logits is position first + j and predicts token first + j + 1.
      for (int64_t j = 0; j + first + 1 < o.n_ctx; ++j) {
        const std::span<const float> row(logits.data() + i * per_chunk + j * V, static_cast<size_t>(V));
        res.stats.add(score_token(row, chunk[first + j + 1]).nll);
      }
      if (o.score) res.running_ppl.push_back(res.stats.ppl());
      res.tokens_evaluated += o.n_ctx;
      res.seconds = seconds_since(t0);
      if (on_chunk) on_chunk({c + 1, res.n_chunks, res.tokens_evaluated, res.n_chunks * o.n_ctx, res.seconds}, res.stats);
    }
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
  // A pass of chunks per model; the caches of both models are alive together.
  const int per_pass = std::min(chunks_per_pass(base, o, false), chunks_per_pass(quant, o, false));
  ChunkRunner run_base(base, o, per_pass), run_quant(quant, o, per_pass);
  const size_t per_chunk = static_cast<size_t>((o.n_ctx - first) * V);
  std::vector<float> lb(per_pass * per_chunk), lq(lb.size());
  const auto t0 = Clock::now();
  for (int64_t c0 = 0; c0 < res.n_chunks; c0 += per_pass) {
    const int k = static_cast<int>(std::min<int64_t>(per_pass, res.n_chunks - c0));
    const auto chunks = tokens.subspan(static_cast<size_t>(c0 * o.n_ctx), static_cast<size_t>(k * o.n_ctx));
    run_base.run_many(chunks, k, first, lb);
    run_quant.run_many(chunks, k, first, lq);
    for (int i = 0; i < k; ++i) {
      const int64_t c = c0 + i;
      const auto chunk = chunks.subspan(static_cast<size_t>(i * o.n_ctx), static_cast<size_t>(o.n_ctx));
      for (int64_t j = 0; j + first + 1 < o.n_ctx; ++j) {
        const size_t at = i * per_chunk + static_cast<size_t>(j * V);
        const std::span<const float> b(lb.data() + at, static_cast<size_t>(V)), q(lq.data() + at, static_cast<size_t>(V));
        res.stats.add(compare_position(b, q, chunk[first + j + 1]), V);
      }
      res.tokens_evaluated += o.n_ctx;
      res.seconds = seconds_since(t0);
      if (on_chunk) on_chunk({c + 1, res.n_chunks, res.tokens_evaluated, res.n_chunks * o.n_ctx, res.seconds}, res.stats);
    }
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
