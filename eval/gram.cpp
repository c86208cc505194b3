#include "eval/gram.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "formats/cpu_features.h"
#include "formats/error.h"
#include "formats/interrupt.h"
#include "eval/forward.h"
#include "eval/forward_kernels.h"
#include "eval/matmul.h"

namespace smolq {
namespace {

// Tokens per Gram product: the transposed block (d x kTokenBlock f32) stays in L2 for
// d <= 2048 and the f32 partial sums over 256 products lose nothing that matters next to the
// rounding error being measured; blocks are summed in double.
constexpr int64_t kTokenBlock = 256;
// Rows of H per matmul call: the lower triangle is computed in row blocks [i0, i1) against
// columns [0, i1), so about d * kRowBlock / 2 products above the diagonal are wasted (10% at
// d = 576); small blocks waste less but call the matmul more often. A multiple of the AVX-512
// tile's 6 tokens. Bounds the f32 product buffer to d x kRowBlock floats.
constexpr int64_t kRowBlock = 96;

// A plain f32 matrix over caller memory, in the shape the forward pass's matmul reads.
WeightMatrix f32_view(const float* data, int64_t rows, int64_t cols) {
  WeightMatrix w;
  w.name = "gram";
  w.type = GgmlType::F32;
  w.rows = static_cast<uint64_t>(rows);
  w.cols = static_cast<uint64_t>(cols);
  w.row_bytes = static_cast<uint64_t>(cols) * sizeof(float);
  w.data = reinterpret_cast<const std::byte*>(data);
  return w;
}

// Causal multi-head attention of one chunk of n tokens (grouped-query heads), llama.cpp's
// formula: out = softmax(q k^T / sqrt(head_dim)) v per head. q: [n][q_dim], k, v: [n][kv_dim].
// As in the forward pass (eval/forward.cpp): a task is a block of up to 6 (AVX-512, keys packed
// in groups of 8 per kv head) or 3 consecutive queries of one head sharing the loads of keys and
// values; every score and output has the bits of one query at a time (dot_f32, weighted_rows).
void chunk_attention(const ModelConfig& c, const float* q, const float* k, const float* v, int64_t n, float* out,
                     int n_threads) {
  const int64_t hd = static_cast<int64_t>(c.head_dim), n_head = static_cast<int64_t>(c.n_head);
  const int64_t n_gqa = static_cast<int64_t>(c.n_gqa()), n_kv = static_cast<int64_t>(c.n_head_kv);
  const int64_t q_dim = static_cast<int64_t>(c.q_dim()), kv_dim = static_cast<int64_t>(c.kv_dim());
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const bool packed = cpu::has_avx512();
  const int qb = packed ? 6 : 3;
  const int64_t groups = (n + 7) / 8;
  std::vector<float> kp(packed ? static_cast<size_t>(n_kv * groups * 8 * hd) : 0);
  if (packed) {
#pragma omp parallel for num_threads(n_threads)
    for (int64_t task = 0; task < n_kv * groups; ++task) {
      const int64_t h = task % n_kv, grp = task / n_kv;
      const float* rows[8];
      const int nr = static_cast<int>(std::min<int64_t>(8, n - grp * 8));
      for (int r = 0; r < nr; ++r) rows[r] = k + (grp * 8 + r) * kv_dim + h * hd;
      detail::pack_group8(rows, nr, hd, kp.data() + (h * groups + grp) * 8 * hd);
    }
  }
  std::vector<float> scratch(static_cast<size_t>(n_threads) * static_cast<size_t>(qb * n));
  const int64_t n_blocks = (n + qb - 1) / qb;
#pragma omp parallel for schedule(dynamic, 2) num_threads(n_threads)
  for (int64_t task = 0; task < n_blocks * n_head; ++task) {
    const int64_t t0 = task / n_head * qb, h = task % n_head, g = h / n_gqa;
    const int nq = static_cast<int>(std::min<int64_t>(qb, n - t0));
    float* sc = scratch.data() + static_cast<size_t>(omp_get_thread_num()) * static_cast<size_t>(qb * n);
    const float* qs[6];
    for (int i = 0; i < nq; ++i) qs[i] = q + (t0 + i) * q_dim + h * hd;
    if (packed) dot_rows_packed(qs, nq, kp.data() + g * groups * 8 * hd, t0 + nq, hd, sc, n);
    else dot_rows(qs, nq, k + g * hd, kv_dim, t0 + nq, hd, sc, n);
    for (int i = 0; i < nq; ++i) {
      float* sv = sc + i * n;
      for (int64_t j = 0; j <= t0 + i; ++j) sv[j] *= scale;
      softmax_inplace(sv, t0 + i + 1);
    }
    weighted_rows_block(sc, n, nq, v + g * hd, kv_dim, t0 + 1, hd, out + t0 * q_dim + h * hd, q_dim);
  }
}

// The activations of all calibration tokens for one model: the partly quantized one the
// consumer's substitutions build up, or (with GramOptions::cross) the full-precision one.
struct Stream {
  std::vector<float> x;     // [N][n_embd] residual stream of every calibration token
  std::vector<float> xn;    // [N][n_embd] normalised input of a block, then a block's output
  std::vector<float> attn;  // [N][q_dim] attention output (heads concatenated)
  std::vector<float> g;     // [N][n_ff] gated FFN activation (ffn_down's input)
  void resize(int64_t N, const ModelConfig& c) {
    x.resize(static_cast<size_t>(N) * c.n_embd);
    xn.resize(x.size());
    attn.resize(static_cast<size_t>(N) * c.q_dim());
    g.resize(static_cast<size_t>(N) * c.n_ff);
  }
};

class GramPass {
 public:
  GramPass(const Model& m, std::span<const int32_t> tokens, const GramOptions& o, GramConsumer& consumer)
      : m_(m), c_(m.config()), o_(o), consumer_(consumer), n_chunks_(gram_chunks(static_cast<int64_t>(tokens.size()), o)),
        N_(n_chunks_ * o.n_ctx), E_(static_cast<int64_t>(c_.n_embd)) {
    rope_cs_ = rope_table(c_, m.rope_freq_factors(), o.n_ctx);
    q_.resize(N_, c_);
    for (int64_t t = 0; t < N_; ++t) {
      int32_t tok = tokens[static_cast<size_t>(t)];
      if (o.add_bos && t % o.n_ctx == 0) tok = o.bos_id;
      if (tok < 0 || static_cast<uint64_t>(tok) >= c_.n_vocab)
        throw Error("calibration token id " + std::to_string(tok) + " is outside the vocabulary");
      m.tok_embd().dequantize_row(static_cast<uint64_t>(tok), q_.x.data() + t * E_);
    }
    if (o.cross) {
      f_.resize(N_, c_);
      f_.x = q_.x;  // token_embd is never substituted: both streams start equal
    }
    m.release_pages(m.tok_embd().name);
  }

