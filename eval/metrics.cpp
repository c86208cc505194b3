#include "eval/metrics.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>

#include "eval/forward_kernels.h"

namespace smolq {
namespace {

std::string fmt(const char* f, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, args...);
  return buf;
}

// Covariance of the means of two series (llama.cpp's `covariance`): 0 below 10 samples.
double mean_covariance(double sum_a, double sum_b, double sum_ab, int64_t count) {
  if (count < 10) return 0.0;
  const double n = static_cast<double>(count);
  return (sum_ab / n - (sum_a / n) * (sum_b / n)) / (n - 1);
}

}  // namespace

TokenScore score_token(std::span<const float> logits, int32_t target) {
  assert(target >= 0 && static_cast<size_t>(target) < logits.size());
  const LogitStats s = logit_stats(logits.data(), static_cast<int64_t>(logits.size()));
  TokenScore r;
  r.logit = logits[target];
  // Same association as llama.cpp: (logit - max) - log(sum exp(logit - max)).
  r.nll = -(static_cast<double>(logits[target] - s.max) - std::log(s.sum_exp));
  r.prob = static_cast<float>(std::exp(-r.nll));
  return r;
}

double kl_divergence(std::span<const float> base, std::span<const float> q) {
  assert(base.size() == q.size());
  const int64_t n = static_cast<int64_t>(base.size());
  const LogitStats sb = logit_stats(base.data(), n), sq = logit_stats(q.data(), n);
  return kl_sum(base.data(), sb.log_norm(), q.data(), sq.log_norm(), n);
}

PositionComparison compare_position(std::span<const float> base, std::span<const float> q, int32_t target) {
  assert(base.size() == q.size() && target >= 0 && static_cast<size_t>(target) < base.size());
  const int64_t n = static_cast<int64_t>(base.size());
  const LogitStats sb = logit_stats(base.data(), n), sq = logit_stats(q.data(), n);
  PositionComparison c;
  c.nll_base = -(static_cast<double>(base[target] - sb.max) - std::log(sb.sum_exp));
  c.nll_q = -(static_cast<double>(q[target] - sq.max) - std::log(sq.sum_exp));
  c.kld = kl_sum(base.data(), sb.log_norm(), q.data(), sq.log_norm(), n);
  c.p_diff = std::exp(-c.nll_q) - std::exp(-c.nll_base);
  c.same_top = sb.argmax == sq.argmax;
  double ss = 0, mx = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(q[i]) - base[i];
    ss += d * d;
    mx = std::max(mx, std::fabs(d));
  }
  c.sum_sq_logit_diff = ss;
  c.max_abs_logit_diff = mx;
  return c;
}

MeanUnc mean_and_uncertainty(double sum, double sum2, int64_t count) {
  if (count < 1) return {};
  const double n = static_cast<double>(count);
  MeanUnc m;
  m.value = sum / n;
  const double var = sum2 / n - m.value * m.value;
  m.unc = var > 0 && count > 10 ? std::sqrt(var / (n - 1)) : 0.0;
  return m;
}

double perplexity(double mean_nll) { return std::exp(mean_nll); }

double PerplexityStats::ppl_uncertainty() const {
  if (count_ < 2) return 0.0;
  const double n = static_cast<double>(count_);
  const double mean = sum_ / n;
  const double var = sum2_ / n - mean * mean;
  return var > 0 ? std::sqrt(var / (n - 1)) * ppl() : 0.0;
}

double percentile_sorted(const std::vector<float>& v, double fraction) {
  assert(!v.empty());
  if (fraction <= 0) return v.front();
  if (fraction >= 1) return v.back();
  // llama.cpp computes the position in float: keep that so interpolated values agree.
  float p = static_cast<float>(fraction) * static_cast<float>(v.size() - 1);
  const size_t ip = static_cast<size_t>(p);
  p -= static_cast<float>(ip);
  return (1 - p) * v[ip] + p * v[std::min(ip + 1, v.size() - 1)];
}

void KldStats::add(const PositionComparison& c, int64_t n_vocab) {
  sum_nll_ += c.nll_q;
  sum_nll2_ += c.nll_q * c.nll_q;
  sum_nll_base_ += c.nll_base;
  sum_nll_base2_ += c.nll_base * c.nll_base;
  sum_nll_nll_base_ += c.nll_q * c.nll_base;
  sum_kld_ += c.kld;
  sum_kld2_ += c.kld * c.kld;
  sum_p_diff_ += c.p_diff;
  const double d2 = c.p_diff * c.p_diff;
  sum_p_diff2_ += d2;
  sum_p_diff4_ += d2 * d2;
  n_same_top_ += c.same_top;
  sum_sq_logit_diff_ += c.sum_sq_logit_diff;
  max_logit_diff_ = std::max(max_logit_diff_, c.max_abs_logit_diff);
  n_logits_ += n_vocab;
  ++count_;
  kld_values_.push_back(static_cast<float>(c.kld));
  p_diff_values_.push_back(static_cast<float>(c.p_diff));
}

