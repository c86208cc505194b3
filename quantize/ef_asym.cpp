#include "quantize/ef_asym.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "formats/error.h"
#include "quantize/ef_linalg.h"

namespace smolq::ef {
namespace {

// Rows per work item: the three products stream each matrix once per chunk, so a chunk should
// be long (each kShiftBatch x 256 slice of a matrix is read once from memory and then serves
// kRows / 8 register tiles from L2); about 6 buffers of kRows x d_in floats per thread (24 MB
// at d_in = 8192).
constexpr int64_t kRows = 128;
// Rows of a matrix per call of the deferred-update kernel (the slice of the shared dimension
// whose column tiles stay in L2), and the size of the factor's diagonal blocks.
constexpr int64_t kBatch = kShiftBatch;

// AsymShift::diag: copies of the factor's diagonal blocks of kBatch rows, zeros below the
// diagonal.
std::vector<float> diag_blocks(const Factor& f, int n_threads) {
  const int64_t d = f.d_in;
  std::vector<float> diag(static_cast<size_t>((d + kBatch - 1) / kBatch * kBatch * kBatch), 0.0f);
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (int64_t b = 0; b < d; ++b) {
    const int64_t k0 = b / kBatch * kBatch, k1 = std::min(d, k0 + kBatch);
    std::copy(f.row(b) + b, f.row(b) + k1, diag.data() + k0 * kBatch + (b - k0) * kBatch + (b - k0));
  }
  return diag;
}

}  // namespace

AsymShift prepare_asym_shift(std::span<const double> H, std::span<const double> C, const Factor& f, int n_threads) {
  if (C.size() != H.size()) throw UsageError("asymmetric calibration: H, C and the factor do not have matching sizes");
  std::vector<float> D(H.size());
  for (size_t i = 0; i < D.size(); ++i) D[i] = static_cast<float>(C[i] - H[i]);
  return prepare_asym_shift(std::move(D), f, n_threads);
}

AsymShift prepare_asym_shift(std::span<const float> D, const Factor& f, int n_threads) {
  return prepare_asym_shift(std::vector<float>(D.begin(), D.end()), f, n_threads);
}

AsymShift prepare_asym_shift(std::vector<float> D, const Factor& f, int n_threads) {
  const int64_t d = f.d_in, be = f.block_elems;
  if (d <= 0 || d % 16 != 0 || D.size() != static_cast<size_t>(d * d) || f.u.size() != static_cast<size_t>(d * (d + 1) / 2))
    throw UsageError("asymmetric calibration: H, C and the factor do not have matching sizes");
  n_threads = std::max(1, n_threads);
  AsymShift s;
  s.d_in = d;
  s.block_elems = static_cast<int>(be);
  s.col.resize(static_cast<size_t>(d));
  for (int64_t a = 0; a < d; ++a) s.col[a] = static_cast<int64_t>(f.order[a / be]) * be + a % be;
  // dt[b][a] = D[col a][col b] (row b of dt is column b of the shift in visiting order), made
  // in D's storage: transpose, permute every row's entries, then the rows (along the cycles of
  // the permutation, one spare row).
  bool finite = true;
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 16) reduction(&& : finite)
  for (int64_t i = 0; i < d; ++i) {
    finite = finite && std::isfinite(D[static_cast<size_t>(i * d + i)]);
    for (int64_t j = i + 1; j < d; ++j) {
      float& a = D[static_cast<size_t>(i * d + j)];
      float& b = D[static_cast<size_t>(j * d + i)];
      finite = finite && std::isfinite(a) && std::isfinite(b);
      std::swap(a, b);
    }
  }
  if (!finite) throw UsageError("asymmetric calibration: the cross Gram matrix is not finite");
#pragma omp parallel num_threads(n_threads)
  {
    std::vector<float> row(static_cast<size_t>(d));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < d; ++i) {
      float* r = D.data() + i * d;
      for (int64_t a = 0; a < d; ++a) row[a] = r[s.col[a]];
      std::copy(row.begin(), row.end(), r);
    }
  }
  std::vector<float> spare(static_cast<size_t>(d));
  std::vector<char> done(static_cast<size_t>(d), 0);
  for (int64_t b0 = 0; b0 < d; ++b0) {
    if (done[b0]) continue;
    std::copy_n(D.data() + b0 * d, d, spare.data());
    int64_t b = b0;
    for (;;) {  // row b takes row col[b]
      done[b] = 1;
      const int64_t from = s.col[b];
      if (from == b0) {
        std::copy(spare.begin(), spare.end(), D.data() + b * d);
        break;
      }
      std::copy_n(D.data() + from * d, d, D.data() + b * d);
      b = from;
    }
  }
  s.dt = std::move(D);
  s.diag = diag_blocks(f, n_threads);
  return s;
}

