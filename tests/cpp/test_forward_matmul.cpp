// The forward pass's matmul and element-wise kernels: agreement with double-precision
// references on awkward shapes, bit-identical results for any thread count and token
// blocking, quantized weights equal to their dequantized f32 copy, and the AVX2 exp-based
// kernels against libm.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "formats/cpu_features.h"
#include "quantize/registry.h"
#include "eval/forward_kernels.h"
#include "eval/matmul.h"

using namespace smolq;

namespace {

std::vector<float> gaussian(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

WeightMatrix f32_matrix(const std::vector<float>& w, uint64_t rows, uint64_t cols) {
  WeightMatrix m;
  m.name = "w";
  m.type = GgmlType::F32;
  m.rows = rows;
  m.cols = cols;
  m.row_bytes = cols * 4;
  m.data = reinterpret_cast<const std::byte*>(w.data());
  return m;
}

}  // namespace

TEST_SUITE("test_forward_matmul") {
  TEST_CASE("matmul agrees with a double reference on odd shapes") {
    for (auto [rows, cols, n] : {std::tuple{13, 37, 7}, {4, 8, 3}, {1, 1, 1}, {70, 172, 11}, {129, 64, 50}}) {
      const auto w = gaussian(rows * cols, 1 + rows);
      const auto x = gaussian(n * cols, 2 + cols);
      const WeightMatrix m = f32_matrix(w, rows, cols);
      std::vector<float> y(n * rows);
      matmul(m, x.data(), n, y.data(), 2);
      for (int t = 0; t < n; ++t)
        for (int r = 0; r < rows; ++r) {
          double ref = 0, mag = 0;
          for (int k = 0; k < cols; ++k) {
            ref += static_cast<double>(w[r * cols + k]) * x[t * cols + k];
            mag += std::fabs(static_cast<double>(w[r * cols + k]) * x[t * cols + k]);
          }
          CHECK(std::fabs(y[t * rows + r] - ref) <= 1e-6 * mag + 1e-30);
        }
    }
  }

  TEST_CASE("matmul is bit-identical for any thread count and batch split; dot_f32 is the same sum") {
    const int rows = 203, cols = 584, n = 41;
    const auto w = gaussian(rows * cols, 3);
    const auto x = gaussian(n * cols, 4);
    const WeightMatrix m = f32_matrix(w, rows, cols);
    std::vector<float> ref(n * rows);
    matmul(m, x.data(), n, ref.data(), 1);
    for (int threads : {2, 3, 7}) {
      std::vector<float> y(n * rows);
      matmul(m, x.data(), n, y.data(), threads);
      CHECK(y == ref);
    }
    // Token by token (a different micro-kernel shape for every value).
    for (int t = 0; t < n; ++t) {
      std::vector<float> y(rows);
      matmul(m, x.data() + t * cols, 1, y.data(), 2);
      CHECK(std::equal(y.begin(), y.end(), ref.begin() + t * rows));
    }
    for (int r = 0; r < rows; r += 17) CHECK(dot_f32(w.data() + r * cols, x.data() + 5 * cols, cols) == ref[5 * rows + r]);
    // dot_rows (attention scores) computes the same sums.
    std::vector<float> s(3 * rows);
    const float* qs[3] = {x.data() + 9 * cols, x.data() + 10 * cols, x.data() + 11 * cols};
    for (int nq = 1; nq <= 3; ++nq) {
      dot_rows(qs, nq, w.data(), cols, rows, cols, s.data(), rows);
      CHECK(std::equal(s.begin(), s.begin() + nq * rows, ref.begin() + 9 * rows));
    }
  }

  TEST_CASE("AVX-512 8-row tiles, packed keys and blocked attention outputs keep the same bits") {
    // Tail columns (587 = 73 * 8 + 3) and a last group of 3 rows (203 = 25 * 8 + 3).
    const int rows = 203, cols = 587, n = 13;
    const auto w = gaussian(rows * cols, 21);
    const auto x = gaussian(n * cols, 22);
    std::vector<float> y(n * rows);
    matmul(f32_matrix(w, rows, cols), x.data(), n, y.data(), 2);
    for (int t = 0; t < n; ++t)
      for (int r = 0; r < rows; ++r) CHECK(y[t * rows + r] == dot_f32(w.data() + r * cols, x.data() + t * cols, cols));
    if (cpu::has_avx512()) {
      // Keys (rows of w) packed by 8, as the forward pass's K cache; up to 6 queries.
      std::vector<float> packed((rows + 7) / 8 * 8 * cols);
      for (int g = 0; g * 8 < rows; ++g) {
        const float* kr[8];
        const int nr = std::min(8, rows - g * 8);
        for (int r = 0; r < nr; ++r) kr[r] = w.data() + (g * 8 + r) * cols;
        detail::pack_group8(kr, nr, cols, packed.data() + g * 8 * cols);
      }
      const float* qs[6];
      for (int i = 0; i < 6; ++i) qs[i] = x.data() + i * cols;
      for (int nq = 1; nq <= 6; ++nq) {
        std::vector<float> s(6 * rows, -1.0f);
        dot_rows_packed(qs, nq, packed.data(), rows, cols, s.data(), rows);
        CHECK(std::equal(s.begin(), s.begin() + nq * rows, y.begin()));
      }
    }
    // weighted_rows_block: query i of the block sees n_keys + i rows of v; head sizes that
    // take the 64-column groups, a masked part and both.
    const auto p = gaussian(6 * 40, 23);
    for (int d : {64, 72, 13, 136}) {
      const auto v = gaussian(40 * d, 24 + d);
      for (int nq = 1; nq <= 6; ++nq) {
        std::vector<float> out(6 * d, -1.0f), ref(d);
        weighted_rows_block(p.data(), 40, nq, v.data(), d, 34, d, out.data(), d);
        for (int i = 0; i < nq; ++i) {
          weighted_rows(p.data() + i * 40, v.data(), d, 34 + i, d, ref.data());
          CHECK(std::equal(ref.begin(), ref.end(), out.begin() + i * d));
        }
      }
    }
  }

  TEST_CASE("long rows (d_in above 4096: the 1.7B/3B ffn_down) give the bits of dot_f32") {
    // 5004 columns with a 4-column tail; 101 tokens: several token blocks and a partial one;
    // 37 rows: a partial kernel tile.
    const int rows = 37, cols = 5004, n = 101;
    const auto w = gaussian(rows * cols, 11);
    const auto x = gaussian(n * cols, 12);
    std::vector<float> y1(n * rows), y3(n * rows);
    matmul_f32(f32_matrix(w, rows, cols), x.data(), n, y1.data(), 1);
    matmul_f32(f32_matrix(w, rows, cols), x.data(), n, y3.data(), 3);
    CHECK(y1 == y3);
    int mismatches = 0;
    for (int t = 0; t < n; ++t)
      for (int r = 0; r < rows; ++r)
        mismatches += dot_f32(w.data() + r * cols, x.data() + t * cols, cols) != y1[t * rows + r];
    CHECK(mismatches == 0);
  }

  TEST_CASE("quantized weights multiply exactly like their dequantized copy") {
    const int rows = 24, cols = 256, n = 9;
    const auto wf = gaussian(rows * cols, 5, 0.05f);
    const auto x = gaussian(n * cols, 6);
    for (GgmlType t : {GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K}) {
      const QTypeInfo& q = qtype(t);
      if (!q.can_quantize() || !q.can_dequantize()) continue;  // kernels still being written
      CAPTURE(type_info(t).name);
      const uint64_t rb = *row_bytes(t, cols);
      std::vector<std::byte> bytes(rb * rows);
      quantize_rows(t, wf, bytes, cols);
      std::vector<float> deq(rows * cols);
      dequantize_rows(t, bytes, deq);
      WeightMatrix m;
      m.name = "q";
      m.type = t;
      m.rows = rows;
      m.cols = cols;
      m.row_bytes = rb;
      m.data = bytes.data();
      std::vector<float> yq(n * rows), yf(n * rows);
      // The f32 path (matmul() takes the integer one for these types on AVX-512 VNNI CPUs:
      // tests/cpp/test_matmul_int.cpp).
      matmul_f32(m, x.data(), n, yq.data(), 2);
      matmul_f32(f32_matrix(deq, rows, cols), x.data(), n, yf.data(), 2);
      CHECK(yq == yf);
      // A row order (HF Q/K layout) permutes the outputs and nothing else.
      m.row_order.resize(rows);
      for (int r = 0; r < rows; ++r) m.row_order[r] = static_cast<uint32_t>((r * 5) % rows);
      std::vector<float> yp(n * rows);
      matmul_f32(m, x.data(), n, yp.data(), 3);
      for (int tt = 0; tt < n; ++tt)
        for (int r = 0; r < rows; ++r) CHECK(yp[tt * rows + r] == yf[tt * rows + m.row_order[r]]);
    }
  }

  TEST_CASE("weighted_rows and the exp-based kernels") {
    const int d = 72, nr = 19;
    const auto p = gaussian(nr, 7), v = gaussian(nr * d, 8);
    std::vector<float> out(d);
    weighted_rows(p.data(), v.data(), d, nr, d, out.data());
    for (int i = 0; i < d; ++i) {
      double ref = 0;
      for (int j = 0; j < nr; ++j) ref += static_cast<double>(p[j]) * v[j * d + i];
      CHECK(out[i] == doctest::Approx(ref).epsilon(1e-5));
    }
    // softmax / silu / logit stats / KL against double libm.
    auto xs = gaussian(1001, 9, 6.0f);
    xs[17] = -200.0f;  // far below the clamp
    xs[18] = 60.0f;
    std::vector<float> sm = xs;
    softmax_inplace(sm.data(), static_cast<int64_t>(sm.size()));
    double mx = -1e30, sum = 0;
    for (float f : xs) mx = std::max(mx, static_cast<double>(f));
    for (float f : xs) sum += std::exp(f - mx);
    for (size_t i = 0; i < xs.size(); ++i) CHECK(sm[i] == doctest::Approx(std::exp(xs[i] - mx) / sum).epsilon(1e-5).scale(1e-30));
    const LogitStats st = logit_stats(xs.data(), static_cast<int64_t>(xs.size()));
    CHECK(st.argmax == 18);
    CHECK(st.sum_exp == doctest::Approx(sum).epsilon(1e-6));
    std::vector<float> g = gaussian(333, 10, 8.0f), up = gaussian(333, 11);
    std::vector<float> gs = g;
    silu_mul(gs.data(), up.data(), 333);
    for (int i = 0; i < 333; ++i) {
      const double ref = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * up[i];
      CHECK(gs[i] == doctest::Approx(ref).epsilon(1e-5).scale(1e-6));
    }
    auto q = xs;
    for (auto& f : q) f += 0.01f * std::sin(f * 13.0f);
    const LogitStats sq = logit_stats(q.data(), static_cast<int64_t>(q.size()));
    double kl_ref = 0, qs = 0, qm = -1e30;
    for (float f : q) qm = std::max(qm, static_cast<double>(f));
    for (float f : q) qs += std::exp(f - qm);
    for (size_t i = 0; i < xs.size(); ++i) {
      const double lp = xs[i] - mx - std::log(sum), lq = q[i] - qm - std::log(qs);
      kl_ref += std::exp(lp) * (lp - lq);
    }
    const double kl = kl_sum(xs.data(), st.log_norm(), q.data(), sq.log_norm(), static_cast<int64_t>(xs.size()));
    CHECK(kl == doctest::Approx(kl_ref).epsilon(1e-3));
    CHECK(kl > 0);
  }

  TEST_CASE("rms_norm follows ggml: mean of squares in double, then x * scale * g") {
    const auto x = gaussian(576, 12), g = gaussian(576, 13);
    std::vector<float> y(576);
    rms_norm(x.data(), g.data(), y.data(), 576, 1e-5f);
    double ss = 0;
    for (float f : x) ss += static_cast<double>(f) * f;
    const double s = 1.0 / std::sqrt(ss / 576 + 1e-5);
    for (int i = 0; i < 576; ++i) CHECK(y[i] == doctest::Approx(x[i] * s * g[i]).epsilon(1e-6));
  }
}