  void run() {
    for (size_t il = 0; il < m_.n_layers(); ++il) {
      check_interrupted();
      layer(il);
    }
    if (o_.output && !m_.tied_output()) {
      norm(q_, m_.output_norm().data());
      if (o_.cross) norm(f_, m_.output_norm().data());
      emit(GramSite::kOutput, -1, {m_.output().name}, &Stream::xn, E_);
    }
  }

 private:
  void norm(Stream& s, const float* gain) {
    const float eps = static_cast<float>(c_.rms_eps);
#pragma omp parallel for num_threads(o_.n_threads)
    for (int64_t t = 0; t < N_; ++t) rms_norm(s.x.data() + t * E_, gain, s.xn.data() + t * E_, E_, eps);
  }

  // H (and C) of the input `field` of the streams, handed to the consumer.
  void emit(GramSite site, int64_t il, std::vector<std::string> names, std::vector<float> Stream::*field, int64_t d) {
    GramMatrix g;
    g.site = site;
    g.layer = il;
    g.weights = std::move(names);
    g.dim = d;
    g.n_tokens = N_;
    const float* xq = (q_.*field).data();
    const float* xf = o_.cross ? (f_.*field).data() : nullptr;
    if (xf && o_.cross_low_rank && gram_low_rank(N_, d)) {
      g.xq = {xq, static_cast<size_t>(N_ * d)};
      g.xf = {xf, static_cast<size_t>(N_ * d)};
      xf = nullptr;  // H alone (its triangle: the same bits as its whole rows)
    }
    gram_sums(g, xq, xf, N_, o_.n_threads);
    consumer_.on_gram(g);
  }