namespace {

// The per-thread buffers of apply_asym_shift and the three products of one chunk of rows.
// Every element is one FMA chain in a fixed order (the shared dimension ascending, batch by
// batch): the chunking of the rows does not change a bit.
struct ShiftChunk {
  int64_t d;
  std::vector<const float*> dt, up, dg;  // row pointers: dt (none: triangular products only); U[k][j] (j >= k); diagonal block copies
  // dense: AsymShift::dt or nullptr; diag: AsymShift::diag.
  ShiftChunk(const float* dense, const std::vector<float>& diag, const Factor& f) : d(f.d_in) {
    dt.resize(dense ? static_cast<size_t>(d) : 0);
    up.resize(static_cast<size_t>(d));
    dg.resize(up.size());
    for (int64_t k = 0; k < d; ++k) {
      const int64_t k0 = k / kBatch * kBatch;
      if (dense) dt[k] = dense + k * d;
      up[k] = f.row(k);
      dg[k] = diag.data() + k0 * kBatch + (k - k0) * kBatch - k0;  // dg[k][j] for k0 <= j < k0 + kBatch
    }
  }

  // t = U^T U (C - H) w for nr rows w (visiting order, stride d) at wv; buffers of kRows x d
  // floats (zt, yt: d x kRows).
  void run(const float* wv, int64_t nr, float* z, float* zt, float* yt, float* y, float* t,
           std::vector<const float*>& e, std::vector<const float*>& u) const {
    std::fill(z, z + nr * d, 0.0f);
    // z = -(C - H) w.
    for (int64_t k0 = 0; k0 < d; k0 += kBatch) {
      const int64_t k1 = std::min(d, k0 + kBatch);
      linalg::deferred_update(z, nr, d, 0, wv + k0, d, k1 - k0, dt.data() + k0);
    }
    triangular(z, nr, zt, yt, y, t, e, u);
  }

  // t = U^T U z = H~^-1 z for nr rows z (visiting order, stride d).
  void triangular(const float* z, int64_t nr, float* zt, float* yt, float* y, float* t, std::vector<const float*>& e,
                  std::vector<const float*>& u) const {
    const int64_t np = (nr + 15) / 16 * 16;
    // yt[k][r] = sum_{j >= k} U[k][j] (-z[r][j]), over tokens r as columns (the rows of U are
    // contiguous in j): zt = z^T, padded with zero columns to np.
    for (int64_t j = 0; j < d; ++j)
      for (int64_t r = 0; r < np; ++r) zt[j * np + r] = r < nr ? z[r * d + j] : 0.0f;
    std::fill(yt, yt + d * np, 0.0f);
    for (int64_t j0 = 0; j0 < d; j0 += kBatch) {
      const int64_t j1 = std::min(d, j0 + kBatch);
      for (int64_t q = 0; q < j1 - j0; ++q) u[q] = zt + (j0 + q) * np;
      for (int64_t k = 0; k < j0; ++k) e[k] = up[k] + j0;  // rows above the block: all of [j0, j1)
      linalg::deferred_update_rows(yt, np, j0, 0, np, e.data(), j1 - j0, u.data());
      for (int64_t k = j0; k < j1; ++k) e[k] = dg[k] + j0;  // the block itself, zeros below the diagonal
      linalg::deferred_update_rows(yt + j0 * np, np, j1 - j0, 0, np, e.data() + j0, j1 - j0, u.data());
    }
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t k = 0; k < d; ++k) y[r * d + k] = yt[k * np + r];
    // t = -U^T y: t[r][j] = -sum_{k <= j} y[r][k] U[k][j].
    std::fill(t, t + nr * d, 0.0f);
    for (int64_t k0 = 0; k0 < d; k0 += kBatch) {
      const int64_t k1 = std::min(d, k0 + kBatch);
      for (int64_t r = 0; r < nr; ++r) e[r] = y + r * d + k0;
      linalg::deferred_update_rows(t, d, nr, k0, k1, e.data(), k1 - k0, dg.data() + k0);
      if (k1 < d) linalg::deferred_update_rows(t, d, nr, k1, d, e.data(), k1 - k0, up.data() + k0);
    }
  }
};

}  // namespace

