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

PerplexityResult collect_imatrix(const Model& model, std::span<const int32_t> tokens, const EvalOptions& o,
                                 ImatrixCollector& collector, const PerplexityCallback& on_chunk) {
  return run_perplexity(model, tokens, o, on_chunk, &collector);
}

}  // namespace smolq
