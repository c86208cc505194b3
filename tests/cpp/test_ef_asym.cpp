// Asymmetric calibration (quantize/ef_asym.h, `--opt-inputs asym`): the shift to the target
// w* = (H + lambda I)^-1 (C + lambda I) w against a direct double solve, the asymmetric target
// lowering ||W^ X~^T - W X^T||^2 against the symmetric sweep on a toy layer (calibration and
// held-out tokens), and bytes that do not depend on the thread count.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "formats/error.h"
#include "quantize/ef_asym.h"
#include "quantize/ef_linalg.h"
#include "quantize/error_feedback.h"
#include "quantize/registry.h"

namespace smolq {
namespace {

// Inputs of a toy layer in the full-precision model (x: 8 shared factors + noise, decaying
// channel scales) and in a partly quantized one (x~ = x + x M + small noise: the drift the
// earlier rounded layers leave, correlated with x). M and the loadings are fixed by the seed;
// every call draws fresh tokens.
struct ToyStreams {
  int64_t d;
  std::vector<float> load, scale, mix;
  // rising: channel scales grow along d_in (the descending-diagonal block order then reverses).
  ToyStreams(int64_t dim, uint32_t seed, bool rising = false) : d(dim) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n01(0.0f, 1.0f);
    load.resize(static_cast<size_t>(8 * d));
    for (auto& v : load) v = 0.8f * n01(rng);
    scale.resize(static_cast<size_t>(d));
    for (int64_t i = 0; i < d; ++i)
      scale[i] = 0.3f + 1.5f * std::exp(-3.0f * static_cast<float>(rising ? d - 1 - i : i) / static_cast<float>(d));
    mix.resize(static_cast<size_t>(d * d));
    for (auto& v : mix) v = 0.25f * n01(rng) / std::sqrt(static_cast<float>(d));
  }
  // H = X~^T X~, C = X~^T X, Hx = X^T X over `n` fresh tokens.
  void grams(int64_t n, uint32_t seed, std::vector<double>& H, std::vector<double>& C, std::vector<double>& Hx) const {
    std::vector<double> X, Xq;
    draw(n, seed, X, Xq);
    H.assign(static_cast<size_t>(d * d), 0.0);
    C = H;
    Hx = H;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < d; ++i)
      for (int64_t t = 0; t < n; ++t)
        for (int64_t j = 0; j < d; ++j) {
          H[i * d + j] += Xq[t * d + i] * Xq[t * d + j];
          C[i * d + j] += Xq[t * d + i] * X[t * d + j];
          Hx[i * d + j] += X[t * d + i] * X[t * d + j];
        }
  }
  // `n` fresh tokens of both streams (n x d row-major): X full precision, Xq partly quantized.
  void draw(int64_t n, uint32_t seed, std::vector<double>& X, std::vector<double>& Xq) const {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n01(0.0f, 1.0f);
    X.assign(static_cast<size_t>(n * d), 0.0);
    Xq.assign(X.size(), 0.0);
    for (int64_t t = 0; t < n; ++t) {
      float f[8];
      for (float& v : f) v = n01(rng);
      for (int64_t i = 0; i < d; ++i) {
        float s = n01(rng);
        for (int k = 0; k < 8; ++k) s += f[k] * load[k * d + i];
        X[t * d + i] = s * scale[i];
      }
      for (int64_t i = 0; i < d; ++i) {
        double s = X[t * d + i] + 0.05 * scale[i] * n01(rng);
        for (int64_t j = 0; j < d; ++j) s += X[t * d + j] * mix[j * d + i];
        Xq[t * d + i] = s;
      }
    }
  }
};

// H = X~^T X~ and C = X~^T X of n float tokens (row-major n x d), summed in double.
void double_grams(const std::vector<float>& xq, const std::vector<float>& xf, int64_t n, int64_t d,
                  std::vector<double>& H, std::vector<double>& C) {
  H.assign(static_cast<size_t>(d * d), 0.0);
  C.assign(H.size(), 0.0);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < d; ++j) {
        H[i * d + j] += static_cast<double>(xq[t * d + i]) * xq[t * d + j];
        C[i * d + j] += static_cast<double>(xq[t * d + i]) * xf[t * d + j];
      }
}

