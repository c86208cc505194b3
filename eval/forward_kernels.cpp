// Portable element-wise kernels and the dispatch to their AVX2 versions.
#include "eval/forward_kernels.h"

#include <cmath>

#include "eval/matmul.h"
#include "formats/cpu_features.h"

namespace smolq {

double LogitStats::log_norm() const { return static_cast<double>(max) + std::log(sum_exp); }

void rms_norm(const float* x, const float* g, float* out, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * g[i];
}

void rope_rotate_pairs(float* v, const float* cs, int64_t n_rot) {
  for (int64_t i = 0; i < n_rot; i += 2) {
    const float c = cs[i], s = cs[i + 1];
    const float x0 = v[i], x1 = v[i + 1];
    v[i] = x0 * c - x1 * s;
    v[i + 1] = x0 * s + x1 * c;
  }
}

void softmax_inplace(float* v, int64_t n) {
  if (cpu::has_avx2()) return detail::softmax_inplace_avx2(v, n);
  float mx = v[0];
  for (int64_t i = 1; i < n; ++i) mx = std::fmax(mx, v[i]);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    v[i] = std::exp(v[i] - mx);
    sum += v[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) v[i] *= inv;
}

void silu_mul(float* gate, const float* up, int64_t n) {
  if (cpu::has_avx2()) return detail::silu_mul_avx2(gate, up, n);
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

LogitStats logit_stats(const float* x, int64_t n) {
  if (cpu::has_avx2()) return detail::logit_stats_avx2(x, n);
  LogitStats s;
  s.max = x[0];
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > s.max) {
      s.max = x[i];
      s.argmax = i;
    }
  for (int64_t i = 0; i < n; ++i) s.sum_exp += std::exp(x[i] - s.max);
  return s;
}

double kl_sum(const float* p, double p_norm, const float* q, double q_norm, int64_t n) {
  if (cpu::has_avx2()) return detail::kl_sum_avx2(p, p_norm, q, q_norm, n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double lp = p[i] - p_norm, lq = q[i] - q_norm;
    sum += std::exp(lp) * (lp - lq);
  }
  return sum;
}

}  // namespace smolq
