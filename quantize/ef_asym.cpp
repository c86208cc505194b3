#include "quantize/ef_asym.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "formats/error.h"
#include "quantize/ef_linalg.h"

namespace smolq::ef {
namespace {

// Rows per work item: the three products stream each matrix once per chunk, so a chunk should
// be long (each 256 x 256 slice of a matrix is read once from memory and then serves kRows / 8
// register tiles from L2); 5 buffers of kRows x d_in floats per thread (20 MB at d_in = 8192).
constexpr int64_t kRows = 128;
// Rows of a triangular factor per call of the deferred-update kernel: each call updates only the
// columns that the batch's rows have nonzero (a tail [c1, d_in)), about half of the product.
constexpr int64_t kBatch = 256;

}  // namespace

AsymShift prepare_asym_shift(std::span<const double> H, std::span<const double> C, const Factor& f, int n_threads) {
  if (C.size() != H.size()) throw UsageError("asymmetric calibration: H, C and the factor do not have matching sizes");
  std::vector<double> D(H.size());
  for (size_t i = 0; i < D.size(); ++i) D[i] = C[i] - H[i];
  return prepare_asym_shift(D, f, n_threads);
}

AsymShift prepare_asym_shift(std::span<const double> D, const Factor& f, int n_threads) {
  const int64_t d = f.d_in, be = f.block_elems;
  if (d <= 0 || d % 16 != 0 || D.size() != static_cast<size_t>(d * d) || f.u.size() != static_cast<size_t>(d * (d + 1) / 2))
    throw UsageError("asymmetric calibration: H, C and the factor do not have matching sizes");
  AsymShift s;
  s.d_in = d;
  s.col.resize(static_cast<size_t>(d));
  for (int64_t a = 0; a < d; ++a) s.col[a] = static_cast<int64_t>(f.order[a / be]) * be + a % be;
  const size_t dd = static_cast<size_t>(d * d);
  s.dt.resize(dd);
  s.ut.assign(dd, 0.0f);
  s.ud.assign(dd, 0.0f);
  bool finite = true;
#pragma omp parallel for num_threads(std::max(1, n_threads)) schedule(static) reduction(&& : finite)
  for (int64_t b = 0; b < d; ++b) {
    // dt[b][a] = (C - H)[col a][col b]: row b of dt is column b of the shift in visiting order.
    const int64_t cb = s.col[b];
    float* dr = s.dt.data() + b * d;
    for (int64_t a = 0; a < d; ++a) {
      const size_t i = static_cast<size_t>(s.col[a] * d + cb);
      const double v = D[i];
      finite = finite && std::isfinite(v);
      dr[a] = static_cast<float>(v);
    }
    const float* ub = f.row(b);  // U[b][j], j >= b
    for (int64_t j = b; j < d; ++j) {
      s.ud[static_cast<size_t>(b * d + j)] = ub[j];
      s.ut[static_cast<size_t>(j * d + (d - 1 - b))] = ub[j];  // column-reversed: row j nonzero from d - 1 - j on
    }
  }
  if (!finite) throw UsageError("asymmetric calibration: the cross Gram matrix is not finite");
  return s;
}

void apply_asym_shift(const AsymShift& s, std::span<float> W, int64_t rows, int n_threads, float alpha) {
  const int64_t d = s.d_in;
  if (W.size() != static_cast<size_t>(rows * d)) throw UsageError("asymmetric calibration: W is not rows x d_in");
  std::vector<const float*> dt(static_cast<size_t>(d)), ut(dt.size()), ud(dt.size());  // row pointers
  for (int64_t k = 0; k < d; ++k) {
    dt[k] = s.dt.data() + k * d;
    ut[k] = s.ut.data() + k * d;
    ud[k] = s.ud.data() + k * d;
  }
  const int64_t nchunks = (rows + kRows - 1) / kRows;
#pragma omp parallel num_threads(std::max(1, n_threads))
  {
    std::vector<float> wv(static_cast<size_t>(kRows * d)), z(wv.size()), yr(wv.size()), y(wv.size()), t(wv.size());
#pragma omp for schedule(dynamic, 1)
    for (int64_t ch = 0; ch < nchunks; ++ch) {
      const int64_t r0 = ch * kRows, nr = std::min(kRows, rows - r0);
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t a = 0; a < d; ++a) wv[r * d + a] = W[(r0 + r) * d + s.col[a]];
      std::fill(z.begin(), z.end(), 0.0f);
      std::fill(yr.begin(), yr.end(), 0.0f);
      std::fill(t.begin(), t.end(), 0.0f);
      // z = -(C - H) w, in batches of kBatch rows of dt so that a batch's column tiles stay in
      // L2 (per element the same FMA sequence over all d_in terms as one call).
      for (int64_t k0 = 0; k0 < d; k0 += kBatch) {
        const int64_t k1 = std::min(d, k0 + kBatch);
        linalg::deferred_update(z.data(), nr, d, 0, wv.data() + k0, d, k1 - k0, dt.data() + k0);
      }
      // yr = U (C - H) w, reversed: yr[d - 1 - k] = sum_j U[k][j] (-z[j]); the rows j of ut in
      // [j0, j1) are nonzero from column d - j1 on.
      for (int64_t j0 = 0; j0 < d; j0 += kBatch) {
        const int64_t j1 = std::min(d, j0 + kBatch);
        linalg::deferred_update(yr.data(), nr, d, d - j1, z.data() + j0, d, j1 - j0, ut.data() + j0);
      }
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t k = 0; k < d; ++k) y[r * d + k] = yr[r * d + d - 1 - k];
      // t = -U^T y: the rows k of ud in [k0, k1) are nonzero from column k0 on.
      for (int64_t k0 = 0; k0 < d; k0 += kBatch) {
        const int64_t k1 = std::min(d, k0 + kBatch);
        linalg::deferred_update(t.data(), nr, d, k0, y.data() + k0, d, k1 - k0, ud.data() + k0);
      }
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t a = 0; a < d; ++a) W[(r0 + r) * d + s.col[a]] -= alpha * t[r * d + a];
    }
  }
}

}  // namespace smolq::ef