// Gaussian elimination with partial pivoting of (H + lambda I) x = (C + lambda I) w in double.
std::vector<double> solve_target(const std::vector<double>& H, const std::vector<double>& C, double lambda,
                                 const float* w, int64_t d) {
  std::vector<double> A(static_cast<size_t>(d * (d + 1)));
  for (int64_t i = 0; i < d; ++i) {
    double b = lambda * w[i];
    for (int64_t j = 0; j < d; ++j) {
      A[i * (d + 1) + j] = H[i * d + j] + (i == j ? lambda : 0.0);
      b += C[i * d + j] * w[j];
    }
    A[i * (d + 1) + d] = b;
  }
  for (int64_t k = 0; k < d; ++k) {
    int64_t p = k;
    for (int64_t i = k + 1; i < d; ++i)
      if (std::fabs(A[i * (d + 1) + k]) > std::fabs(A[p * (d + 1) + k])) p = i;
    for (int64_t j = 0; j <= d; ++j) std::swap(A[k * (d + 1) + j], A[p * (d + 1) + j]);
    for (int64_t i = k + 1; i < d; ++i) {
      const double m = A[i * (d + 1) + k] / A[k * (d + 1) + k];
      for (int64_t j = k; j <= d; ++j) A[i * (d + 1) + j] -= m * A[k * (d + 1) + j];
    }
  }
  std::vector<double> x(static_cast<size_t>(d));
  for (int64_t i = d - 1; i >= 0; --i) {
    double v = A[i * (d + 1) + d];
    for (int64_t j = i + 1; j < d; ++j) v -= A[i * (d + 1) + j] * x[j];
    x[i] = v / A[i * (d + 1) + i];
  }
  return x;
}

// sum over rows of |X~ q - X w|^2 = q^T H q - 2 q^T C w + w^T Hx w.
double asym_error(const std::vector<float>& Q, const std::vector<float>& W, int64_t rows, int64_t d,
                  const std::vector<double>& H, const std::vector<double>& C, const std::vector<double>& Hx) {
  double e = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* q = Q.data() + r * d;
    const float* w = W.data() + r * d;
    for (int64_t i = 0; i < d; ++i) {
      double hq = 0.0, cw = 0.0, hw = 0.0;
      for (int64_t j = 0; j < d; ++j) {
        hq += H[i * d + j] * q[j];
        cw += C[i * d + j] * w[j];
        hw += Hx[i * d + j] * w[j];
      }
      e += q[i] * hq - 2.0 * q[i] * cw + w[i] * hw;
    }
  }
  return e;
}

std::vector<float> random_weights(int64_t rows, int64_t d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::vector<float> W(static_cast<size_t>(rows * d));
  for (auto& v : W) v = 0.05f * n01(rng);
  return W;
}

// The shift as the dense-operator form computes it (the implementation before the factor was
// read in place): dense copies of C - H, U^T (columns reversed) and U with zeros, each product
// one FMA chain per element in ascending order of the shared dimension.
std::vector<float> dense_shift(const std::vector<double>& H, const std::vector<double>& C, const ef::Factor& f,
                               std::vector<float> W, int64_t rows) {
  const int64_t d = f.d_in, be = f.block_elems, B = 256;
  std::vector<int64_t> col(static_cast<size_t>(d));
  for (int64_t a = 0; a < d; ++a) col[a] = static_cast<int64_t>(f.order[a / be]) * be + a % be;
  const size_t dd = static_cast<size_t>(d * d);
  std::vector<float> dt(dd), ut(dd, 0.0f), ud(dd, 0.0f);
  for (int64_t b = 0; b < d; ++b) {
    for (int64_t a = 0; a < d; ++a) dt[b * d + a] = static_cast<float>(C[col[a] * d + col[b]] - H[col[a] * d + col[b]]);
    for (int64_t j = b; j < d; ++j) ud[b * d + j] = ut[j * d + d - 1 - b] = f.row(b)[j];
  }
  std::vector<const float*> pdt(static_cast<size_t>(d)), put(pdt.size()), pud(pdt.size());
  for (int64_t k = 0; k < d; ++k) pdt[k] = dt.data() + k * d, put[k] = ut.data() + k * d, pud[k] = ud.data() + k * d;
  const size_t n = static_cast<size_t>(rows * d);
  std::vector<float> wv(n), z(n, 0.0f), yr(n, 0.0f), y(n), t(n, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t a = 0; a < d; ++a) wv[r * d + a] = W[r * d + col[a]];
  ef::linalg::deferred_update(z.data(), rows, d, 0, wv.data(), d, d, pdt.data());
  for (int64_t j0 = 0; j0 < d; j0 += B) {
    const int64_t j1 = std::min(d, j0 + B);
    ef::linalg::deferred_update(yr.data(), rows, d, d - j1, z.data() + j0, d, j1 - j0, put.data() + j0);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < d; ++k) y[r * d + k] = yr[r * d + d - 1 - k];
  for (int64_t k0 = 0; k0 < d; k0 += B) {
    const int64_t k1 = std::min(d, k0 + B);
    ef::linalg::deferred_update(t.data(), rows, d, k0, y.data() + k0, d, k1 - k0, pud.data() + k0);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t a = 0; a < d; ++a) W[r * d + col[a]] -= t[r * d + a];
  return W;
}