void apply_asym_shift(const AsymShift& s, const Factor& f, std::span<float> W, int64_t rows, int n_threads, float alpha) {
  const int64_t d = s.d_in;
  if (f.d_in != d || f.block_elems != s.block_elems || f.u.size() != static_cast<size_t>(d * (d + 1) / 2))
    throw UsageError("asymmetric calibration: the shift was not made from this factor");
  if (W.size() != static_cast<size_t>(rows * d)) throw UsageError("asymmetric calibration: W is not rows x d_in");
  const ShiftChunk sc(s.dt.data(), s.diag, f);
  const int64_t nchunks = (rows + kRows - 1) / kRows;
#pragma omp parallel num_threads(std::max(1, n_threads))
  {
    const size_t n = static_cast<size_t>(kRows * d);
    std::vector<float> wv(n), z(n), zt(n), yt(n), y(n), t(n);
    std::vector<const float*> e(static_cast<size_t>(std::max(d, kRows))), u(static_cast<size_t>(kBatch));
#pragma omp for schedule(dynamic, 1)
    for (int64_t ch = 0; ch < nchunks; ++ch) {
      const int64_t r0 = ch * kRows, nr = std::min(kRows, rows - r0);
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t a = 0; a < d; ++a) wv[r * d + a] = W[(r0 + r) * d + s.col[a]];
      sc.run(wv.data(), nr, z.data(), zt.data(), yt.data(), y.data(), t.data(), e, u);
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t a = 0; a < d; ++a) W[(r0 + r) * d + s.col[a]] -= alpha * t[r * d + a];
    }
  }
}

