// Blocked Cholesky factorisation, triangular inversion and the sweep's deferred update
// (ef_linalg.h). The O(n^3) work runs as products of 64 x 64 tiles; the tile kernels keep a
// 4 x 8 block of results in registers and stream the shared dimension, so they run near the
// FMA units' speed instead of the memory's.
#include "quantize/ef_linalg.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <utility>
#include <vector>

#include "formats/cpu_features.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SMOLQ_EF_X86 1
#endif

namespace smolq::ef::linalg {
namespace {

constexpr int64_t kTile = 64;

// The project's one CPU-feature check (AVX2 with FMA; capped by SMOLQ_SIMD).
bool use_avx2_fma() { return cpu::has_avx2(); }

// C[m x n] += alpha * A[m x k] * B[k x n] (row-major, leading dimensions lda, ldb, ldc);
// m a multiple of 4 and n of 8 in the fast kernel's path (tiles of sizes multiple of 32).
void gemm_tile_ref(double* C, int64_t ldc, const double* A, int64_t lda, const double* B, int64_t ldb, int64_t m,
                   int64_t n, int64_t k, double alpha) {
  for (int64_t r = 0; r < m; ++r) {
    double* c = C + r * ldc;
    for (int64_t l = 0; l < k; ++l) {
      const double a = alpha * A[r * lda + l];
      const double* b = B + l * ldb;
      for (int64_t j = 0; j < n; ++j) c[j] += a * b[j];
    }
  }
}

#ifdef SMOLQ_EF_X86
[[gnu::target("avx2,fma")]] void gemm_tile_avx2(double* C, int64_t ldc, const double* A, int64_t lda, const double* B,
                                                int64_t ldb, int64_t m, int64_t n, int64_t k, double alpha) {
  for (int64_t r = 0; r < m; r += 4)
    for (int64_t j = 0; j < n; j += 8) {
      __m256d acc[4][2];
      for (int i = 0; i < 4; ++i) {
        acc[i][0] = _mm256_loadu_pd(C + (r + i) * ldc + j);
        acc[i][1] = _mm256_loadu_pd(C + (r + i) * ldc + j + 4);
      }
      for (int64_t l = 0; l < k; ++l) {
        const __m256d b0 = _mm256_loadu_pd(B + l * ldb + j), b1 = _mm256_loadu_pd(B + l * ldb + j + 4);
        for (int i = 0; i < 4; ++i) {
          const __m256d a = _mm256_set1_pd(alpha * A[(r + i) * lda + l]);
          acc[i][0] = _mm256_fmadd_pd(a, b0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_pd(a, b1, acc[i][1]);
        }
      }
      for (int i = 0; i < 4; ++i) {
        _mm256_storeu_pd(C + (r + i) * ldc + j, acc[i][0]);
        _mm256_storeu_pd(C + (r + i) * ldc + j + 4, acc[i][1]);
      }
    }
}
#endif

// Tiles of A and B are first copied into contiguous buffers: a tile read in place spans 64 rows
// of the big matrix, one page each, and the kernel's passes over it thrash the TLB.
void gemm_tile(double* C, int64_t ldc, const double* A, int64_t lda, const double* B, int64_t ldb, int64_t m, int64_t n,
               int64_t k, double alpha) {
  assert(m <= kTile && n <= kTile && k <= kTile);
  thread_local std::vector<double> pa(kTile * kTile), pb(kTile * kTile);
  for (int64_t r = 0; r < m; ++r) std::copy(A + r * lda, A + r * lda + k, pa.data() + r * k);
  for (int64_t l = 0; l < k; ++l) std::copy(B + l * ldb, B + l * ldb + n, pb.data() + l * n);
#ifdef SMOLQ_EF_X86
  if (use_avx2_fma() && m % 4 == 0 && n % 8 == 0) return gemm_tile_avx2(C, ldc, pa.data(), k, pb.data(), n, m, n, k, alpha);
#endif
  gemm_tile_ref(C, ldc, pa.data(), k, pb.data(), n, m, n, k, alpha);
}

// Unblocked Cholesky of the kn x kn diagonal tile at T (stride ld); -1 or the failing row.
int64_t cholesky_tile(double* T, int64_t ld, int64_t kn) {
  for (int64_t i = 0; i < kn; ++i) {
    double* ri = T + i * ld;
    for (int64_t j = 0; j <= i; ++j) {
      const double* rj = T + j * ld;
      double s = ri[j];
      for (int64_t l = 0; l < j; ++l) s -= ri[l] * rj[l];
      if (j < i) {
        ri[j] = s / rj[j];
      } else {
        if (!(s > 0.0) || !std::isfinite(s)) return i;
        ri[i] = std::sqrt(s);
      }
    }
  }
  return -1;
}

// Row segments x[i] (kn values each, i < 4) := x[i] * L^-T for the kn x kn lower tile L
// (stride ld). Four rows at once: four independent dependency chains per dot product.
void solve_rows4(double* const* x, int nx, const double* L, int64_t ld, int64_t kn) {
  for (int64_t c = 0; c < kn; ++c) {
    const double* lc = L + c * ld;
    double s[4] = {0, 0, 0, 0};
    for (int i = 0; i < nx; ++i) s[i] = x[i][c];
    for (int64_t l = 0; l < c; ++l)
      for (int i = 0; i < 4; ++i) s[i] -= (i < nx ? x[i][l] : 0.0) * lc[l];
    for (int i = 0; i < nx; ++i) x[i][c] = s[i] / lc[c];
  }
}

// D (kn x kn, stride kn) := inverse of the lower tile L (stride ld); upper part zero.
void invert_tile(const double* L, int64_t ld, int64_t kn, double* D) {
  std::fill(D, D + kn * kn, 0.0);
  for (int64_t i = 0; i < kn; ++i) {
    double* di = D + i * kn;
    const double* li = L + i * ld;
    for (int64_t k = 0; k < i; ++k) {
      const double c = li[k];
      const double* dk = D + k * kn;
      for (int64_t j = 0; j <= k; ++j) di[j] -= c * dk[j];
    }
    di[i] += 1.0;
    const double inv = 1.0 / li[i];
    for (int64_t j = 0; j <= i; ++j) di[j] *= inv;
  }
}

}  // namespace

int64_t cholesky_lower(double* A, int64_t n, int n_threads) {
  assert(n % 32 == 0);
  const int64_t nt = (n + kTile - 1) / kTile;
  auto t0 = [](int64_t t) { return t * kTile; };
  auto tn = [n](int64_t t) { return std::min(kTile, n - t * kTile); };
  for (int64_t kb = 0; kb < nt; ++kb) {
    const int64_t k0 = t0(kb), kn = tn(kb);
    double* Lkk = A + k0 * n + k0;
    const int64_t bad = cholesky_tile(Lkk, n, kn);
    if (bad >= 0) return k0 + bad;
    // The panel below the diagonal tile: L21 = A21 L11^-T, row by row.
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t i = k0 + kn; i < n; i += 4) {
      double* x[4];
      const int nx = static_cast<int>(std::min<int64_t>(4, n - i));
      for (int r = 0; r < 4; ++r) x[r] = A + (i + std::min(r, nx - 1)) * n + k0;
      solve_rows4(x, nx, Lkk, n, kn);
    }
    // Trailing update A22 -= L21 L21^T on the tiles (ib, jb), kb < jb <= ib.
    std::vector<std::pair<int64_t, int64_t>> tiles;
    for (int64_t ib = kb + 1; ib < nt; ++ib)
      for (int64_t jb = kb + 1; jb <= ib; ++jb) tiles.emplace_back(ib, jb);
#pragma omp parallel num_threads(n_threads)
    {
      std::vector<double> Bt(static_cast<size_t>(kTile * kTile));  // L[jb][kb]^T
#pragma omp for schedule(static)
      for (size_t t = 0; t < tiles.size(); ++t) {
        const auto [ib, jb] = tiles[t];
        const int64_t i0 = t0(ib), in = tn(ib), j0 = t0(jb), jn = tn(jb);
        for (int64_t r = 0; r < jn; ++r)
          for (int64_t l = 0; l < kn; ++l) Bt[l * jn + r] = A[(j0 + r) * n + k0 + l];
        gemm_tile(A + i0 * n + j0, n, A + i0 * n + k0, n, Bt.data(), jn, in, jn, kn, -1.0);
      }
    }
  }
  return -1;
}

void invert_lower(double* A, int64_t n, int n_threads) {
  assert(n % 32 == 0);
  const int64_t nt = (n + kTile - 1) / kTile;
  std::vector<double> S(static_cast<size_t>(kTile * n)), D(static_cast<size_t>(kTile * kTile));
  for (int64_t ib = 0; ib < nt; ++ib) {
    const int64_t i0 = ib * kTile, in = std::min(kTile, n - i0);
    invert_tile(A + i0 * n + i0, n, in, D.data());
    // S[:, J] = sum_{K = J .. ib-1} L[ib][K] X[K][J] for every column tile J < ib, then
    // X[ib][J] = -D S[:, J]. Each J is independent; S is written before A's row block is.
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
    for (int64_t jb = 0; jb < ib; ++jb) {
      const int64_t j0 = jb * kTile, jn = std::min(kTile, n - j0);
      double* s = S.data() + j0;
      for (int64_t r = 0; r < in; ++r) std::fill(s + r * n, s + r * n + jn, 0.0);
      for (int64_t kb = jb; kb < ib; ++kb) {
        const int64_t k0 = kb * kTile, kn = std::min(kTile, n - k0);
        gemm_tile(s, n, A + i0 * n + k0, n, A + k0 * n + j0, n, in, jn, kn, 1.0);
      }
    }
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
    for (int64_t jb = 0; jb < ib; ++jb) {
      const int64_t j0 = jb * kTile, jn = std::min(kTile, n - j0);
      double* x = A + i0 * n + j0;
      for (int64_t r = 0; r < in; ++r) std::fill(x + r * n, x + r * n + jn, 0.0);
      gemm_tile(x, n, D.data(), in, S.data() + j0, n, in, jn, in, -1.0);
    }
    // The whole diagonal tile, zeros above its diagonal included: later products read it whole.
    for (int64_t r = 0; r < in; ++r)
      for (int64_t c = 0; c < in; ++c) A[(i0 + r) * n + i0 + c] = D[r * in + c];
  }
}

namespace {

void deferred_ref(float* W, int64_t nr, int64_t n, int64_t c1, const float* E, int64_t ldE, int64_t nk, const float* const* U) {
  for (int64_t r = 0; r < nr; ++r) {
    float* w = W + r * n;
    for (int64_t k = 0; k < nk; ++k) {
      const float e = E[r * ldE + k];
      const float* u = U[k];
      for (int64_t j = c1; j < n; ++j) w[j] -= e * u[j];
    }
  }
}

#ifdef SMOLQ_EF_X86
// Four rows x 16 columns of W in registers while k streams: 8 FMAs per 2 loads of U. Column
// tiles of kColTile keep the batch's slice of U in L2 across the chunk's row groups.
[[gnu::target("avx2,fma")]] void deferred_avx2(float* W, int64_t nr, int64_t n, int64_t c1, const float* E, int64_t ldE,
                                               int64_t nk, const float* const* U) {
  constexpr int64_t kColTile = 256;
  for (int64_t t0 = c1; t0 < n; t0 += kColTile) {
    const int64_t t1 = std::min(n, t0 + kColTile);
    int64_t r = 0;
    for (; r + 4 <= nr; r += 4)
      for (int64_t j = t0; j < t1; j += 16) {
        __m256 acc[4][2];
        for (int i = 0; i < 4; ++i) {
          acc[i][0] = _mm256_loadu_ps(W + (r + i) * n + j);
          acc[i][1] = _mm256_loadu_ps(W + (r + i) * n + j + 8);
        }
        for (int64_t k = 0; k < nk; ++k) {
          const __m256 u0 = _mm256_loadu_ps(U[k] + j), u1 = _mm256_loadu_ps(U[k] + j + 8);
          for (int i = 0; i < 4; ++i) {
            const __m256 e = _mm256_set1_ps(E[(r + i) * ldE + k]);
            acc[i][0] = _mm256_fnmadd_ps(e, u0, acc[i][0]);
            acc[i][1] = _mm256_fnmadd_ps(e, u1, acc[i][1]);
          }
        }
        for (int i = 0; i < 4; ++i) {
          _mm256_storeu_ps(W + (r + i) * n + j, acc[i][0]);
          _mm256_storeu_ps(W + (r + i) * n + j + 8, acc[i][1]);
        }
      }
    for (; r < nr; ++r)  // the last rows of a partial chunk, one at a time
      for (int64_t j = t0; j < t1; j += 16) {
        __m256 a0 = _mm256_loadu_ps(W + r * n + j), a1 = _mm256_loadu_ps(W + r * n + j + 8);
        for (int64_t k = 0; k < nk; ++k) {
          const __m256 e = _mm256_set1_ps(E[r * ldE + k]);
          a0 = _mm256_fnmadd_ps(e, _mm256_loadu_ps(U[k] + j), a0);
          a1 = _mm256_fnmadd_ps(e, _mm256_loadu_ps(U[k] + j + 8), a1);
        }
        _mm256_storeu_ps(W + r * n + j, a0);
        _mm256_storeu_ps(W + r * n + j + 8, a1);
      }
  }
}
#endif

}  // namespace

void deferred_update(float* W, int64_t nr, int64_t n, int64_t c1, const float* E, int64_t ldE, int64_t nk,
                     const float* const* U) {
  assert((n - c1) % 16 == 0);
#ifdef SMOLQ_EF_X86
  if (use_avx2_fma()) return deferred_avx2(W, nr, n, c1, E, ldE, nk, U);
#endif
  deferred_ref(W, nr, n, c1, E, ldE, nk, U);
}

namespace {
void axpy_ref(float* w, const float* u, int64_t from, int64_t to, float e) {
#pragma omp simd
  for (int64_t j = from; j < to; ++j) w[j] -= e * u[j];
}
#ifdef SMOLQ_EF_X86
[[gnu::target("avx2,fma")]] void axpy_avx2(float* w, const float* u, int64_t from, int64_t to, float e) {
  const __m256 ve = _mm256_set1_ps(e);
  int64_t j = from;
  for (; j + 8 <= to; j += 8) _mm256_storeu_ps(w + j, _mm256_fnmadd_ps(ve, _mm256_loadu_ps(u + j), _mm256_loadu_ps(w + j)));
  for (; j < to; ++j) w[j] = std::fma(-e, u[j], w[j]);  // the same rounding as the vector lanes
}
#endif
}  // namespace

void axpy_update(float* w, const float* u, int64_t from, int64_t to, float e) {
#ifdef SMOLQ_EF_X86
  static const auto fn = use_avx2_fma() ? axpy_avx2 : axpy_ref;
  fn(w, u, from, to, e);
#else
  axpy_ref(w, u, from, to, e);
#endif
}

}  // namespace smolq::ef::linalg