  // x += y W^T over all tokens, through the stream's xn ([N][rows]) as scratch.
  void add_matmul(Stream& s, const WeightMatrix& w, const float* in) {
    float* tmp = s.xn.data();
    matmul(w, in, N_, tmp, o_.n_threads);
    const int64_t total = N_ * E_;
#pragma omp parallel for num_threads(o_.n_threads)
    for (int64_t i = 0; i < total; ++i) s.x[static_cast<size_t>(i)] += tmp[i];
  }

  void attention(Stream& s, const LayerWeights& L) {
    const int64_t q_dim = static_cast<int64_t>(c_.q_dim()), kv_dim = static_cast<int64_t>(c_.kv_dim());
    const int64_t hd = static_cast<int64_t>(c_.head_dim), n_rot = static_cast<int64_t>(c_.rope_dim), n = o_.n_ctx;
    std::vector<float> q(static_cast<size_t>(n * q_dim)), k(static_cast<size_t>(n * kv_dim)), v(k.size());
    for (int64_t ch = 0; ch < n_chunks_; ++ch) {
      const float* xc = s.xn.data() + ch * n * E_;
      matmul(L.wq, xc, n, q.data(), o_.n_threads);
      matmul(L.wk, xc, n, k.data(), o_.n_threads);
      matmul(L.wv, xc, n, v.data(), o_.n_threads);
      if (L.use_rope) {
#pragma omp parallel for num_threads(o_.n_threads)
        for (int64_t t = 0; t < n; ++t) {
          const float* cs = rope_cs_.data() + t * n_rot;
          for (int64_t h = 0; h < static_cast<int64_t>(c_.n_head); ++h) rope_rotate_pairs(q.data() + t * q_dim + h * hd, cs, n_rot);
          for (int64_t h = 0; h < static_cast<int64_t>(c_.n_head_kv); ++h) rope_rotate_pairs(k.data() + t * kv_dim + h * hd, cs, n_rot);
        }
      }
      chunk_attention(c_, q.data(), k.data(), v.data(), n, s.attn.data() + ch * n * q_dim, o_.n_threads);
    }
  }

  void gated_ffn(Stream& s, const LayerWeights& L) {
    const int64_t n_ff = static_cast<int64_t>(c_.n_ff), n = o_.n_ctx;
    std::vector<float> up(static_cast<size_t>(n * n_ff));
    for (int64_t ch = 0; ch < n_chunks_; ++ch) {
      const float* xc = s.xn.data() + ch * n * E_;
      float* gc = s.g.data() + ch * n * n_ff;
      matmul(L.ffn_gate, xc, n, gc, o_.n_threads);
      matmul(L.ffn_up, xc, n, up.data(), o_.n_threads);
#pragma omp parallel for num_threads(o_.n_threads)
      for (int64_t t = 0; t < n; ++t) silu_mul(gc + t * n_ff, up.data() + t * n_ff, n_ff);
    }
  }

  void layer(size_t il) {
    const LayerWeights& L = m_.layer(il);  // sees substitutions made by the consumer
    // The full-precision stream runs on the weights as they are before this layer's sites are
    // emitted (the consumer substitutes a site's weights only when its H is handed over).
    const LayerWeights L0 = o_.cross ? L : LayerWeights{};
    const int64_t q_dim = static_cast<int64_t>(c_.q_dim()), n_ff = static_cast<int64_t>(c_.n_ff);
    const int64_t li = static_cast<int64_t>(il);
    const bool x2 = o_.cross;
    // ---- attention ----
    norm(q_, L.attn_norm.data());
    if (x2) norm(f_, L0.attn_norm.data());
    emit(GramSite::kAttnIn, li, {L.wq.name, L.wk.name, L.wv.name}, &Stream::xn, E_);
    attention(q_, L);
    if (x2) attention(f_, L0);
    emit(GramSite::kAttnOut, li, {L.wo.name}, &Stream::attn, q_dim);
    add_matmul(q_, L.wo, q_.attn.data());
    if (x2) add_matmul(f_, L0.wo, f_.attn.data());
    // ---- feed-forward ----
    norm(q_, L.ffn_norm.data());
    if (x2) norm(f_, L0.ffn_norm.data());
    emit(GramSite::kFfnIn, li, {L.ffn_gate.name, L.ffn_up.name}, &Stream::xn, E_);
    gated_ffn(q_, L);
    if (x2) gated_ffn(f_, L0);
    emit(GramSite::kFfnDown, li, {L.ffn_down.name}, &Stream::g, n_ff);
    add_matmul(q_, L.ffn_down, q_.g.data());
    if (x2) add_matmul(f_, L0.ffn_down, f_.g.data());
    // The pass never reads this layer's stored weights again.
    for (const WeightMatrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) m_.release_pages(w->name);
  }

