// eval/metrics: each quantity against a direct computation, and llama.cpp's conventions
// (uncertainty formula, percentile interpolation, report layout).
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "eval/metrics.h"

using namespace smolq;

namespace {

std::vector<float> logits(int n, uint32_t seed, float scale = 3.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double log_softmax(const std::vector<float>& l, int i) {
  double mx = -1e300, s = 0;
  for (float f : l) mx = std::max(mx, static_cast<double>(f));
  for (float f : l) s += std::exp(f - mx);
  return l[i] - mx - std::log(s);
}

}  // namespace

TEST_SUITE("test_metrics") {
  TEST_CASE("score_token is -log softmax") {
    const auto l = logits(5000, 1);
    const TokenScore s = score_token(l, 1234);
    CHECK(s.nll == doctest::Approx(-log_softmax(l, 1234)).epsilon(1e-6));
    CHECK(s.prob == doctest::Approx(std::exp(log_softmax(l, 1234))).epsilon(1e-6));
    CHECK(s.logit == l[1234]);
  }

  TEST_CASE("KL divergence: zero for identical and shifted logits, matches the definition otherwise") {
    const auto p = logits(4099, 2);
    CHECK(kl_divergence(p, p) == doctest::Approx(0.0).scale(1e-12));
    auto shifted = p;
    for (auto& f : shifted) f += 7.25f;  // softmax is shift-invariant
    CHECK(std::fabs(kl_divergence(p, shifted)) < 1e-6);
    const auto q = logits(4099, 3);
    double ref = 0;
    for (int i = 0; i < 4099; ++i) ref += std::exp(log_softmax(p, i)) * (log_softmax(p, i) - log_softmax(q, i));
    CHECK(kl_divergence(p, q) == doctest::Approx(ref).epsilon(1e-5));
  }

  TEST_CASE("compare_position collects KLD, Δp, top token and logit drift") {
    const auto b = logits(1000, 4);
    auto q = b;
    q[10] += 0.5f;
    q[20] -= 0.25f;
    const PositionComparison c = compare_position(b, q, 10);
    CHECK(c.nll_base == doctest::Approx(-log_softmax(b, 10)).epsilon(1e-6));
    CHECK(c.nll_q == doctest::Approx(-log_softmax(q, 10)).epsilon(1e-6));
    CHECK(c.p_diff == doctest::Approx(std::exp(log_softmax(q, 10)) - std::exp(log_softmax(b, 10))).epsilon(1e-6));
    CHECK(c.p_diff > 0);
    CHECK(c.kld > 0);
    CHECK(c.same_top);
    CHECK(c.max_abs_logit_diff == doctest::Approx(0.5).epsilon(1e-6));
    CHECK(c.sum_sq_logit_diff == doctest::Approx(0.25 + 0.0625).epsilon(1e-6));
  }

  TEST_CASE("perplexity and its uncertainty follow llama.cpp's formula") {
    PerplexityStats s;
    std::vector<double> v;
    for (int i = 0; i < 300; ++i) v.push_back(1.0 + 0.01 * (i % 37));
    for (double x : v) s.add(x);
    double m = 0, m2 = 0;
    for (double x : v) m += x, m2 += x * x;
    m /= v.size();
    m2 /= v.size();
    CHECK(s.ppl() == doctest::Approx(std::exp(m)));
    CHECK(s.ppl_uncertainty() == doctest::Approx(std::exp(m) * std::sqrt((m2 - m * m) / (v.size() - 1))));
    CHECK(perplexity(std::log(12.5)) == doctest::Approx(12.5));
    // mean_and_uncertainty reports no uncertainty for 10 samples or fewer.
    CHECK(mean_and_uncertainty(10.0, 30.0, 10).unc == 0.0);
    CHECK(mean_and_uncertainty(10.0, 30.0, 11).unc > 0.0);
  }

  TEST_CASE("percentiles interpolate like llama.cpp") {
    const std::vector<float> v{1, 2, 3, 4, 5};
    CHECK(percentile_sorted(v, 0.0) == 1);
    CHECK(percentile_sorted(v, 1.0) == 5);
    CHECK(percentile_sorted(v, 0.5) == doctest::Approx(3));
    CHECK(percentile_sorted(v, 0.9) == doctest::Approx(4.6));
  }

  TEST_CASE("KL report: identical models give ratio 1, zero KLD, 100% same top") {
    KldStats s;
    for (int i = 0; i < 200; ++i) {
      const auto l = logits(300, 100 + i);
      s.add(compare_position(l, l, i % 300), 300);
    }
    const KldReport r = s.report();
    CHECK(r.count == 200);
    CHECK(r.ppl_q.value == doctest::Approx(r.ppl_base.value));
    CHECK(r.ppl_ratio.value == doctest::Approx(1.0));
    CHECK(std::fabs(r.kld.value) < 1e-9);
    CHECK(r.same_top.value == 1.0);
    CHECK(r.max_logit_drift == 0.0);
    CHECK(r.kld_percentiles.size() == 11);
    CHECK(r.p_diff_percentiles.size() == 13);
    const std::string text = format_kld_report(r);
    CHECK(text.find("Mean PPL(Q)                   :") != std::string::npos);
    CHECK(text.find("Same top p: 100.000 ± 0.000 %") != std::string::npos);
    CHECK(text.find("99.9%   KLD:") != std::string::npos);
    const std::string json = kld_report_json(r);
    CHECK(json.front() == '{');
    CHECK(json.back() == '}');
    CHECK(json.find("\"same_top_p\": {\"value\": 1,") != std::string::npos);
  }

  TEST_CASE("KL report: a perturbed model has positive KLD and PPL drift with sensible signs") {
    KldStats s;
    for (int i = 0; i < 500; ++i) {
      const auto b = logits(200, 1000 + i);
      auto q = b;
      std::mt19937 rng(i);
      std::normal_distribution<float> noise(0.0f, 0.3f);
      for (auto& f : q) f += noise(rng);
      // targets: the base model's argmax, so the quantized model can only be worse in PPL terms
      int target = 0;
      for (int k = 1; k < 200; ++k)
        if (b[k] > b[target]) target = k;
      s.add(compare_position(b, q, target), 200);
    }
    const KldReport r = s.report();
    CHECK(r.kld.value > 0.01);
    CHECK(r.kld.unc > 0);
    CHECK(r.ppl_q.value > r.ppl_base.value);
    CHECK(r.ln_ppl_ratio.value > 0);
    CHECK(r.same_top.value < 1.0);
    CHECK(r.rms_p_diff.value > std::fabs(r.p_diff.value));
    CHECK(r.rms_logit_drift == doctest::Approx(0.3).epsilon(0.05));
    CHECK(r.kld_percentiles.front().second >= r.kld_percentiles.back().second);
  }
}