namespace {

// s.gt = rows of (K + lambda I)^-1 X~ with K = X~ X~^T (push-through: G^T = (K + lambda I)^-1 X~
// = (X~^T X~ + lambda I)^-1 X~^T transposed). xq: X~ (n_tokens x d), read in place, its rows
// padded to s.n with zero rows; xpt: the padded X~'s transpose (d x n). Every element is a
// fixed FMA chain; row tiles in parallel.
void push_through(AsymLowRank& s, std::span<const float> xq, int64_t n_tokens, const std::vector<float>& xpt,
                  double lambda, int n_threads) {
  const int64_t d = s.d_in, n = s.n;
  constexpr int64_t kTileRows = 32;
  const int64_t ntiles = n / kTileRows;
  // K's lower triangle (row tiles against the columns up to their end), negated by the update.
  std::vector<float> K(static_cast<size_t>(n * n), 0.0f);
  const std::vector<float> zero_row(static_cast<size_t>(d), 0.0f);
  std::vector<const float*> xr(static_cast<size_t>(n)), xc(static_cast<size_t>(d));
  for (int64_t t = 0; t < n; ++t) xr[t] = t < n_tokens ? xq.data() + t * d : zero_row.data();
  for (int64_t j = 0; j < d; ++j) xc[j] = xpt.data() + j * n;
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
  for (int64_t it = ntiles - 1; it >= 0; --it) {  // the long tiles first
    const int64_t i0 = it * kTileRows;
    std::vector<const float*> e(static_cast<size_t>(kTileRows));
    for (int64_t k0 = 0; k0 < d; k0 += kBatch) {
      for (int64_t r = 0; r < kTileRows; ++r) e[r] = xr[i0 + r] + k0;
      linalg::deferred_update_rows(K.data() + i0 * n, n, kTileRows, 0, i0 + kTileRows, e.data(),
                                   std::min(kBatch, d - k0), xc.data() + k0);
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j <= i; ++j) K[i * n + j] = -K[i * n + j];
    K[i * n + i] = static_cast<float>(static_cast<double>(K[i * n + i]) + lambda);
  }
  if (linalg::cholesky_lower(K.data(), n, n_threads) >= 0)
    throw UsageError("asymmetric calibration: the token Gram matrix is not positive definite after dampening");
  linalg::invert_lower(K.data(), n, n_threads);  // Z = L^-1 in the lower triangle
  // M = Z^T Z = (K + lambda I)^-1: mn = -M from zt = Z^T (zeros above Z's diagonal).
  std::vector<float> zt(static_cast<size_t>(n * n), 0.0f), mn(zt.size(), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) zt[j * n + i] = K[i * n + j];
  for (int64_t i = 0; i < n; ++i) std::fill(K.begin() + i * n + i + 1, K.begin() + (i + 1) * n, 0.0f);  // K := Z
  std::vector<const float*> zr(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) zr[k] = K.data() + k * n;
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
  for (int64_t it = 0; it < ntiles; ++it) {  // mn[i][j] -= sum_k zt[i][k] z[k][j]
    const int64_t i0 = it * kTileRows;
    for (int64_t k0 = 0; k0 < n; k0 += kBatch)
      linalg::deferred_update(mn.data() + i0 * n, kTileRows, n, 0, zt.data() + i0 * n + k0, n, std::min(kBatch, n - k0),
                              zr.data() + k0);
  }
  // gt = M X~ = -(mn X~): gt -= mn X~.
  s.gt.assign(static_cast<size_t>(n * d), 0.0f);
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
  for (int64_t it = 0; it < ntiles; ++it) {
    const int64_t i0 = it * kTileRows;
    for (int64_t t0 = 0; t0 < n; t0 += kBatch)
      linalg::deferred_update(s.gt.data() + i0 * d, kTileRows, d, 0, mn.data() + i0 * n + t0, n, std::min(kBatch, n - t0),
                              xr.data() + t0);
  }
}

}  // namespace

AsymLowRank prepare_asym_low_rank(std::span<const float> xq, std::span<const float> xf, int64_t n_tokens,
                                  const Factor& f, int n_threads) {
  const int64_t d = f.d_in, be = f.block_elems;
  if (d <= 0 || d % 16 != 0 || n_tokens <= 0 || f.u.size() != static_cast<size_t>(d * (d + 1) / 2) ||
      xq.size() != static_cast<size_t>(n_tokens * d) || xf.size() != xq.size())
    throw UsageError("asymmetric calibration: the streams' inputs and the factor do not have matching sizes");
  n_threads = std::max(1, n_threads);
  AsymLowRank s;
  s.d_in = d;
  s.n = (n_tokens + 31) / 32 * 32;
  std::vector<int64_t> col(static_cast<size_t>(d));
  for (int64_t a = 0; a < d; ++a) col[a] = static_cast<int64_t>(f.order[a / be]) * be + a % be;
  s.dxt.assign(static_cast<size_t>(d * s.n), 0.0f);
  bool finite = true;
#pragma omp parallel for num_threads(n_threads) schedule(static) reduction(&& : finite)
  for (int64_t j = 0; j < d; ++j)
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float v = xf[static_cast<size_t>(t * d + j)] - xq[static_cast<size_t>(t * d + j)];
      finite = finite && std::isfinite(v);
      s.dxt[static_cast<size_t>(j * s.n + t)] = v;
    }
  if (!finite) throw UsageError("asymmetric calibration: the streams' inputs are not finite");
  if (asym_push_through(n_tokens, d)) {
    std::vector<float> xpt(static_cast<size_t>(d * s.n), 0.0f);
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t j = 0; j < d; ++j)
      for (int64_t t = 0; t < n_tokens; ++t) xpt[static_cast<size_t>(j * s.n + t)] = xq[static_cast<size_t>(t * d + j)];
    push_through(s, xq, n_tokens, xpt, f.lambda, n_threads);
    return s;
  }
  const std::vector<float> diag = diag_blocks(f, n_threads);
  const ShiftChunk sc(nullptr, diag, f);
  s.gt.assign(static_cast<size_t>(s.n * d), 0.0f);
  const int64_t nchunks = (n_tokens + kRows - 1) / kRows;
