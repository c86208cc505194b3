// The integer matmul (eval/matmul_int.h): every integer decoder reproduces the registry's
// dequantizer exactly; the AVX-512 VNNI kernel and activation quantizer write the reference
// kernel's bits; results do not depend on the thread count or the batch split; the error
// against a double-precision product of the dequantized weights stays inside the bound the
// int16 activations allow; non-finite activations reach the outputs. F16/BF16 weights: the
// per-block re-quantization keeps its bound, the kernels agree bit for bit at the model's row
// widths, the panels cached on the matrix give the bits of per-call packing, and the error
// against the exact product stays within the weight + activation bound.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "eval/matmul.h"
#include "eval/matmul_int.h"
#include "quantize/weight_ints.h"
#include "formats/cpu_features.h"
#include "quantize/registry.h"

using namespace smolq;

namespace {

constexpr GgmlType kTypes[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q4_1,
                               GgmlType::Q5_1, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

std::vector<float> gaussian(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A quantized matrix and the storage it points into.
struct QMatrix {
  std::vector<std::byte> bytes;
  std::vector<float> deq;  // the registry's dequantization, rows x cols
  WeightMatrix m;
};

QMatrix make(GgmlType t, int rows, int cols, uint32_t seed) {
  QMatrix q;
  const auto w = gaussian(static_cast<size_t>(rows) * cols, seed, 0.05f);
  const uint64_t rb = *row_bytes(t, cols);
  q.bytes.resize(rb * rows);
  quantize_rows(t, w, q.bytes, cols);
  q.deq.resize(w.size());
  dequantize_rows(t, q.bytes, q.deq);
  q.m.name = "w";
  q.m.type = t;
  q.m.rows = rows;
  q.m.cols = cols;
  q.m.row_bytes = rb;
  q.m.data = q.bytes.data();
  return q;
}

// Columns for a type: a whole number of its blocks, with a partial last kernel super-step.
int cols_for(GgmlType t) { return type_info(t).block_elems == 256 ? 768 : 608; }

// The reference integer matmul of q (rows x cols) on n Gaussian tokens (seed, scale 3) against
// a double product of the dequantized weights: for every output, |y - exact| <= 1.01 bound +
// 1e-6 magnitude and bound < max_share magnitude, with bound = bound_of(weight row, token, cols)
// and magnitude the sum of |w x|.
template <class BoundOf>
void check_error_bound(const QMatrix& q, int rows, int cols, int n, uint32_t seed, double max_share, BoundOf bound_of) {
  const auto x = gaussian(static_cast<size_t>(n) * cols, seed, 3.0f);
  std::vector<float> y(static_cast<size_t>(n) * rows);
  matmul_int(q.m, x.data(), n, y.data(), 2, true);
  for (int tk = 0; tk < n; ++tk) {
    const float* xt = x.data() + static_cast<size_t>(tk) * cols;
    for (int r = 0; r < rows; ++r) {
      const float* wr = q.deq.data() + static_cast<size_t>(r) * cols;
      double exact = 0, mag = 0;
      for (int k = 0; k < cols; ++k) {
        exact += static_cast<double>(wr[k]) * xt[k];
        mag += std::fabs(static_cast<double>(wr[k]) * xt[k]);
      }
      const double bound = bound_of(wr, xt, cols);
      const double err = std::fabs(y[static_cast<size_t>(tk) * rows + r] - exact);
      CHECK(err <= 1.01 * bound + 1e-6 * mag);
      CHECK(bound < max_share * mag);
    }
  }
}

}  // namespace

TEST_SUITE("test_matmul_int") {
  TEST_CASE("integer decoders reproduce the dequantizer exactly") {
    for (GgmlType t : kTypes) {
      CAPTURE(type_info(t).name);
      const IntWeightFormat* f = int_weight_format(t);
      REQUIRE(f != nullptr);
      const int rows = 5, cols = cols_for(t);
      const QMatrix q = make(t, rows, cols, 11);
      std::vector<uint8_t> ints(cols);
      std::vector<float> scale(cols / f->group), bias(cols / f->group, 0.0f);
      for (int r = 0; r < rows; ++r) {
        f->decode(q.m.row_ptr(r), cols, ints.data(), scale.data(), bias.data());
        int mismatches = 0;
        for (int k = 0; k < cols; ++k) {
          const int g = k / f->group;
          const float w = scale[g] * static_cast<float>(ints[k] - f->offset);
          const float v = f->has_bias ? w + bias[g] : w;
          mismatches += v != q.deq[static_cast<size_t>(r) * cols + k];
        }
        CHECK(mismatches == 0);
      }
    }
    CHECK(int_weight_format(GgmlType::F16) == nullptr);
    CHECK(int_weight_format(GgmlType::Q2_K) == nullptr);
  }

  TEST_CASE("AVX-512 kernel == reference kernel, for any thread count and batch split") {
    if (!cpu::has_avx512_vnni()) {
      MESSAGE("no AVX-512 VNNI here: only the reference kernel is checked");
    }
    const int rows = 37, n = 11;
    for (GgmlType t : kTypes) {
      CAPTURE(type_info(t).name);
      const int cols = cols_for(t);
      const QMatrix q = make(t, rows, cols, 21);
      auto x = gaussian(static_cast<size_t>(n) * cols, 22);
      x[5] = 40.0f;  // an outlier channel, as LLM activations have
      std::vector<float> ref(static_cast<size_t>(n) * rows);
      matmul_int(q.m, x.data(), n, ref.data(), 1, true);
      if (cpu::has_avx512_vnni()) {
        for (int threads : {1, 2, 3}) {
          std::vector<float> y(ref.size());
          matmul_int(q.m, x.data(), n, y.data(), threads, false);
          CHECK(y == ref);
        }
        std::vector<float> y(ref.size());
        matmul(q.m, x.data(), n, y.data(), 2);  // the dispatcher: this path when enabled
        if (int_matmul_enabled()) {
          CHECK(y == ref);
        } else {
          std::vector<float> yf(ref.size());
          matmul_f32(q.m, x.data(), n, yf.data(), 2);
          CHECK(y == yf);
        }
      }
      // Token by token: the same values.
      for (int tk = 0; tk < n; ++tk) {
        std::vector<float> y(rows);
        matmul_int(q.m, x.data() + static_cast<size_t>(tk) * cols, 1, y.data(), 2, !cpu::has_avx512_vnni());
        CHECK(std::equal(y.begin(), y.end(), ref.begin() + static_cast<ptrdiff_t>(tk) * rows));
      }
    }
  }

  TEST_CASE("a row order (HF Q/K layout) permutes the outputs and nothing else") {
    const int rows = 40, cols = 576, n = 7;
    QMatrix q = make(GgmlType::Q5_0, rows, cols, 51);
    const auto x = gaussian(static_cast<size_t>(n) * cols, 52);
    std::vector<float> y(static_cast<size_t>(n) * rows), yp(y.size());
    const bool ref = !cpu::has_avx512_vnni();
    matmul_int(q.m, x.data(), n, y.data(), 2, ref);
    q.m.row_order.resize(rows);
    for (int r = 0; r < rows; ++r) q.m.row_order[r] = static_cast<uint32_t>((r * 3) % rows);
    matmul_int(q.m, x.data(), n, yp.data(), 3, ref);
    for (int t = 0; t < n; ++t)
      for (int r = 0; r < rows; ++r) CHECK(yp[t * rows + r] == y[t * rows + q.m.row_order[r]]);
  }

  TEST_CASE("error against a double product of the dequantized weights stays within the int16 bound") {
    const int rows = 29, n = 6;
    for (GgmlType t : kTypes) {
      CAPTURE(type_info(t).name);
      const int cols = cols_for(t);
      // |x - x~| <= d / 2 per activation, d = block max / 32767 (blocks of 32); and far inside
      // what 8-bit activations would allow (the bound's 256x): bound < 0.01 of the magnitude.
      check_error_bound(make(t, rows, cols, 31), rows, cols, n, 32, 0.01, [](const float* wr, const float* xt, int cols) {
        double bound = 0;
        for (int b = 0; b < cols; b += 32) {
          double amax = 0;
          for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(static_cast<double>(xt[b + j])));
          for (int j = 0; j < 32; ++j) bound += std::fabs(static_cast<double>(wr[b + j])) * amax / 32767.0 / 2.0;
        }
        return bound;
      });
    }
  }


  TEST_CASE("a non-finite activation makes the outputs it reaches NaN") {
    const QMatrix q = make(GgmlType::Q8_0, 8, 64, 41);
    auto x = gaussian(2 * 64, 42);
    x[64 + 3] = std::numeric_limits<float>::infinity();
    std::vector<float> y(2 * 8);
    matmul_int(q.m, x.data(), 2, y.data(), 1, true);
    for (int r = 0; r < 8; ++r) {
      CHECK(std::isfinite(y[r]));
      CHECK(std::isnan(y[8 + r]));
    }
    if (cpu::has_avx512_vnni()) {
      std::vector<float> z(2 * 8);
      matmul_int(q.m, x.data(), 2, z.data(), 1, false);
      for (int r = 0; r < 8; ++r) CHECK(std::isnan(z[8 + r]));
    }
  }
}

TEST_SUITE("test_matmul_int") {
  TEST_CASE("F16/BF16 weights re-quantized per block: |q| <= 8191, |w - d q| <= d / 2, exact at the block max") {
    // The int32 budget of one group: 32 products of |w_int| <= 8191 and |x_int| <= 8191.
    CHECK(static_cast<double>(detail::kWideWeightMax) * detail::kWideActMax * 32 < 2147483648.0);
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int trial = 0; trial < 2000; ++trial) {
      float w[32];
      const float mag = std::ldexp(1.0f, trial % 200 - 140);  // down to the f32 subnormals (BF16 range)
      for (float& v : w) v = nd(rng) * mag;
      if (trial % 7 == 0) w[trial % 32] *= 100.0f;  // an outlier
      int16_t q[32];
      float d;
      detail::requantize_block(w, q, &d);
      if (cpu::has_avx512_vnni()) {  // the AVX-512 form: the same bits
        int16_t q2[32];
        float d2;
        detail::requantize_block_avx512(w, q2, &d2);
        CHECK(d2 == d);
        CHECK(std::equal(q, q + 32, q2));
      }
      float amax = 0;
      for (float v : w) amax = std::max(amax, std::fabs(v));
      CHECK(d == amax / detail::kWideWeightMax);
      int hit_max = 0;
      for (int j = 0; j < 32; ++j) {
        CHECK(std::abs(q[j]) <= 8191);
        const double err = std::fabs(static_cast<double>(w[j]) - static_cast<double>(d) * q[j]);
        // + what a subnormal d (max |w| < 2^-113) loses: its rounding (<= 2^-150) times |q|.
        CHECK(err <= 0.5 * d * (1 + 1e-6) + 8191.0 * std::numeric_limits<float>::denorm_min());
        hit_max += std::abs(q[j]) == 8191;
      }
      if (d >= std::numeric_limits<float>::min()) CHECK(hit_max >= 1);  // else d rounded (subnormal)
    }
    float zero[32] = {}, bad[32] = {};
    bad[3] = std::numeric_limits<float>::infinity();
    int16_t q[32];
    float d;
    detail::requantize_block(zero, q, &d);
    CHECK(d == 0.0f);
    CHECK(std::all_of(q, q + 32, [](int16_t v) { return v == 0; }));
    detail::requantize_block(bad, q, &d);
    CHECK(std::isnan(d));
    // Ties go to even: 0.5 and 2.5 steps of d.
    float tie[32] = {};
    tie[0] = 8191.0f;
    tie[1] = 0.5f;
    tie[2] = 2.5f;
    tie[3] = -1.5f;
    detail::requantize_block(tie, q, &d);
    CHECK(d == 1.0f);
    CHECK(q[1] == 0);
    CHECK(q[2] == 2);
    CHECK(q[3] == -2);
    if (cpu::has_avx512_vnni()) {
      int16_t q2[32];
      float d2;
      detail::requantize_block_avx512(tie, q2, &d2);
      CHECK(d2 == d);
      CHECK(std::equal(q, q + 32, q2));
      detail::requantize_block_avx512(bad, q2, &d2);
      CHECK(std::isnan(d2));
      CHECK(std::all_of(q2, q2 + 32, [](int16_t v) { return v == 0; }));
    }
  }