KldReport KldStats::report() const {
  KldReport r;
  r.count = count_;
  if (count_ == 0) return r;
  const MeanUnc log_ppl = mean_and_uncertainty(sum_nll_, sum_nll2_, count_);
  const MeanUnc log_ppl_base = mean_and_uncertainty(sum_nll_base_, sum_nll_base2_, count_);
  r.ppl_q = {std::exp(log_ppl.value), std::exp(log_ppl.value) * log_ppl.unc};
  r.ppl_base = {std::exp(log_ppl_base.value), std::exp(log_ppl_base.value) * log_ppl_base.unc};
  const double cov = mean_covariance(sum_nll_, sum_nll_base_, sum_nll_nll_base_, count_);
  const double denom = log_ppl.unc * log_ppl_base.unc;
  r.ppl_correlation = denom > 0 ? cov / denom : 0.0;
  const double ratio_unc = std::sqrt(std::max(0.0, log_ppl.unc * log_ppl.unc + log_ppl_base.unc * log_ppl_base.unc - 2.0 * cov));
  r.ln_ppl_ratio = {log_ppl.value - log_ppl_base.value, ratio_unc};
  r.ppl_ratio = {std::exp(r.ln_ppl_ratio.value), std::exp(r.ln_ppl_ratio.value) * ratio_unc};
  const double ppl_cov = r.ppl_q.value * r.ppl_base.value * cov;
  r.ppl_diff = {r.ppl_q.value - r.ppl_base.value,
                std::sqrt(std::max(0.0, r.ppl_q.unc * r.ppl_q.unc + r.ppl_base.unc * r.ppl_base.unc - 2.0 * ppl_cov))};
  r.kld = mean_and_uncertainty(sum_kld_, sum_kld2_, count_);

  std::vector<float> kld = kld_values_, dp = p_diff_values_;
  std::sort(kld.begin(), kld.end());
  std::sort(dp.begin(), dp.end());
  auto median = [](const std::vector<float>& v) {
    const size_t n = v.size();
    return n % 2 == 0 ? 0.5f * (v[n / 2] + v[n / 2 - 1]) : v[n / 2];
  };
  r.kld_percentiles = {{"max", kld.back()},
                       {"99.9", percentile_sorted(kld, 0.999)},
                       {"99.0", percentile_sorted(kld, 0.990)},
                       {"95.0", percentile_sorted(kld, 0.950)},
                       {"90.0", percentile_sorted(kld, 0.900)},
                       {"median", median(kld)},
                       {"10.0", percentile_sorted(kld, 0.100)},
                       {"5.0", percentile_sorted(kld, 0.050)},
                       {"1.0", percentile_sorted(kld, 0.010)},
                       {"0.1", percentile_sorted(kld, 0.001)},
                       {"min", kld.front()}};
  r.p_diff = mean_and_uncertainty(sum_p_diff_, sum_p_diff2_, count_);
  r.p_diff_percentiles = {{"max", dp.back()},
                          {"99.9", percentile_sorted(dp, 0.999)},
                          {"99.0", percentile_sorted(dp, 0.990)},
                          {"95.0", percentile_sorted(dp, 0.950)},
                          {"90.0", percentile_sorted(dp, 0.900)},
                          {"75.0", percentile_sorted(dp, 0.750)},
                          {"median", median(dp)},
                          {"25.0", percentile_sorted(dp, 0.250)},
                          {"10.0", percentile_sorted(dp, 0.100)},
                          {"5.0", percentile_sorted(dp, 0.050)},
                          {"1.0", percentile_sorted(dp, 0.010)},
                          {"0.1", percentile_sorted(dp, 0.001)},
                          {"min", dp.front()}};
  const MeanUnc mse = mean_and_uncertainty(sum_p_diff2_, sum_p_diff4_, count_);
  const double rms = std::sqrt(mse.value);
  r.rms_p_diff = {rms, rms > 0 ? 0.5 / rms * mse.unc : 0.0};
  const double top = static_cast<double>(n_same_top_) / static_cast<double>(count_);
  r.same_top = {top, count_ > 1 ? std::sqrt(top * (1 - top) / static_cast<double>(count_ - 1)) : 0.0};
  r.rms_logit_drift = n_logits_ ? std::sqrt(sum_sq_logit_diff_ / static_cast<double>(n_logits_)) : 0.0;
  r.max_logit_drift = max_logit_diff_;
  return r;
}

std::string KldStats::chunk_header() {
  return "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            "
         "Same top p\n";
}

std::string KldStats::chunk_line(int64_t chunk) const {
  const KldReport r = report();
  std::string s = fmt("%4lld", static_cast<long long>(chunk));
  s += fmt("    %9.4lf ± %9.4lf", r.ppl_q.value, r.ppl_q.unc);
  s += fmt("    %10.5lf ± %10.5lf", r.ln_ppl_ratio.value, r.ln_ppl_ratio.unc);
  s += fmt("    %10.5lf ± %10.5lf", r.kld.value, r.kld.unc);
  s += fmt("    %6.3lf ± %6.3lf %%", 100.0 * r.rms_p_diff.value, 100.0 * r.rms_p_diff.unc);
  s += fmt("    %6.3lf ± %6.3lf %%", 100.0 * r.same_top.value, 100.0 * r.same_top.unc);
  return s + "\n";
}

