// The full codebook search of one lattice sign group in the error-feedback quantizer's group
// metric (ef_codec.h, search_group_metric; docs/optimize.md "Lattice groups"). The plain search
// (iq::code_group) scores codebook points with a diagonal weighting and, off the grid, only the
// nearest shell of the rounded point; the group's exact OBQ cost |L (x - y)|^2 (L = M^-T, M the
// group's 8 x 8 block of the factor) couples the 8 coordinates, so its best point may lie
// anywhere in the codebook. Here every point is scored in that metric: one 8-d point per group
// for IQ2 (256-1024 points), two 4-d points for IQ3 (256/512 points each, searched in turn
// with the other fixed, two rounds).
#include <algorithm>
#include <cstdint>
#include <limits>

#include "quantize/ef_codec.h"

namespace smolq::ef::detail {
namespace {

// Columns of L scaled by the decoded level values: col[k][l][i] = s * sign_k * lv[l] * L[i][k]
// (zero above the diagonal), so that L y = sum_k col[k][level_k].
struct LevelColumns {
  float col[8][8][8];
  LevelColumns(const iq::ScaledLatticeSpec& spec, const float* lt, float s, uint8_t signs) {
    const int nl = spec.lattice->nlevels();
    for (int k = 0; k < 8; ++k) {
      const float sg = (signs >> k) & 1 ? -1.0f : 1.0f;
      for (int l = 0; l < nl; ++l) {
        const float v = s * spec.levels[l] * sg;
        for (int i = 0; i < 8; ++i) col[k][l][i] = i >= k ? v * lt[i * 8 + k] : 0.0f;
      }
    }
  }
};

// The best point of the codebook for coordinates [k0, k0 + dim) given the residual r0 of the
// other coordinates (r0 = L x - the other coordinates' columns): argmin_g |r0 - sum_k col|^2.
// Ties keep the lowest index >= the first strict minimum, so `start` wins any tie with it.
int best_point(const iq::Lattice& lat, const LevelColumns& lc, int k0, const float* r0, int start, float& best) {
  const int dim = lat.dim(), n = lat.size();
  int arg = start;
  {
    float r[8];
    std::copy(r0, r0 + 8, r);
    for (int k = 0; k < dim; ++k)
      for (int i = 0; i < 8; ++i) r[i] -= lc.col[k0 + k][lat.level(start, k)][i];
    best = 0.0f;
    for (int i = 0; i < 8; ++i) best += r[i] * r[i];
  }
  for (int g = 0; g < n; ++g) {
    float r[8];
    std::copy(r0, r0 + 8, r);
    for (int k = 0; k < dim; ++k) {
      const float* c = lc.col[k0 + k][lat.level(g, k)];
      for (int i = 0; i < 8; ++i) r[i] -= c[i];
    }
    float cost = 0.0f;
    for (int i = 0; i < 8; ++i) cost += r[i] * r[i];
    if (cost < best) {
      best = cost;
      arg = g;
    }
  }
  return arg;
}

}  // namespace

void search_group_metric(const iq::ScaledLatticeSpec& spec, const float* x, const float* lt, float s, uint8_t signs,
                         uint16_t* grid, float* y) {
  const iq::Lattice& lat = *spec.lattice;
  const int dim = lat.dim(), parts = 8 / dim;
  const LevelColumns lc(spec, lt, s, signs);
  float z[8];  // L x
  for (int i = 0; i < 8; ++i) {
    float v = 0.0f;
    for (int j = 0; j <= i; ++j) v += lt[i * 8 + j] * x[j];
    z[i] = v;
  }
  // With one part the search is exact; with two, each part is searched with the other fixed
  // (each step can only lower the cost), two rounds.
  const int rounds = parts == 1 ? 1 : 2;
  for (int round = 0; round < rounds; ++round)
    for (int p = 0; p < parts; ++p) {
      float r0[8];
      std::copy(z, z + 8, r0);
      for (int q = 0; q < parts; ++q) {
        if (q == p) continue;
        for (int k = 0; k < dim; ++k)
          for (int i = 0; i < 8; ++i) r0[i] -= lc.col[q * dim + k][lat.level(grid[q], k)][i];
      }
      float best;
      grid[p] = static_cast<uint16_t>(best_point(lat, lc, p * dim, r0, grid[p], best));
    }
  iq::decode_group(spec, s, grid, signs, y);
}

}  // namespace smolq::ef::detail