  TEST_CASE("F16/BF16: AVX-512 == reference, any threads and batch split, cached panels == per-call packing") {
    const int n = 9;
    for (GgmlType t : {GgmlType::F16, GgmlType::BF16}) {
      for (int cols : {576, 1536, 2048}) {
        CAPTURE(type_info(t).name);
        CAPTURE(cols);
        const int rows = cols == 2048 ? 21 : 37;
        QMatrix q = make(t, rows, cols, 61);
        auto x = gaussian(static_cast<size_t>(n) * cols, 62);
        x[7] = 60.0f;
        std::vector<float> ref(static_cast<size_t>(n) * rows);
        matmul_int(q.m, x.data(), n, ref.data(), 1, true);
        const bool fast = cpu::has_avx512_vnni();
        for (int threads : {1, 2, 3}) {
          std::vector<float> y(ref.size());
          matmul_int(q.m, x.data(), n, y.data(), threads, !fast);
          CHECK(y == ref);
        }
        // A cache (as Model::open attaches one): filled by the first call, read by the next.
        q.m.int_panels = std::make_shared<IntPanelCache>();
        for (int threads : {2, 1}) {
          std::vector<float> y(ref.size());
          matmul_int(q.m, x.data(), n, y.data(), threads, !fast);
          CHECK(y == ref);
          CHECK(q.m.int_panels->filled);
        }
        for (int tk = 0; tk < n; ++tk) {
          std::vector<float> y(rows);
          matmul_int(q.m, x.data() + static_cast<size_t>(tk) * cols, 1, y.data(), 2, !fast);
          CHECK(std::equal(y.begin(), y.end(), ref.begin() + static_cast<ptrdiff_t>(tk) * rows));
        }
        // Other bytes behind the same matrix: the cache is refilled, not reused.
        QMatrix other = make(t, rows, cols, 63);
        q.m.data = other.bytes.data();
        std::vector<float> y(ref.size()), yo(ref.size());
        matmul_int(q.m, x.data(), n, y.data(), 2, !fast);
        matmul_int(other.m, x.data(), n, yo.data(), 2, !fast);
        CHECK(y == yo);
      }
    }
  }

