#include "eval/imatrix.h"

#include <algorithm>

#include "formats/error.h"

namespace smolq {
namespace {

constexpr int64_t kColumnBlock = 64;  // columns per parallel task (one cache line of doubles x 8)

bool wanted(const std::string& name, bool process_output) {
  return name.rfind("blk.", 0) == 0 || (process_output && name == "output.weight");
}

}  // namespace

ImatrixCollector::ImatrixCollector(bool process_output, int n_threads)
    : process_output_(process_output), n_threads_(std::max(1, n_threads)) {}

void ImatrixCollector::observe(const WeightMatrix& w, const float* x, int64_t n_tokens) {
  if (n_tokens < kMinRows || !wanted(w.name, process_output_)) return;
  Entry& e = entries_[w.name];
  const int64_t K = static_cast<int64_t>(w.cols);
  if (e.sums.empty()) e.sums.assign(static_cast<size_t>(K), 0.0);
  if (static_cast<int64_t>(e.sums.size()) != K) throw Error("imatrix: inconsistent width for " + w.name);
  double* sums = e.sums.data();
  // Each column is summed over tokens in order by one task: the result does not depend on
  // the thread count.
#pragma omp parallel for schedule(static) num_threads(n_threads_)
  for (int64_t c0 = 0; c0 < K; c0 += kColumnBlock) {
    const int64_t c1 = std::min(K, c0 + kColumnBlock);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * K;
      for (int64_t c = c0; c < c1; ++c) sums[c] += static_cast<double>(xt[c]) * xt[c];
    }
  }
  e.count += n_tokens;
}

void ImatrixCollector::merge(const ImatrixData& d, int32_t chunk_size) { merge_imatrix(merged_, d, chunk_size); }

ImatrixData ImatrixCollector::data(const std::vector<std::string>& datasets, int32_t chunk_size) const {
  ImatrixData fresh;
  for (const auto& [name, e] : entries_) {
    ImatrixEntry& out = fresh.entries[name];
    out.sums.assign(e.sums.begin(), e.sums.end());
    out.counts = {e.count};
  }
  ImatrixData d = merged_;
  d.datasets.clear();
  // Dataset order as llama.cpp writes it: those of the --in-file inputs, then this run's.
  std::vector<std::string> all = merged_.datasets;
  all.insert(all.end(), datasets.begin(), datasets.end());
  fresh.datasets = {};
  merge_imatrix(d, fresh, chunk_size);
  d.datasets = std::move(all);
  return d;
}

int32_t ImatrixCollector::chunks_done(int32_t chunk_size) const {
  if (chunk_size <= 0) return 0;
  int64_t most = 0;
  for (const auto& [name, e] : entries_) {
    int64_t n = e.count;
    if (const ImatrixEntry* m = merged_.find(name))
      for (int64_t c : m->counts) n = std::max(n, e.count + c);
    most = std::max(most, n);
  }
  for (const auto& [name, m] : merged_.entries)
    for (int64_t c : m.counts) most = std::max(most, c);
  return static_cast<int32_t>(most / chunk_size);
}

void ImatrixCollector::set_checkpoints(ImatrixCheckpoints c) {
  if (c.save_every < 0 || c.output_every < 0) throw UsageError("--save-frequency and --output-frequency must be >= 0");
  checkpoints_ = std::move(c);
  last_chunk_ = chunks_done(checkpoints_.chunk_size);
}

std::vector<std::string> ImatrixCollector::end_chunk() {
  const ImatrixCheckpoints& c = checkpoints_;
  std::vector<std::string> written;
  if (c.path.empty() || (c.save_every == 0 && c.output_every == 0)) return written;
  const int32_t now = chunks_done(c.chunk_size);
  const int32_t before = last_chunk_ < 0 ? 0 : last_chunk_;
  last_chunk_ = now;
  // Due when a multiple of the frequency lies in (before, now].
  auto due = [&](int64_t every) { return every > 0 && now > before && now / every > before / every; };
  const bool keep = due(c.save_every), rewrite = due(c.output_every);
  if (!keep && !rewrite) return written;
  const ImatrixData d = data(c.datasets, c.chunk_size);
  if (rewrite) {
    write_imatrix(c.path, d, c.format);
    written.push_back(c.path);
  }
  if (keep) {
    const std::string copy = c.path + ".at_" + std::to_string(now);
    write_imatrix(copy, d, c.format);
    written.push_back(copy);
  }
  return written;
}

std::vector<std::string> imatrix_weight_names(const Model& model, bool process_output) {
  std::vector<std::string> names;
  for (const WeightMatrix* w : model.matrices())
    if (wanted(w->name, process_output)) names.push_back(w->name);
  return names;
}

std::span<const int32_t> skip_chunks(std::span<const int32_t> tokens, int64_t n_skip, int64_t n_ctx) {
  if (n_skip < 0) throw UsageError("--chunk must be >= 0");
  if (n_skip == 0) return tokens;
  if (static_cast<uint64_t>((n_skip + 2) * n_ctx) >= tokens.size())
    throw UsageError("--chunk " + std::to_string(n_skip) + ": the text has " + std::to_string(tokens.size()) +
                     " tokens; skipping " + std::to_string(n_skip * n_ctx) + " leaves fewer than two chunks of " +
                     std::to_string(n_ctx) + " (and one token)");
  return tokens.subspan(static_cast<size_t>(n_skip * n_ctx));
}

PerplexityResult collect_imatrix(const Model& model, std::span<const int32_t> tokens, const EvalOptions& o,
                                 ImatrixCollector& collector, const PerplexityCallback& on_chunk) {
  return run_perplexity(
      model, tokens, o,
      [&](const ChunkProgress& p, const PerplexityStats& s) {
        collector.end_chunk();
        if (on_chunk) on_chunk(p, s);
      },
      &collector);
}

}  // namespace smolq
