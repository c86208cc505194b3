// Element-wise kernels of the forward pass and of the per-position metrics: RMSNorm, RoPE,
// softmax, SiLU gating and softmax statistics over a vocabulary. Each is a pure,
// single-threaded function with a fixed operation order (deterministic for any thread count);
// the exp-heavy ones have a runtime-dispatched AVX2 version (forward_kernels_avx2.cpp).
#pragma once
#include <cstdint>

namespace smolq {

// out[i] = x[i] * (1 / sqrt(mean(x^2) + eps)) * g[i]; the mean of squares is summed in double
// in index order, as ggml's rms_norm does.
void rms_norm(const float* x, const float* g, float* out, int64_t n, float eps);

// llama.cpp's "normal" RoPE on one head: pairs (v[2i], v[2i+1]) for 2i < n_rot are rotated by
// the angle whose cos/sin are cs[2i], cs[2i+1]; dims >= n_rot are left alone.
void rope_rotate_pairs(float* v, const float* cs, int64_t n_rot);

// In place: v = softmax(v) over n values (max-subtracted; sum in float, index order).
void softmax_inplace(float* v, int64_t n);

// gate[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + exp(-x)).
void silu_mul(float* gate, const float* up, int64_t n);

// Softmax statistics of one logit row: its maximum, the first index holding it, and
// sum_i exp(x[i] - max) accumulated in double. log p_i = x[i] - max - log(sum_exp).
struct LogitStats {
  float max = 0.0f;
  int64_t argmax = 0;
  double sum_exp = 0.0;
  double log_norm() const;  // max + log(sum_exp): log p_i = x[i] - log_norm()
};
LogitStats logit_stats(const float* x, int64_t n);

// sum_i p_i * (log p_i - log q_i) with log p_i = p[i] - p_norm and log q_i = q[i] - q_norm:
// the KL divergence of the softmax of q from the softmax of p, given both log-normalisers.
double kl_sum(const float* p, double p_norm, const float* q, double q_norm, int64_t n);

namespace detail {
void softmax_inplace_avx2(float* v, int64_t n);
void silu_mul_avx2(float* gate, const float* up, int64_t n);
LogitStats logit_stats_avx2(const float* x, int64_t n);
double kl_sum_avx2(const float* p, double p_norm, const float* q, double q_norm, int64_t n);
}  // namespace detail

}  // namespace smolq
