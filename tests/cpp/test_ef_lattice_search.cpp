// The full codebook search of a lattice sign group in the error-feedback group metric
// (quantize/ef_codec.h, search_group_metric): never worse in |L (x - y)|^2 than the code it
// starts from (the candidates of the three-candidate rule), the exact minimum over the codebook
// for the 8-d IQ2 grids (against brute force), decoded values that are the codes' values, and
// strictly better than the diagonal search on a clear share of correlated groups.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>

#include "quantize/ef_codec.h"
#include "quantize/iq_lattice_formats.h"
#include "quantize/registry.h"

namespace smolq {
namespace {

// |L (x - y)|^2 in double, L lower triangular row-major.
double metric(const float* lt, const float* x, const float* y) {
  double c = 0.0;
  for (int i = 0; i < 8; ++i) {
    double v = 0.0;
    for (int j = 0; j <= i; ++j) v += static_cast<double>(lt[i * 8 + j]) * (static_cast<double>(x[j]) - y[j]);
    c += v * v;
  }
  return c;
}

// Decoded values of a group's codes: s * level * sign.
void decode(const iq::ScaledLatticeSpec& spec, const uint16_t* grid, uint8_t signs, float s, float* y) {
  const iq::Lattice& lat = *spec.lattice;
  const int dim = lat.dim();
  for (int p = 0; p < 8 / dim; ++p)
    for (int k = 0; k < dim; ++k) {
      const int j = p * dim + k;
      y[j] = s * spec.levels[lat.level(grid[p], k)] * ((signs >> j) & 1 ? -1.0f : 1.0f);
    }
}

// A correlated group: L = M^-T for an M of positive diagonal and off-diagonal entries of
// `coupling` relative size (the factor's diagonal block), targets around the scale's levels.
struct Group {
  float x[8], lt[64], w[8];
};
Group random_group(std::mt19937& rng, float coupling, float s, float top) {
  std::normal_distribution<float> n01(0.0f, 1.0f);
  Group g{};
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j <= i; ++j) g.lt[i * 8 + j] = i == j ? 0.5f + std::fabs(n01(rng)) : coupling * n01(rng);
  for (int i = 0; i < 8; ++i) {
    g.x[i] = s * 0.6f * top * n01(rng);
    double d = 0.0;  // diagonal of L^T L: the metric's own per-element weights
    for (int r = i; r < 8; ++r) d += static_cast<double>(g.lt[r * 8 + i]) * g.lt[r * 8 + i];
    g.w[i] = static_cast<float>(d);
  }
  return g;
}

}  // namespace

TEST_SUITE("test_ef_lattice_search") {
  TEST_CASE("never worse than its start, exact for 8-d grids, better than the diagonal search") {
    using G = GgmlType;
    for (G t : {G::IQ2_XXS, G::IQ2_XS, G::IQ2_S, G::IQ3_XXS, G::IQ3_S}) {
      const iq::ScaledLatticeSpec& spec = *kernels::lattice_format(t)->spec;
      const iq::Lattice& lat = *spec.lattice;
      CAPTURE(std::string(type_info(t).name));
      std::mt19937 rng(7);
      const float s = 0.01f;
      int better = 0;
      constexpr int kGroups = 300;
      for (int n = 0; n < kGroups; ++n) {
        const Group g = random_group(rng, n % 2 ? 0.6f : 0.2f, s, spec.levels[lat.nlevels() - 1]);
        uint16_t grid[2] = {0, 0};
        uint8_t signs = 0;
        float y0[8], y[8], yd[8];
        iq::code_group(spec, g.x, g.w, s, grid, signs, y0);  // the diagonal search: the start
        const double c0 = metric(g.lt, g.x, y0);
        uint16_t found[2] = {grid[0], grid[1]};
        ef::detail::search_group_metric(spec, g.x, g.lt, s, signs, found, y);
        decode(spec, found, signs, s, yd);
        for (int j = 0; j < 8; ++j) REQUIRE(y[j] == yd[j]);
        const double c = metric(g.lt, g.x, y);
        CHECK(c <= c0 * (1.0 + 1e-5));
        better += c < c0 * (1.0 - 1e-4);
        if (lat.dim() == 8) {  // brute force over the codebook with the same signs
          double best = std::numeric_limits<double>::max();
          for (int p = 0; p < lat.size(); ++p) {
            const uint16_t gp[1] = {static_cast<uint16_t>(p)};
            decode(spec, gp, signs, s, yd);
            best = std::min(best, metric(g.lt, g.x, yd));
          }
          CHECK(c <= best * (1.0 + 1e-5));
        }
      }
      std::printf("  %-7s full search better than the diagonal search on %d of %d groups\n",
                  std::string(type_info(t).name).c_str(), better, kGroups);
      CHECK(better > kGroups / 10);
    }
  }
}

}  // namespace smolq
