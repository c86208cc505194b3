// Q2_0's lane-batched search (quantize/q2_0_lanes.h): the AVX2 (16 blocks per call) and
// AVX-512 (32) instantiations write the scalar reference's bytes on the awkward inputs the
// golden rows do not have: block counts that leave most lanes of the last call as padding,
// zero and near-zero blocks, a lone nonzero weight, huge and subnormal-adjacent magnitudes,
// weights on exact rounding ties, and an imatrix with zero columns. Each instruction set runs
// only where the CPU has it (test_quants_iq compares whatever quantize_q2_0 selects).
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "formats/cpu_features.h"
#include "quantize/q2_0_lanes.h"
#include "quantize/quants_iq.h"

using namespace smolq;

namespace {

using Quantizer = void (*)(std::span<const float>, std::span<std::byte>, int64_t, std::span<const float>);

// Rows of n_per_row weights: block b of the whole input gets pattern b % 9.
std::vector<float> awkward_rows(int64_t n_per_row, int rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> heavy(3.0f);
  std::vector<float> x(static_cast<size_t>(n_per_row) * rows);
  for (size_t b = 0; b < x.size() / 64; ++b) {
    float* v = x.data() + b * 64;
    for (int i = 0; i < 64; ++i) v[i] = 0.02f * heavy(rng);
    switch (b % 9) {
      case 1: std::fill(v, v + 64, 0.0f); break;                      // all zero
      case 2: for (int i = 0; i < 64; ++i) v[i] *= 1e-33f; break;     // below the 1e-30 cutoff
      case 3: std::fill(v, v + 64, 0.0f); v[17] = -0.3f; break;       // one weight
      case 4: for (int i = 0; i < 64; ++i) v[i] = 0.25f * static_cast<float>(i % 7 - 3); break;  // ties
      case 5: for (int i = 0; i < 64; ++i) v[i] *= 1e30f; break;      // huge
      case 6: for (int i = 0; i < 64; ++i) v[i] = std::fabs(v[i]); break;  // one sign
      case 7: std::fill(v, v + 64, 0.125f); break;                     // constant
      default: break;
    }
  }
  return x;
}

void check_same_bytes(Quantizer fast) {
  for (int64_t n_per_row : {int64_t{64}, int64_t{576}, int64_t{1536}}) {
    for (int rows : {1, 3, 7}) {
      const std::vector<float> x = awkward_rows(n_per_row, rows, static_cast<uint32_t>(n_per_row + rows));
      std::vector<float> im(static_cast<size_t>(n_per_row));
      for (size_t i = 0; i < im.size(); ++i) im[i] = i % 5 == 0 ? 0.0f : 0.1f + static_cast<float>(i % 13);
      for (bool imat : {false, true}) {
        CAPTURE(n_per_row);
        CAPTURE(rows);
        CAPTURE(imat);
        const std::span<const float> w = imat ? std::span<const float>(im) : std::span<const float>();
        std::vector<std::byte> a(x.size() / 64 * sizeof(BlockQ2_0)), b(a.size());
        kernels::quantize_q2_0_ref(x, a, n_per_row, w);
        fast(x, b, n_per_row, w);
        CHECK(a == b);
      }
    }
  }
}

}  // namespace

TEST_SUITE("test_q2_0_lanes") {
#if defined(__x86_64__)
  TEST_CASE("the AVX2 search writes the reference's bytes") {
    if (!cpu::has_avx2()) return;
    check_same_bytes(kernels::q2_0::quantize_avx2);
  }

  TEST_CASE("the AVX-512 search writes the reference's bytes") {
    if (!cpu::has_avx512()) return;
    check_same_bytes(kernels::q2_0::quantize_avx512);
  }
#endif

  TEST_CASE("zero and sub-cutoff blocks code every weight as level 0 with d = 0") {
    std::vector<float> x(128, 0.0f);
    for (int i = 64; i < 128; ++i) x[i] = 1e-33f * static_cast<float>(i - 96);
    std::vector<std::byte> q(2 * sizeof(BlockQ2_0));
    kernels::quantize_q2_0(x, q, 128, {});
    std::vector<float> y(128, 1.0f);
    kernels::dequantize_q2_0(q, y);
    for (float v : y) CHECK(v == 0.0f);
  }
}