  TEST_CASE("panel caches: F16 only, within the budget") {
    QMatrix f16 = make(GgmlType::F16, 37, 576, 81), q8 = make(GgmlType::Q8_0, 37, 576, 82);
    uint64_t budget = 1000;
    attach_int_panel_cache(f16.m, &budget);
    CHECK(f16.m.int_panels == nullptr);  // 3 panels of 16 x (576 x 2 + 18 x 4) bytes do not fit
    CHECK(budget == 1000);
    budget = uint64_t{1} << 20;
    attach_int_panel_cache(q8.m, &budget);
    CHECK(q8.m.int_panels == nullptr);  // block types are packed from their blocks on every call
    attach_int_panel_cache(f16.m, &budget);
    if (uses_int_matmul(f16.m)) {
      CHECK(f16.m.int_panels != nullptr);
      CHECK(budget == (uint64_t{1} << 20) - (3 * 16 * (576 * 2 + 18 * 4) + 64));
    } else {
      CHECK(f16.m.int_panels == nullptr);
    }
  }

  TEST_CASE("F16/BF16: error against the exact product within the weight + activation bound") {
    const int rows = 23, n = 5, cols = 576;
    for (GgmlType t : {GgmlType::F16, GgmlType::BF16}) {
      CAPTURE(type_info(t).name);
      check_error_bound(make(t, rows, cols, 71), rows, cols, n, 72, 2e-3, [](const float* wr, const float* xt, int cols) {
        double bound = 0;
        for (int b = 0; b < cols; b += 32) {
          double wmax = 0, xmax = 0;
          for (int j = 0; j < 32; ++j) {
            wmax = std::max(wmax, std::fabs(static_cast<double>(wr[b + j])));
            xmax = std::max(xmax, std::fabs(static_cast<double>(xt[b + j])));
          }
          const double dw = wmax / 8191.0, dx = xmax / 8191.0;
          // |w~ x~ - w x| <= |x| dw / 2 + |w| dx / 2 + dw dx / 4
          for (int j = 0; j < 32; ++j)
            bound += std::fabs(static_cast<double>(xt[b + j])) * dw / 2 + std::fabs(static_cast<double>(wr[b + j])) * dx / 2 +
                     dw * dx / 4;
        }
        return bound;
      });
    }
  }

}
