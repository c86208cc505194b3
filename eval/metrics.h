// Quality metrics of a model's next-token predictions, defined once for the whole tool and
// named for exactly what they compute. They follow llama.cpp's perplexity tool (its normal and
// KL-divergence modes) formula for formula, so smolq's numbers can be compared with
// llama-perplexity's digit for digit:
//
//   nll_i         = -log softmax(logits_i)[target_i]                 (natural log)
//   perplexity    = exp(mean nll); its uncertainty = ppl * sqrt(var(nll) / (N - 1))
//   KL divergence = sum_v p_base(v) * (log p_base(v) - log p_q(v))    per position
//   Δp            = p_q(target) - p_base(target)                      per position
//   same top p    = fraction of positions whose argmax agrees
//
// One difference, on purpose: llama.cpp's KL mode reads the base model's log-probabilities back
// from a file where they are quantized to 16 bits; we run both models in one process and use
// the exact f32 logits, so our KLD and base PPL are slightly more precise than its.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace smolq {

// ---- one position ----------------------------------------------------------------------

// -log p(target) under softmax(logits); also the raw logit and p(target).
struct TokenScore {
  double nll = 0;
  float logit = 0;
  float prob = 0;
};
TokenScore score_token(std::span<const float> logits, int32_t target);

// Everything the KL mode needs from one position of base and quantized logits.
struct PositionComparison {
  double nll_base = 0, nll_q = 0;
  double kld = 0;               // KL(P_base || P_q), nats
  double p_diff = 0;            // p_q(target) - p_base(target)
  bool same_top = false;        // argmax_base == argmax_q (first index on ties)
  double sum_sq_logit_diff = 0; // sum_v (q_v - base_v)^2 (raw logits, no shift)
  double max_abs_logit_diff = 0;
};
PositionComparison compare_position(std::span<const float> base, std::span<const float> q, int32_t target);
// KL(P_base || P_q) of one position, in nats.
double kl_divergence(std::span<const float> base_logits, std::span<const float> q_logits);

// ---- aggregates --------------------------------------------------------------------------

// A mean with its standard error, llama.cpp style: sqrt((E[x^2] - E[x]^2) / (N - 1)), and 0 when
// N <= 10 or the variance estimate is not positive.
struct MeanUnc {
  double value = 0, unc = 0;
};
MeanUnc mean_and_uncertainty(double sum, double sum2, int64_t count);

// perplexity = exp(mean nll).
double perplexity(double mean_nll);

// Running perplexity over scored positions (llama-perplexity's normal mode).
class PerplexityStats {
 public:
  void add(double nll) {
    sum_ += nll;
    sum2_ += nll * nll;
    ++count_;
  }
  int64_t count() const { return count_; }
  double mean_nll() const { return count_ ? sum_ / static_cast<double>(count_) : 0.0; }
  double ppl() const { return perplexity(mean_nll()); }
  // ppl * sqrt((E[nll^2] - E[nll]^2) / (N - 1)); 0 when undefined.
  double ppl_uncertainty() const;

 private:
  double sum_ = 0, sum2_ = 0;
  int64_t count_ = 0;
};

// Summary of a KL-divergence run: what llama-perplexity --kl-divergence prints, plus logit drift.
struct KldReport {
  int64_t count = 0;
  MeanUnc ppl_q, ppl_base;
  double ppl_correlation = 0;            // Cor(ln PPL(Q), ln PPL(base))
  MeanUnc ln_ppl_ratio, ppl_ratio, ppl_diff;
  MeanUnc kld;
  // Percentiles of per-position KLD: max, 99.9, 99, 95, 90, median, 10, 5, 1, 0.1, min.
  std::vector<std::pair<std::string, double>> kld_percentiles;
  MeanUnc p_diff;                        // mean Δp (fraction, not %)
  // Percentiles of Δp: max, 99.9, 99, 95, 90, 75, median, 25, 10, 5, 1, 0.1, min.
  std::vector<std::pair<std::string, double>> p_diff_percentiles;
  MeanUnc rms_p_diff;
  MeanUnc same_top;                      // fraction
  double rms_logit_drift = 0;            // sqrt(mean over positions and vocab of (q - base)^2)
  double max_logit_drift = 0;            // max |q - base| over positions and vocab
};

// Accumulates positions for the KL mode; holds the per-position KLD and Δp for percentiles.
class KldStats {
 public:
  void add(const PositionComparison& c, int64_t n_vocab);
  int64_t count() const { return count_; }
  KldReport report() const;
  // The per-chunk line of llama.cpp's KL table for the positions seen so far.
  std::string chunk_line(int64_t chunk) const;
  static std::string chunk_header();

 private:
  double sum_nll_ = 0, sum_nll2_ = 0, sum_nll_base_ = 0, sum_nll_base2_ = 0, sum_nll_nll_base_ = 0;
  double sum_kld_ = 0, sum_kld2_ = 0, sum_p_diff_ = 0, sum_p_diff2_ = 0, sum_p_diff4_ = 0;
  double sum_sq_logit_diff_ = 0, max_logit_diff_ = 0;
  int64_t n_same_top_ = 0, count_ = 0, n_logits_ = 0;
  std::vector<float> kld_values_, p_diff_values_;
};

// llama.cpp's percentile of sorted values: linear interpolation between neighbours.
double percentile_sorted(const std::vector<float>& sorted, double fraction);

// The KL summary as llama-perplexity prints it (three "======" sections) and as one JSON object.
std::string format_kld_report(const KldReport& r);
std::string kld_report_json(const KldReport& r);

}  // namespace smolq
