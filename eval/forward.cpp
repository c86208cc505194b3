#include "eval/forward.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "formats/cpu_features.h"
#include "formats/error.h"
#include "formats/interrupt.h"
#include "eval/forward_kernels.h"
#include "eval/matmul.h"

namespace smolq {
namespace {

// YaRN defaults llama.cpp uses for these architectures (llama-hparams.h): the band of
// rotary dimensions blended between interpolation and extrapolation is bounded by the
// dimensions that complete beta_fast and beta_slow rotations over the original context.
constexpr double kYarnBetaFast = 32.0;
constexpr double kYarnBetaSlow = 1.0;

// Rotary dimension whose wavelength fits `n_rot` rotations into n_ctx_orig positions.
double yarn_corr_dim(double n_dims, double n_ctx_orig, double n_rot, double base) {
  return n_dims * std::log(n_ctx_orig / (n_rot * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
}

}  // namespace

std::vector<float> rope_table(const ModelConfig& c, std::span<const float> freq_factors, int64_t n_pos) {
  const int64_t n_dims = static_cast<int64_t>(c.rope_dim);
  const RopeScaling& rs = c.rope_scaling;
  const bool scaled = (rs.type == "linear" || rs.type == "yarn") && rs.factor > 0;
  const double freq_scale = scaled ? 1.0 / rs.factor : 1.0;
  const bool yarn = rs.type == "yarn" && freq_scale != 1.0;
  // YaRN: the angle blends interpolated and extrapolated values per dimension, and cos/sin
  // are scaled by 1 + 0.1 ln(factor) (llama.cpp's net attn_factor x mscale).
  double corr_lo = 0, corr_hi = 0, mscale = 1.0;
  if (yarn) {
    const double n_orig = static_cast<double>(rs.original_context ? rs.original_context : c.n_ctx_train);
    corr_lo = std::max(0.0, std::floor(yarn_corr_dim(n_dims, n_orig, kYarnBetaFast, c.rope_theta)));
    corr_hi = std::min(static_cast<double>(n_dims - 1), std::ceil(yarn_corr_dim(n_dims, n_orig, kYarnBetaSlow, c.rope_theta)));
    mscale = 1.0 + 0.1 * std::log(rs.factor);
  }
  std::vector<double> inv_freq(n_dims / 2);
  for (int64_t i = 0; i < n_dims / 2; ++i) {
    inv_freq[i] = std::pow(c.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(n_dims));
    if (!freq_factors.empty()) inv_freq[i] /= freq_factors[i];
  }
  std::vector<float> cs(static_cast<size_t>(n_pos * n_dims));
  for (int64_t p = 0; p < n_pos; ++p) {
    for (int64_t i = 0; i < n_dims / 2; ++i) {
      const double extrap = static_cast<double>(p) * inv_freq[i];
      double theta = freq_scale * extrap;
      if (yarn) {
        const double y = (static_cast<double>(i) - corr_lo) / std::max(0.001, corr_hi - corr_lo);
        const double ramp = 1.0 - std::min(1.0, std::max(0.0, y));  // 1: extrapolate (high freq)
        theta = theta * (1.0 - ramp) + extrap * ramp;
      }
      cs[p * n_dims + 2 * i] = static_cast<float>(std::cos(theta) * mscale);
      cs[p * n_dims + 2 * i + 1] = static_cast<float>(std::sin(theta) * mscale);
    }
  }
  return cs;
}

Forward::Forward(const Model& model, int64_t n_ctx, int64_t max_batch, int n_threads, int max_seqs)
    : m_(model), c_(model.config()), n_ctx_(n_ctx), max_batch_(max_batch), n_threads_(std::max(1, n_threads)),
      max_seqs_(std::max(1, max_seqs)) {
  if (n_ctx <= 0 || max_batch <= 0) throw UsageError("context and batch sizes must be positive");
  if (max_seqs_ > 1) max_batch_ = std::max(max_batch_, max_seqs_ * n_ctx);
  max_batch = max_batch_;
  kq_scale_ = 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
  rope_cs_ = rope_table(c_, model.rope_freq_factors(), n_ctx);
  const size_t B = static_cast<size_t>(max_batch), E = c_.n_embd;
  k_cache_.assign(c_.n_layer * max_seqs_ * n_ctx * c_.kv_dim(), 0.0f);
  v_cache_.assign(c_.n_layer * max_seqs_ * n_ctx * c_.kv_dim(), 0.0f);
  x_.resize(B * E);
  xn_.resize(B * E);
  q_.resize(B * c_.q_dim());
  attn_.resize(B * c_.q_dim());
  gate_.resize(B * c_.n_ff);
  up_.resize(B * c_.n_ff);
  tmp_.resize(B * E);
  scores_.resize(static_cast<size_t>(n_threads_) * kMaxQueryBlock * n_ctx);
  packed_keys_ = cpu::has_avx512();
  query_block_ = packed_keys_ ? 6 : 3;
  if (packed_keys_) {
    key_groups_ = (n_ctx + 7) / 8;
    k_packed_.assign(c_.n_layer * max_seqs_ * c_.n_head_kv * key_groups_ * 8 * c_.head_dim, 0.0f);
  }
}

uint64_t Forward::buffer_bytes() const {
  const size_t floats = k_cache_.size() + v_cache_.size() + x_.size() + xn_.size() + q_.size() + attn_.size() +
                        gate_.size() + up_.size() + tmp_.size() + scores_.size() + rope_cs_.size() + k_packed_.size();
  return floats * sizeof(float);
}

void Forward::matmul_obs(const WeightMatrix& w, const float* x, int64_t n, float* y, ActivationObserver* obs) {
  if (obs) obs->observe(w, x, n);
  matmul(w, x, n, y, n_threads_);
}

void Forward::pack_keys(size_t il, int n_seq, int64_t pos0, int64_t n) {
  // Every group holding one of this batch's keys, from its first key: a group the previous
  // batch left partly filled is packed again whole.
  const int64_t hd = static_cast<int64_t>(c_.head_dim), kv_dim = static_cast<int64_t>(c_.kv_dim());
  const int64_t n_kv = static_cast<int64_t>(c_.n_head_kv), end = pos0 + n;
  const int64_t g0 = pos0 / 8, g1 = (end + 7) / 8, per_seq = (g1 - g0) * n_kv;
#pragma omp parallel for num_threads(n_threads_)
  for (int64_t task = 0; task < n_seq * per_seq; ++task) {
    const int s = static_cast<int>(task / per_seq);
    const int64_t grp = g0 + task % per_seq / n_kv, h = task % n_kv;
    const float* kc = k_cache_.data() + cache_offset(il, s);
    const float* rows[8];
    const int nr = static_cast<int>(std::min<int64_t>(8, end - grp * 8));
    for (int r = 0; r < nr; ++r) rows[r] = kc + (grp * 8 + r) * kv_dim + h * hd;
    const size_t seq = il * static_cast<size_t>(max_seqs_) + static_cast<size_t>(s);
    detail::pack_group8(rows, nr, hd, k_packed_.data() + ((seq * n_kv + h) * key_groups_ + grp) * 8 * hd);
  }
}

void Forward::attention(size_t il, int n_seq, int64_t n, int64_t pos0) {
  const int64_t hd = static_cast<int64_t>(c_.head_dim);
  const int64_t n_head = static_cast<int64_t>(c_.n_head);
  const int64_t n_kv = static_cast<int64_t>(c_.n_head_kv);
  const int64_t n_gqa = static_cast<int64_t>(c_.n_gqa());
  const int64_t kv_dim = static_cast<int64_t>(c_.kv_dim());
  const int64_t q_dim = static_cast<int64_t>(c_.q_dim());
  if (packed_keys_) pack_keys(il, n_seq, pos0, n);
  // One task per (sequence, block of up to query_block_ tokens, head): the block's queries share
  // the key and value loads; each query then uses only its causal prefix [0, pos0 + t] of the
  // scores. Every score and output is computed the same way whatever the block (bit-identical).
  const int qb = query_block_;
  const int64_t n_blocks = (n + qb - 1) / qb, per_seq = n_blocks * n_head;
#pragma omp parallel for schedule(dynamic, 2) num_threads(n_threads_)
  for (int64_t task = 0; task < n_seq * per_seq; ++task) {
    const int s = static_cast<int>(task / per_seq);
    const int64_t t0 = (task % per_seq / n_head) * qb, h = task % n_head, g = h / n_gqa;
    const int nq = static_cast<int>(std::min<int64_t>(qb, n - t0));
    const float* kc = k_cache_.data() + cache_offset(il, s);
    const float* vc = v_cache_.data() + cache_offset(il, s);
    const int64_t row0 = s * n + t0;  // batch row of the block's first query
    float* sc = scores_.data() + static_cast<size_t>(omp_get_thread_num()) * kMaxQueryBlock * n_ctx_;
    const float* q[kMaxQueryBlock];
    for (int i = 0; i < nq; ++i) q[i] = q_.data() + (row0 + i) * q_dim + h * hd;
    if (packed_keys_) {
      const size_t seq = il * static_cast<size_t>(max_seqs_) + static_cast<size_t>(s);
      dot_rows_packed(q, nq, k_packed_.data() + (seq * n_kv + g) * key_groups_ * 8 * hd, pos0 + t0 + nq, hd, sc, n_ctx_);
    } else {
      dot_rows(q, nq, kc + g * hd, kv_dim, pos0 + t0 + nq, hd, sc, n_ctx_);
    }
    for (int i = 0; i < nq; ++i) {
      float* sv = sc + i * n_ctx_;
      const int64_t n_keys = pos0 + t0 + i + 1;
      for (int64_t j = 0; j < n_keys; ++j) sv[j] *= kq_scale_;
      softmax_inplace(sv, n_keys);
    }
    weighted_rows_block(sc, n_ctx_, nq, vc + g * hd, kv_dim, pos0 + t0 + 1, hd, attn_.data() + row0 * q_dim + h * hd, q_dim);
  }
}

void Forward::eval(std::span<const int32_t> tokens, int64_t first_output, std::span<float> logits,
                   ActivationObserver* obs) {
  run(tokens, 1, first_output, logits, obs);
}

void Forward::eval_sequences(std::span<const int32_t> tokens, int n_seq, int64_t first_output, std::span<float> logits) {
  if (n_seq < 1 || n_seq > max_seqs_ || static_cast<int64_t>(tokens.size()) != n_seq * n_ctx_)
    throw Error("eval_sequences: " + std::to_string(tokens.size()) + " tokens are not " + std::to_string(n_seq) +
                " sequences of " + std::to_string(n_ctx_) + " (at most " + std::to_string(max_seqs_) + " sequences)");
  reset();
  run(tokens, n_seq, first_output, logits, nullptr);
  reset();
}

void Forward::run(std::span<const int32_t> tokens, int n_seq, int64_t first_output, std::span<float> logits,
                  ActivationObserver* obs) {
  const int64_t N = static_cast<int64_t>(tokens.size());  // rows of the batch: n_seq sequences of n
  const int64_t n = N / n_seq;
  const int64_t pos0 = n_past_;
  const int64_t E = static_cast<int64_t>(c_.n_embd);
  const int64_t V = static_cast<int64_t>(c_.n_vocab);
  const int64_t q_dim = static_cast<int64_t>(c_.q_dim()), kv_dim = static_cast<int64_t>(c_.kv_dim());
  const int64_t hd = static_cast<int64_t>(c_.head_dim), n_rot = static_cast<int64_t>(c_.rope_dim);
  const int64_t n_ff = static_cast<int64_t>(c_.n_ff);
  const float eps = static_cast<float>(c_.rms_eps);
  if (N == 0) return;
  if (N > max_batch_) throw Error("batch of " + std::to_string(N) + " tokens exceeds the batch size " + std::to_string(max_batch_));
  if (pos0 + n > n_ctx_)
    throw Error("sequence of " + std::to_string(pos0 + n) + " tokens exceeds the context of " + std::to_string(n_ctx_));
  if (first_output < 0 || first_output > n || logits.size() != static_cast<size_t>(n_seq * (n - first_output) * V))
    throw Error("logits buffer does not match the requested outputs");
  for (int32_t tok : tokens)
    if (tok < 0 || tok >= V) throw Error("token id " + std::to_string(tok) + " is outside the vocabulary (" + std::to_string(V) + ")");

  float* x = x_.data();
  float* xn = xn_.data();
#pragma omp parallel for num_threads(n_threads_)
  for (int64_t t = 0; t < N; ++t) m_.tok_embd().dequantize_row(static_cast<uint64_t>(tokens[t]), x + t * E);

  int64_t rows = N;  // rows still carried: all, until the last layer drops those without logits
  for (size_t il = 0; il < m_.n_layers(); ++il) {
    // A chunk of a bigger model takes minutes on a loaded machine: answer Ctrl-C / SIGTERM
    // between layers, outside any parallel region, rather than at the end of the chunk.
    check_interrupted();
    const LayerWeights& L = m_.layer(il);
    // ---- attention block ----
#pragma omp parallel for num_threads(n_threads_)
    for (int64_t t = 0; t < N; ++t) rms_norm(x + t * E, L.attn_norm.data(), xn + t * E, E, eps);
    // This batch's cache rows: with several sequences n == n_ctx, so their rows are contiguous.
    float* kc = k_cache_.data() + cache_offset(il, 0) + pos0 * kv_dim;
    float* vc = v_cache_.data() + cache_offset(il, 0) + pos0 * kv_dim;
    matmul_obs(L.wq, xn, N, q_.data(), obs);
    matmul_obs(L.wk, xn, N, kc, obs);
    matmul_obs(L.wv, xn, N, vc, obs);
    if (L.use_rope) {
#pragma omp parallel for num_threads(n_threads_)
      for (int64_t t = 0; t < N; ++t) {
        const float* cs = rope_cs_.data() + (pos0 + t % n) * n_rot;
        for (int64_t h = 0; h < static_cast<int64_t>(c_.n_head); ++h) rope_rotate_pairs(q_.data() + t * q_dim + h * hd, cs, n_rot);
        for (int64_t h = 0; h < static_cast<int64_t>(c_.n_head_kv); ++h) rope_rotate_pairs(kc + t * kv_dim + h * hd, cs, n_rot);
      }
    }
    attention(il, n_seq, n, pos0);
    matmul_obs(L.wo, attn_.data(), N, tmp_.data(), obs);

#pragma omp parallel for num_threads(n_threads_)
    for (int64_t t = 0; t < N; ++t) {
      float* xt = x + t * E;
      const float* at = tmp_.data() + t * E;
      for (int64_t i = 0; i < E; ++i) xt[i] += at[i];
    }
    // In the last layer only the rows that produce logits matter (llama.cpp prunes them the
    // same way), unless an observer wants every row: rows [first_output, n) of every sequence
    // move to the front, in order (each destination row is at or before its source).
    if (il + 1 == m_.n_layers() && !obs) {
      const int64_t keep = n - first_output;
      for (int64_t s = 0; s < n_seq; ++s)
        for (int64_t j = 0; j < keep; ++j)
          if (s * keep != s * n + first_output)
            std::copy_n(x + (s * n + first_output + j) * E, E, x + (s * keep + j) * E);
      rows = n_seq * keep;
    }
#pragma omp parallel for num_threads(n_threads_)
    for (int64_t t = 0; t < rows; ++t) rms_norm(x + t * E, L.ffn_norm.data(), xn + t * E, E, eps);
    if (rows == 0) continue;
    // ---- feed-forward block ----
    matmul_obs(L.ffn_gate, xn, rows, gate_.data(), obs);
    matmul_obs(L.ffn_up, xn, rows, up_.data(), obs);
#pragma omp parallel for num_threads(n_threads_)
    for (int64_t t = 0; t < rows; ++t) silu_mul(gate_.data() + t * n_ff, up_.data() + t * n_ff, n_ff);
    matmul_obs(L.ffn_down, gate_.data(), rows, tmp_.data(), obs);
#pragma omp parallel for num_threads(n_threads_)
    for (int64_t t = 0; t < rows; ++t) {
      float* xt = x + t * E;
      const float* ft = tmp_.data() + t * E;
      for (int64_t i = 0; i < E; ++i) xt[i] += ft[i];
    }
  }

  // ---- output ---- (with an observer: one sequence, every row kept, logits from first_output)
  const int64_t o0 = obs ? first_output : 0;
#pragma omp parallel for num_threads(n_threads_)
  for (int64_t t = 0; t < rows; ++t) rms_norm(x + t * E, m_.output_norm().data(), xn + t * E, E, eps);
  if (obs) obs->observe(m_.output(), xn, rows);
  if (rows > o0) matmul(m_.output(), xn + o0 * E, rows - o0, logits.data(), n_threads_);
  n_past_ += n;
}

}  // namespace smolq