  const Model& m_;
  const ModelConfig& c_;
  GramOptions o_;
  GramConsumer& consumer_;
  int64_t n_chunks_, N_, E_;
  std::vector<float> rope_cs_;  // [n_ctx][rope_dim] (cos, sin) pairs
  Stream q_;                    // the model as the consumer's substitutions leave it
  Stream f_;                    // the full-precision model (GramOptions::cross only)
};

}  // namespace

const char* gram_site_name(GramSite s) {
  switch (s) {
    case GramSite::kAttnIn: return "attn_in";
    case GramSite::kAttnOut: return "attn_out";
    case GramSite::kFfnIn: return "ffn_in";
    case GramSite::kFfnDown: return "ffn_down";
    case GramSite::kOutput: return "output";
  }
  return "?";
}

std::vector<float> GramMatrix::mean_square() const {
  std::vector<float> m(static_cast<size_t>(dim));
  for (int64_t i = 0; i < dim; ++i)
    m[static_cast<size_t>(i)] = n_tokens ? static_cast<float>(h_diag[static_cast<size_t>(i)] / static_cast<double>(n_tokens)) : 0.0f;
  return m;
}

int64_t gram_chunks(int64_t n_tokens, const GramOptions& o) {
  if (o.n_ctx < 16 || o.n_chunks < 1) throw UsageError("calibration needs chunks of at least 16 tokens and at least one chunk");
  const int64_t whole = n_tokens / o.n_ctx;
  if (whole < 1)
    throw UsageError("the calibration text has " + std::to_string(n_tokens) + " tokens, fewer than one chunk of " +
                     std::to_string(o.n_ctx));
  return std::min(whole, o.n_chunks);
}

void run_gram_pass(const Model& model, std::span<const int32_t> tokens, const GramOptions& o, GramConsumer& consumer) {
  GramPass(model, tokens, o, consumer).run();
}

namespace {

// Up to this d the double sums are kept whole (H and C: 64 MB at d = 2048) and H's products are
// a lower triangle. Beyond it they are summed kGroupRows rows at a time (a multiple of
// kRowBlock: 48 MB of doubles per matrix at d = 8192; every group transposes the token blocks
// again), and with C the rows of H are whole too: C - H needs H's upper triangle in double
// while the group is summed (a third more products than H's triangle plus C).
constexpr int64_t kWholeMaxDim = 2048;
constexpr int64_t kGroupRows = 8 * kRowBlock;

// tokens t0 .. t0 + tb of x (n x d row-major), rows [0, nrows) of the transposed block [d][tb].
void transpose_block(float* xt, const float* x, int64_t t0, int64_t tb, int64_t nrows, int64_t d, int n_threads) {
#pragma omp parallel for num_threads(n_threads)
  for (int64_t i = 0; i < nrows; ++i)
    for (int64_t t = 0; t < tb; ++t) xt[i * tb + t] = x[(t0 + t) * d + i];
}

}  // namespace

void gram_sums(GramMatrix& g, const float* xq, const float* xf, int64_t n, int n_threads) {
  const int64_t d = g.dim;
  const bool cross = xf != nullptr;
  g.h.assign(static_cast<size_t>(d * d), 0.0f);
  g.h_diag.assign(static_cast<size_t>(d), 0.0);
  g.c_minus_h.clear();
  if (cross) g.c_minus_h.assign(static_cast<size_t>(d * d), 0.0f);
  const int64_t G = d <= kWholeMaxDim ? d : std::min(d, kGroupRows);
  const bool full_rows = cross && G < d;  // H's whole rows (else its lower triangle)
  std::vector<float> qt(static_cast<size_t>(d * kTokenBlock)), ft(cross ? qt.size() : 0);  // [d][tb] transposed tokens
  std::vector<float> y(static_cast<size_t>(d * kRowBlock));                                // [rows][cols] products
  std::vector<double> hg(static_cast<size_t>(G * d)), cg(cross ? hg.size() : 0);           // a group of rows
  for (int64_t g0 = 0; g0 < d; g0 += G) {
    const int64_t g1 = std::min(d, g0 + G);
    std::fill(hg.begin(), hg.end(), 0.0);
    std::fill(cg.begin(), cg.end(), 0.0);
    for (int64_t t0 = 0; t0 < n; t0 += kTokenBlock) {
      const int64_t tb = std::min(kTokenBlock, n - t0);
      // The lower triangle (diagonal included) in row blocks [i0, i1) against columns [0, i1):
      // y[r * i1 + c] = sum_t x_t[i0 + r] x_t[c]; or whole rows (the products are symmetric in
      // their operands: the same bits as the mirrored triangle).
      transpose_block(qt.data(), xq, t0, tb, cross ? d : g1, d, n_threads);
      if (cross) transpose_block(ft.data(), xf, t0, tb, d, d, n_threads);
      for (int64_t i0 = g0; i0 < g1; i0 += kRowBlock) {
        const int64_t i1 = std::min(d, i0 + kRowBlock), rows = i1 - i0, cols = full_rows ? d : i1;
        matmul(f32_view(qt.data(), cols, tb), qt.data() + i0 * tb, rows, y.data(), n_threads);
#pragma omp parallel for num_threads(n_threads)
        for (int64_t r = 0; r < rows; ++r) {
          double* hr = hg.data() + (i0 - g0 + r) * d;
          const float* yr = y.data() + r * cols;
          const int64_t end = full_rows ? d : i0 + r + 1;
          for (int64_t c = 0; c < end; ++c) hr[c] += static_cast<double>(yr[c]);
        }
        if (!cross) continue;
        matmul(f32_view(ft.data(), d, tb), qt.data() + i0 * tb, rows, y.data(), n_threads);
#pragma omp parallel for num_threads(n_threads)
        for (int64_t r = 0; r < rows; ++r) {
          double* cr = cg.data() + (i0 - g0 + r) * d;
          const float* yr = y.data() + r * d;
          for (int64_t c = 0; c < d; ++c) cr[c] += static_cast<double>(yr[c]);
        }
      }
    }
#pragma omp parallel for num_threads(n_threads)
    for (int64_t i = g0; i < g1; ++i) {
      const double* hr = hg.data() + (i - g0) * d;
      float* out = g.h.data() + i * d;
      const int64_t end = full_rows ? d : i + 1;
      for (int64_t c = 0; c < end; ++c) out[c] = static_cast<float>(hr[c]);
      g.h_diag[static_cast<size_t>(i)] = hr[i];
      if (!cross) continue;
      const double* cr = cg.data() + (i - g0) * d;
      float* dm = g.c_minus_h.data() + i * d;
      if (full_rows)
        for (int64_t c = 0; c < d; ++c) dm[c] = static_cast<float>(cr[c] - hr[c]);
      else  // one group: H's upper triangle is its lower one, all in hg
        for (int64_t c = 0; c < d; ++c)
          dm[c] = static_cast<float>(cr[c] - (c <= i ? hr[c] : hg[static_cast<size_t>(c * d + i)]));
    }
  }
  if (full_rows) return;
  // Mirror the lower triangle, in tiles (a row-wise mirror would stride through all of H).
  constexpr int64_t kT = 64;
  float* h = g.h.data();
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
  for (int64_t ib = 0; ib < d; ib += kT)
    for (int64_t jb = ib; jb < d; jb += kT)
      for (int64_t i = ib; i < std::min(d, ib + kT); ++i)
        for (int64_t j = std::max(jb, i + 1); j < std::min(d, jb + kT); ++j) h[i * d + j] = h[j * d + i];
}

}  // namespace smolq