std::string format_kld_report(const KldReport& r) {
  std::string s = "====== Perplexity statistics ======\n";
  s += fmt("Mean PPL(Q)                   : %10.6lf ± %10.6lf\n", r.ppl_q.value, r.ppl_q.unc);
  s += fmt("Mean PPL(base)                : %10.6lf ± %10.6lf\n", r.ppl_base.value, r.ppl_base.unc);
  s += fmt("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2lf%%\n", 100.0 * r.ppl_correlation);
  s += fmt("Mean ln(PPL(Q)/PPL(base))     : %10.6lf ± %10.6lf\n", r.ln_ppl_ratio.value, r.ln_ppl_ratio.unc);
  s += fmt("Mean PPL(Q)/PPL(base)         : %10.6lf ± %10.6lf\n", r.ppl_ratio.value, r.ppl_ratio.unc);
  s += fmt("Mean PPL(Q)-PPL(base)         : %10.6lf ± %10.6lf\n", r.ppl_diff.value, r.ppl_diff.unc);
  s += "\n====== KL divergence statistics ======\n";
  s += fmt("Mean    KLD: %10.6lf ± %10.6lf\n", r.kld.value, r.kld.unc);
  for (const auto& [name, v] : r.kld_percentiles) {
    if (name == "max") s += fmt("Maximum KLD: %10.6f\n", v);
    else if (name == "min") s += fmt("Minimum KLD: %10.6f\n", v);
    else if (name == "median") s += fmt("Median  KLD: %10.6f\n", v);
    else s += fmt("%4s%%   KLD: %10.6f\n", name.c_str(), v);
  }
  s += "\n====== Token probability statistics ======\n";
  s += fmt("Mean    Δp: %6.3lf ± %5.3lf %%\n", 100.0 * r.p_diff.value, 100.0 * r.p_diff.unc);
  for (const auto& [name, v] : r.p_diff_percentiles) {
    if (name == "max") s += fmt("Maximum Δp: %6.3lf%%\n", 100.0 * v);
    else if (name == "min") s += fmt("Minimum Δp: %6.3lf%%\n", 100.0 * v);
    else if (name == "median") s += fmt("Median  Δp: %6.3lf%%\n", 100.0 * v);
    else s += fmt("%4s%%   Δp: %6.3lf%%\n", name.c_str(), 100.0 * v);
  }
  s += fmt("RMS Δp    : %6.3lf ± %5.3lf %%\n", 100.0 * r.rms_p_diff.value, 100.0 * r.rms_p_diff.unc);
  s += fmt("Same top p: %6.3lf ± %5.3lf %%\n", 100.0 * r.same_top.value, 100.0 * r.same_top.unc);
  s += "\n====== Logit drift (smolq) ======\n";
  s += fmt("RMS logit drift: %10.6lf\n", r.rms_logit_drift);
  s += fmt("Max logit drift: %10.6lf\n", r.max_logit_drift);
  return s;
}

std::string kld_report_json(const KldReport& r) {
  auto num = [](double v) { return std::isfinite(v) ? fmt("%.9g", v) : std::string("null"); };
  auto mu = [&](const MeanUnc& m) { return "{\"value\": " + num(m.value) + ", \"uncertainty\": " + num(m.unc) + "}"; };
  auto pct = [&](const std::vector<std::pair<std::string, double>>& v) {
    std::string s = "{";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", \"" : "\"") + v[i].first + "\": " + num(v[i].second);
    return s + "}";
  };
  std::string s = "{";
  s += "\"count\": " + std::to_string(r.count);
  s += ", \"ppl_q\": " + mu(r.ppl_q);
  s += ", \"ppl_base\": " + mu(r.ppl_base);
  s += ", \"ppl_correlation\": " + num(r.ppl_correlation);
  s += ", \"ln_ppl_ratio\": " + mu(r.ln_ppl_ratio);
  s += ", \"ppl_ratio\": " + mu(r.ppl_ratio);
  s += ", \"ppl_diff\": " + mu(r.ppl_diff);
  s += ", \"kld\": " + mu(r.kld);
  s += ", \"kld_percentiles\": " + pct(r.kld_percentiles);
  s += ", \"p_diff\": " + mu(r.p_diff);
  s += ", \"p_diff_percentiles\": " + pct(r.p_diff_percentiles);
  s += ", \"rms_p_diff\": " + mu(r.rms_p_diff);
  s += ", \"same_top_p\": " + mu(r.same_top);
  s += ", \"rms_logit_drift\": " + num(r.rms_logit_drift);
  s += ", \"max_logit_drift\": " + num(r.max_logit_drift);
  return s + "}";
}

}  // namespace smolq