std::vector<float> decode(GgmlType type, const std::vector<std::byte>& bytes, int64_t rows, int64_t d) {
  std::vector<float> out(static_cast<size_t>(rows * d));
  dequantize_rows(type, bytes, out);
  return out;
}

}  // namespace

TEST_SUITE("test_ef_asym") {
  TEST_CASE("the shift is (H + lambda I)^-1 (C + lambda I) w, in any visiting order") {
    const int64_t d = 64, rows = 5;
    const ToyStreams s(d, 11, /*rising=*/true);
    std::vector<double> H, C, Hx;
    s.grams(512, 12, H, C, Hx);
    ef::Settings st;  // damp 0.3, descending-diagonal block order (a real permutation at 32-wide blocks)
    const ef::Factor f = ef::prepare(H, d, 32, st, 1);
    CHECK(f.order == std::vector<int32_t>{1, 0});
    std::vector<float> W = random_weights(rows, d, 13);
    const std::vector<float> W0 = W;
    ef::apply_asym_shift(ef::prepare_asym_shift(H, C, f, 1), f, W, rows, 1);
    double mean_diag = 0.0;
    for (int64_t i = 0; i < d; ++i) mean_diag += H[i * d + i];
    const double lambda = st.damp * mean_diag / static_cast<double>(d);
    double worst = 0.0, moved = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<double> x = solve_target(H, C, lambda, W0.data() + r * d, d);
      for (int64_t i = 0; i < d; ++i) {
        worst = std::max(worst, std::fabs(W[r * d + i] - x[i]));
        moved = std::max(moved, std::fabs(x[i] - W0[r * d + i]));
      }
    }
    CHECK(moved > 1e-3);           // the target really differs from w
    CHECK(worst < 1e-3 * moved);   // and the float shift reproduces it
  }

  TEST_CASE("the asymmetric target lowers |W^ X~^T - W X^T|^2 against the symmetric sweep; bytes thread-independent") {
    const int64_t d = 256, rows = 32;
    const ToyStreams s(d, 21);
    std::vector<double> H, C, Hx, Ht, Ct, Hxt;
    s.grams(8 * d, 22, H, C, Hx);     // calibration tokens
    s.grams(8 * d, 23, Ht, Ct, Hxt);  // held out
    const std::vector<float> W = random_weights(rows, d, 24);
    std::vector<float> imat(static_cast<size_t>(d));
    for (int64_t i = 0; i < d; ++i) imat[i] = static_cast<float>(H[i * d + i] / (8.0 * d));
    for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::IQ4_XS, GgmlType::IQ3_XXS}) {
      CAPTURE(type_info(type).name);
      const int be = static_cast<int>(type_info(type).block_elems);
      const ef::Factor f = ef::prepare(H, d, be, ef::Settings{}, 2);
      const size_t nbytes = *row_bytes(type, d) * rows;
      std::vector<std::byte> sym(nbytes), asym(nbytes), asym1(nbytes);
      ef::quantize_tensor(type, W, rows, d, f, imat, sym, 2);
      const ef::AsymShift sh = ef::prepare_asym_shift(H, C, f, 2);
      std::vector<float> target = W, target1 = W;
      ef::apply_asym_shift(sh, f, target, rows, 2);
      ef::quantize_tensor(type, target, rows, d, f, imat, asym, 2);
      ef::apply_asym_shift(ef::prepare_asym_shift(H, C, f, 1), f, target1, rows, 1);
      ef::quantize_tensor(type, target1, rows, d, f, imat, asym1, 1);
      CHECK(target1 == target);
      CHECK(asym1 == asym);
      const std::vector<float> qs = decode(type, sym, rows, d), qa = decode(type, asym, rows, d);
      const double cal = asym_error(qa, W, rows, d, H, C, Hx) / asym_error(qs, W, rows, d, H, C, Hx);
      const double held = asym_error(qa, W, rows, d, Ht, Ct, Hxt) / asym_error(qs, W, rows, d, Ht, Ct, Hxt);
      std::printf("  asym / sym %-8s calibration %.3f held out %.3f\n", std::string(type_info(type).name).c_str(), cal, held);
      CHECK(cal < 0.9);
      CHECK(held < 0.95);
    }
  }

  TEST_CASE("the factor read in place gives the dense-operator form's bits (partial blocks, partial chunks)") {
    // d_in 576: two whole diagonal blocks of 256 and one of 64; 150 rows: a whole chunk of 128
    // and a partial one, not a multiple of the 16-column tiles.
    const int64_t d = 576, rows = 150;
    const ToyStreams s(d, 31);
    std::vector<double> H, C, Hx;
    s.grams(1024, 32, H, C, Hx);
    const ef::Factor f = ef::prepare(H, d, 32, ef::Settings{}, 2);
    const std::vector<float> W = random_weights(rows, d, 33);
    const std::vector<float> want = dense_shift(H, C, f, W, rows);
    CHECK(want != W);
    for (int threads : {1, 2}) {
      std::vector<float> got = W;
      ef::apply_asym_shift(ef::prepare_asym_shift(H, C, f, threads), f, got, rows, threads);
      CHECK(got == want);
    }
  }

  TEST_CASE("the low-rank form G (D w) with fewer tokens than d_in is the direct solve's target; thread-independent") {
    // d_in 576 (diagonal blocks of 256, 256, 64), 300 tokens (< d_in: the form the calibration
    // pass hands over; padded to 304, token chunks of 128 and a partial one), 150 rows (a whole
    // row chunk and a partial one), a real block permutation.
    const int64_t d = 576, n = 300, rows = 150;
    const ToyStreams s(d, 41, /*rising=*/true);
    std::vector<double> X, Xq;
    s.draw(n, 42, X, Xq);
    const std::vector<float> xf(X.begin(), X.end()), xq(Xq.begin(), Xq.end());
    std::vector<double> H, C;  // of the float tokens, in double
    double_grams(xq, xf, n, d, H, C);
    const ef::Factor f = ef::prepare(H, d, 32, ef::Settings{}, 2);
    CHECK(f.order.front() != 0);
    const std::vector<float> W0 = random_weights(rows, d, 43);
    std::vector<float> W2 = W0, W1 = W0, Wd = W0;
    ef::apply_asym_low_rank(ef::prepare_asym_low_rank(xq, xf, n, f, 2), W2, rows, 2);
    const ef::AsymLowRank lr1 = ef::prepare_asym_low_rank(xq, xf, n, f, 1);
    CHECK(lr1.n == 320);
    CHECK(!ef::asym_push_through(n, d));  // G through the factor
    ef::apply_asym_low_rank(lr1, W1, rows, 1);
    CHECK(W1 == W2);  // bits do not depend on the thread count
    ef::apply_asym_shift(ef::prepare_asym_shift(H, C, f, 2), f, Wd, rows, 2);  // the dense form
    double worst = 0.0, worst_dense = 0.0, moved = 0.0;
    for (int64_t r = 0; r < rows; r += 7) {
      const std::vector<double> x = solve_target(H, C, f.lambda, W0.data() + r * d, d);
      for (int64_t i = 0; i < d; ++i) {
        worst = std::max(worst, std::fabs(W2[r * d + i] - x[i]));
        worst_dense = std::max(worst_dense, std::fabs(Wd[r * d + i] - x[i]));
        moved = std::max(moved, std::fabs(x[i] - W0[r * d + i]));
      }
    }
    std::printf("  low-rank shift: max error %.3g, dense form %.3g, max move %.3g\n", worst, worst_dense, moved);
    CHECK(moved > 1e-3);
    CHECK(worst < 1e-3 * moved);
    // A partial shift is that fraction of the whole one.
    std::vector<float> Wh = W0;
    ef::apply_asym_low_rank(lr1, Wh, rows, 1, 0.5f);
    double half = 0.0;
    for (size_t i = 0; i < Wh.size(); ++i) half = std::max(half, std::fabs((Wh[i] - W0[i]) - 0.5 * (W1[i] - W0[i])));
    CHECK(half < 1e-6 * moved);
    CHECK_THROWS_AS(ef::prepare_asym_low_rank(xq, std::span<const float>(xf).first(xf.size() - 1), n, f, 1), UsageError);
    std::vector<float> bad(static_cast<size_t>(d * 3 - 1));
    CHECK_THROWS_AS(ef::apply_asym_low_rank(lr1, bad, 3, 1), UsageError);
  }

  TEST_CASE("push-through G (few tokens, many inputs) gives the direct solve's target; thread-independent") {
    // 100 tokens (padded to 128: Cholesky tiles of 64 and a partial token tile) and d_in 768.
    const int64_t d = 768, n = 100, rows = 40;
    CHECK(ef::asym_push_through(n, d));
    const ToyStreams s(d, 51);
    std::vector<double> X, Xq;
    s.draw(n, 52, X, Xq);
    const std::vector<float> xf(X.begin(), X.end()), xq(Xq.begin(), Xq.end());
    std::vector<double> H, C;
    double_grams(xq, xf, n, d, H, C);
    const ef::Factor f = ef::prepare(H, d, 256, ef::Settings{}, 2);
    const std::vector<float> W0 = random_weights(rows, d, 53);
    std::vector<float> W2 = W0, W1 = W0;
    const ef::AsymLowRank lr2 = ef::prepare_asym_low_rank(xq, xf, n, f, 2), lr1 = ef::prepare_asym_low_rank(xq, xf, n, f, 1);
    CHECK(lr1.n == 128);
    CHECK(lr1.gt == lr2.gt);
    ef::apply_asym_low_rank(lr2, W2, rows, 2);
    ef::apply_asym_low_rank(lr1, W1, rows, 1);
    CHECK(W1 == W2);
    double worst = 0.0, moved = 0.0;
    for (int64_t r = 0; r < rows; r += 3) {
      const std::vector<double> x = solve_target(H, C, f.lambda, W0.data() + r * d, d);
      for (int64_t i = 0; i < d; ++i) {
        worst = std::max(worst, std::fabs(W2[r * d + i] - x[i]));
        moved = std::max(moved, std::fabs(x[i] - W0[r * d + i]));
      }
    }
    std::printf("  push-through shift: max error %.3g, max move %.3g\n", worst, moved);
    CHECK(moved > 1e-3);
    CHECK(worst < 1e-3 * moved);
  }

  TEST_CASE("mismatched sizes are one clear error") {
    const int64_t d = 64;
    std::vector<double> H(static_cast<size_t>(d * d), 0.0);
    for (int64_t i = 0; i < d; ++i) H[i * d + i] = 1.0;
    const ef::Factor f = ef::prepare(H, d, 32, ef::Settings{}, 1);
    CHECK_THROWS_AS(ef::prepare_asym_shift(H, std::vector<double>(10), f, 1), UsageError);
    const ef::AsymShift sh = ef::prepare_asym_shift(H, H, f, 1);
    std::vector<float> W(static_cast<size_t>(d * 3 - 1));
    CHECK_THROWS_AS(ef::apply_asym_shift(sh, f, W, 3, 1), UsageError);
    const ef::Factor f256 = ef::prepare(H, d, 64, ef::Settings{}, 1);  // another factor
    std::vector<float> W3(static_cast<size_t>(d * 3));
    CHECK_THROWS_AS(ef::apply_asym_shift(sh, f256, W3, 3, 1), UsageError);
  }
}
}  // namespace smolq