#pragma omp parallel num_threads(n_threads)
  {
    const size_t n = static_cast<size_t>(kRows * d);
    std::vector<float> zv(n), zt(n), yt(n), y(n), t(n);
    std::vector<const float*> e(static_cast<size_t>(std::max(d, kRows))), u(static_cast<size_t>(kBatch));
#pragma omp for schedule(dynamic, 1)
    for (int64_t ch = 0; ch < nchunks; ++ch) {
      const int64_t t0 = ch * kRows, nt = std::min(kRows, n_tokens - t0);
      for (int64_t r = 0; r < nt; ++r)
        for (int64_t a = 0; a < d; ++a) zv[r * d + a] = xq[static_cast<size_t>((t0 + r) * d + col[a])];
      sc.triangular(zv.data(), nt, zt.data(), yt.data(), y.data(), t.data(), e, u);
      for (int64_t r = 0; r < nt; ++r)
        for (int64_t a = 0; a < d; ++a) s.gt[static_cast<size_t>((t0 + r) * d + col[a])] = t[r * d + a];
    }
  }
  return s;
}

void apply_asym_low_rank(const AsymLowRank& s, std::span<float> W, int64_t rows, int n_threads, float alpha) {
  const int64_t d = s.d_in, n = s.n;
  if (d <= 0 || n <= 0 || n % 16 != 0 || s.gt.size() != static_cast<size_t>(n * d) || s.dxt.size() != s.gt.size())
    throw UsageError("asymmetric calibration: malformed low-rank shift");
  if (W.size() != static_cast<size_t>(rows * d)) throw UsageError("asymmetric calibration: W is not rows x d_in");
  std::vector<const float*> gt(static_cast<size_t>(n)), dxt(static_cast<size_t>(d));
  for (int64_t t = 0; t < n; ++t) gt[t] = s.gt.data() + t * d;
  for (int64_t j = 0; j < d; ++j) dxt[j] = s.dxt.data() + j * n;
  const int64_t nchunks = (rows + kRows - 1) / kRows;
#pragma omp parallel num_threads(std::max(1, n_threads))
  {
    std::vector<float> sv(static_cast<size_t>(kRows * n)), tv(static_cast<size_t>(kRows * d));
#pragma omp for schedule(dynamic, 1)
    for (int64_t ch = 0; ch < nchunks; ++ch) {
      const int64_t r0 = ch * kRows, nr = std::min(kRows, rows - r0);
      float* w = W.data() + r0 * d;
      // sv = -(D w) for the chunk's rows (tokens as columns), then tv = -sv G^T = G D w; the
      // shared dimension in batches of kBatch (each slice read once per chunk, from L2).
      std::fill(sv.begin(), sv.begin() + nr * n, 0.0f);
      for (int64_t k0 = 0; k0 < d; k0 += kBatch)
        linalg::deferred_update(sv.data(), nr, n, 0, w + k0, d, std::min(kBatch, d - k0), dxt.data() + k0);
      std::fill(tv.begin(), tv.begin() + nr * d, 0.0f);
      for (int64_t t0 = 0; t0 < n; t0 += kBatch)
        linalg::deferred_update(tv.data(), nr, d, 0, sv.data() + t0, n, std::min(kBatch, n - t0), gt.data() + t0);
      for (int64_t i = 0; i < nr * d; ++i) w[i] += alpha * tv[static_cast<size_t>(i)];
    }
  }
}

}  // namespace smolq::ef
