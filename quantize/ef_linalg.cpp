// Blocked Cholesky factorisation, triangular inversion and the sweep's deferred update
// (ef_linalg.h). The O(n^3) work runs as products of 64 x 64 tiles; the tile kernels keep a
// 4 x 8 block of results in registers and stream the shared dimension, so they run near the
// FMA units' speed instead of the memory's.
#include "quantize/ef_linalg.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <type_traits>
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

// C[m x n] += alpha * A[m x k] * B[k x n] (row-major, leading dimensions lda, ldb, ldc).
template <class T>
void gemm_tile_ref(T* C, int64_t ldc, const T* A, int64_t lda, const T* B, int64_t ldb, int64_t m, int64_t n, int64_t k,
                   T alpha) {
  for (int64_t r = 0; r < m; ++r) {
    T* c = C + r * ldc;
    for (int64_t l = 0; l < k; ++l) {
      const T a = alpha * A[r * lda + l];
      const T* b = B + l * ldb;
      for (int64_t j = 0; j < n; ++j) c[j] += a * b[j];
    }
  }
}

#ifdef SMOLQ_EF_X86
// C += A B (gemm_tile applies alpha while packing A). Float tiles, 4 rows x 16 columns in
// registers (m a multiple of 4, n of 16).
[[gnu::target("avx2,fma")]] void gemm_tile_avx2(float* C, int64_t ldc, const float* A, int64_t lda, const float* B,
                                                int64_t ldb, int64_t m, int64_t n, int64_t k) {
  for (int64_t r = 0; r < m; r += 4)
    for (int64_t j = 0; j < n; j += 16) {
      __m256 acc[4][2];
      for (int i = 0; i < 4; ++i) {
        acc[i][0] = _mm256_loadu_ps(C + (r + i) * ldc + j);
        acc[i][1] = _mm256_loadu_ps(C + (r + i) * ldc + j + 8);
      }
      for (int64_t l = 0; l < k; ++l) {
        const __m256 b0 = _mm256_loadu_ps(B + l * ldb + j), b1 = _mm256_loadu_ps(B + l * ldb + j + 8);
        for (int i = 0; i < 4; ++i) {
          const __m256 a = _mm256_set1_ps(A[(r + i) * lda + l]);
          acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
        }
      }
      for (int i = 0; i < 4; ++i) {
        _mm256_storeu_ps(C + (r + i) * ldc + j, acc[i][0]);
        _mm256_storeu_ps(C + (r + i) * ldc + j + 8, acc[i][1]);
      }
    }
}

// Float tiles with AVX-512's 32 registers: 8 rows x 32 columns (16 accumulators) per pass, so
// each pair of B loads serves 16 FMAs (m a multiple of 8, n of 32). Per element the same
// sequence of FMAs as the AVX2 kernel (same bits).
[[gnu::target("avx512f,avx512vl,avx2,fma")]] void gemm_tile_avx512(float* C, int64_t ldc, const float* A, int64_t lda,
                                                                   const float* B, int64_t ldb, int64_t m, int64_t n,
                                                                   int64_t k) {
  for (int64_t r = 0; r < m; r += 8)
    for (int64_t j = 0; j < n; j += 32) {
      __m512 acc[8][2];
      for (int i = 0; i < 8; ++i) {
        acc[i][0] = _mm512_loadu_ps(C + (r + i) * ldc + j);
        acc[i][1] = _mm512_loadu_ps(C + (r + i) * ldc + j + 16);
      }
      for (int64_t l = 0; l < k; ++l) {
        const __m512 b0 = _mm512_loadu_ps(B + l * ldb + j), b1 = _mm512_loadu_ps(B + l * ldb + j + 16);
        for (int i = 0; i < 8; ++i) {
          const __m512 a = _mm512_set1_ps(A[(r + i) * lda + l]);
          acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
          acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
        }
      }
      for (int i = 0; i < 8; ++i) {
        _mm512_storeu_ps(C + (r + i) * ldc + j, acc[i][0]);
        _mm512_storeu_ps(C + (r + i) * ldc + j + 16, acc[i][1]);
      }
    }
}
#endif

// The fastest kernel this CPU and the tile's shape allow (tiles of the factorisation are 64 or
// 32 wide: every kernel's shape condition holds for them).
inline bool tile_simd(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t m,
                      int64_t n, int64_t k) {
#ifdef SMOLQ_EF_X86
  if (cpu::has_avx512() && m % 8 == 0 && n % 32 == 0)
    return gemm_tile_avx512(C, ldc, A, lda, B, ldb, m, n, k), true;
  if (use_avx2_fma() && m % 4 == 0 && n % 16 == 0) return gemm_tile_avx2(C, ldc, A, lda, B, ldb, m, n, k), true;
#endif
  return false;
}

// Tiles of A and B are first copied into contiguous buffers: a tile read in place spans 64 rows
// of the big matrix, one page each, and the kernel's passes over it thrash the TLB.
template <class T>
void gemm_tile(T* C, int64_t ldc, const T* A, int64_t lda, const T* B, int64_t ldb, int64_t m, int64_t n, int64_t k,
               T alpha) {
  assert(m <= kTile && n <= kTile && k <= kTile);
  // alpha (+-1 here: exact) is applied while packing A, so the kernels broadcast straight
  // from memory.
  thread_local std::vector<T> pa(kTile * kTile), pb(kTile * kTile);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t l = 0; l < k; ++l) pa[r * k + l] = alpha * A[r * lda + l];
  for (int64_t l = 0; l < k; ++l) std::copy(B + l * ldb, B + l * ldb + n, pb.data() + l * n);
  if (!tile_simd(C, ldc, pa.data(), k, pb.data(), n, m, n, k))
    gemm_tile_ref(C, ldc, pa.data(), k, pb.data(), n, m, n, k, T(1));
}

// gemm_tile's two halves, for operands used by many products: a tile of A packed once (alpha
// applied) or of B packed once into kTile x kTile buffers, then the kernel on the packed copies
// (the same values the kernel sees through gemm_tile: the same bits).
template <class T>
void pack_a(T* pa, const T* A, int64_t lda, int64_t m, int64_t k, T alpha) {
  for (int64_t r = 0; r < m; ++r)
    for (int64_t l = 0; l < k; ++l) pa[r * k + l] = alpha * A[r * lda + l];
}
template <class T>
void pack_b(T* pb, const T* B, int64_t ldb, int64_t n, int64_t k) {
  for (int64_t l = 0; l < k; ++l) std::copy(B + l * ldb, B + l * ldb + n, pb + l * n);
}
template <class T>
void gemm_packed(T* C, int64_t ldc, const T* pa, const T* pb, int64_t m, int64_t n, int64_t k) {
  if (!tile_simd(C, ldc, pa, k, pb, n, m, n, k)) gemm_tile_ref(C, ldc, pa, k, pb, n, m, n, k, T(1));
}

// Unblocked Cholesky of the kn x kn diagonal tile at T (stride ld); -1 or the failing row.
template <class T>
int64_t cholesky_tile(T* A, int64_t ld, int64_t kn) {
  for (int64_t i = 0; i < kn; ++i) {
    T* ri = A + i * ld;
    for (int64_t j = 0; j <= i; ++j) {
      const T* rj = A + j * ld;
      T s = ri[j];
      for (int64_t l = 0; l < j; ++l) s -= ri[l] * rj[l];
      if (j < i) {
        ri[j] = s / rj[j];
      } else {
        if (!(s > T(0)) || !std::isfinite(s)) return i;
        ri[i] = std::sqrt(s);
      }
    }
  }
  return -1;
}

// Row segments x[i] (kn values each, i < 4) := x[i] * L^-T for the kn x kn lower tile L
// (stride ld). Four rows at once: four independent dependency chains per dot product.
template <class T>
void solve_rows4(T* const* x, int nx, const T* L, int64_t ld, int64_t kn) {
  for (int64_t c = 0; c < kn; ++c) {
    const T* lc = L + c * ld;
    T s[4] = {0, 0, 0, 0};
    for (int i = 0; i < nx; ++i) s[i] = x[i][c];
    for (int64_t l = 0; l < c; ++l)
      for (int i = 0; i < 4; ++i) s[i] -= (i < nx ? x[i][l] : T(0)) * lc[l];
    for (int i = 0; i < nx; ++i) x[i][c] = s[i] / lc[c];
  }
}

#ifdef SMOLQ_EF_X86
// solve_rows4 for 16 rows at once, one per lane of a transposed copy of their segments: per
// element the same operations in the same order (s = x[c]; s -= x[l] * L[c][l], the product
// rounded first, for l < c; x[c] = s / L[c][c]), so the same bits as the scalar loop.
[[gnu::target("avx512f")]] void solve_rows16_avx512(float* const* x, int nx, const float* L, int64_t ld, int64_t kn) {
  alignas(64) float xt[kTile][16];
  for (int64_t c = 0; c < kn; ++c)
    for (int i = 0; i < 16; ++i) xt[c][i] = i < nx ? x[i][c] : 0.0f;
  for (int64_t c = 0; c < kn; ++c) {
    const float* lc = L + c * ld;
    __m512 acc = _mm512_load_ps(xt[c]);
    for (int64_t l = 0; l < c; ++l) {
      __m512 p = _mm512_mul_ps(_mm512_load_ps(xt[l]), _mm512_set1_ps(lc[l]));
      asm("" : "+v"(p));  // keeps the compiler from fusing the product into an FMA (the scalar loop rounds it)
      acc = _mm512_sub_ps(acc, p);
    }
    _mm512_store_ps(xt[c], _mm512_div_ps(acc, _mm512_set1_ps(lc[c])));
  }
  for (int i = 0; i < nx; ++i)
    for (int64_t c = 0; c < kn; ++c) x[i][c] = xt[c][i];
}
#endif

// Rows first .. n-1 of A (n x n), from column c0, in groups of R handed to solve(x, nx) in
// parallel: x[r] points at row i + r; a last group of nx < R rows repeats its last row.
template <int R, class T, class Solve>
void for_row_groups(T* A, int64_t n, int64_t first, int64_t c0, int n_threads, Solve solve) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (int64_t i = first; i < n; i += R) {
    T* x[R];
    const int nx = static_cast<int>(std::min<int64_t>(R, n - i));
    for (int r = 0; r < R; ++r) x[r] = A + (i + std::min(r, nx - 1)) * n + c0;
    solve(x, nx);
  }
}

// D (kn x kn, stride kn) := inverse of the lower tile L (stride ld); upper part zero.
template <class T>
void invert_tile(const T* L, int64_t ld, int64_t kn, T* D) {
  std::fill(D, D + kn * kn, T(0));
  for (int64_t i = 0; i < kn; ++i) {
    T* di = D + i * kn;
    const T* li = L + i * ld;
    for (int64_t k = 0; k < i; ++k) {
      const T c = li[k];
      const T* dk = D + k * kn;
      for (int64_t j = 0; j <= k; ++j) di[j] -= c * dk[j];
    }
    di[i] += T(1);
    const T inv = T(1) / li[i];
    for (int64_t j = 0; j <= i; ++j) di[j] *= inv;
  }
}

}  // namespace

template <class T>
int64_t cholesky_lower(T* A, int64_t n, int n_threads) {
  assert(n % 32 == 0);
  const int64_t nt = (n + kTile - 1) / kTile;
  auto t0 = [](int64_t t) { return t * kTile; };
  auto tn = [n](int64_t t) { return std::min(kTile, n - t * kTile); };
  std::vector<T> Pa(static_cast<size_t>(nt * kTile * kTile)), Pb(Pa.size());  // the current panel's tiles, packed
  for (int64_t kb = 0; kb < nt; ++kb) {
    const int64_t k0 = t0(kb), kn = tn(kb);
    T* Lkk = A + k0 * n + k0;
    const int64_t bad = cholesky_tile(Lkk, n, kn);
    if (bad >= 0) return k0 + bad;
    // The panel below the diagonal tile: L21 = A21 L11^-T, row by row (16 rows a step in
    // AVX-512 lanes for float, the same bits).
    bool wide = false;
#ifdef SMOLQ_EF_X86
    if constexpr (std::is_same_v<T, float>) wide = cpu::has_avx512();
#endif
    if (wide) {
#ifdef SMOLQ_EF_X86
      if constexpr (std::is_same_v<T, float>)
        for_row_groups<16>(A, n, k0 + kn, k0, n_threads,
                           [&](float** x, int nx) { solve_rows16_avx512(x, nx, Lkk, n, kn); });
#endif
    } else {
      for_row_groups<4>(A, n, k0 + kn, k0, n_threads, [&](T** x, int nx) { solve_rows4(x, nx, Lkk, n, kn); });
    }
    // Trailing update A22 -= L21 L21^T on the tiles (ib, jb), kb < jb <= ib, with the panel's
    // tiles packed once per panel (A side negated, B side transposed: pb[l][j] = L21[j][l])
    // rather than once per product: the kernel sees the values gemm_tile would give it.
    const int64_t rest = n - (k0 + kn);
    if (rest == 0) continue;
    const int64_t t1 = kb + 1;  // first trailing tile
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t ib = t1; ib < nt; ++ib) {
      const int64_t i0 = t0(ib), in = tn(ib);
      pack_a<T>(Pa.data() + (ib - t1) * kTile * kTile, A + i0 * n + k0, n, in, kn, T(-1));
      T* pb = Pb.data() + (ib - t1) * kTile * kTile;
      for (int64_t l = 0; l < kn; ++l)
        for (int64_t j = 0; j < in; ++j) pb[l * in + j] = A[(i0 + j) * n + k0 + l];
    }
    std::vector<std::pair<int64_t, int64_t>> tiles;
    for (int64_t ib = t1; ib < nt; ++ib)
      for (int64_t jb = t1; jb <= ib; ++jb) tiles.emplace_back(ib, jb);
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (size_t t = 0; t < tiles.size(); ++t) {
      const auto [ib, jb] = tiles[t];
      const int64_t i0 = t0(ib), in = tn(ib), j0 = t0(jb), jn = tn(jb);
      gemm_packed<T>(A + i0 * n + j0, n, Pa.data() + (ib - t1) * kTile * kTile, Pb.data() + (jb - t1) * kTile * kTile,
                     in, jn, kn);
    }
  }
  return -1;
}

// Row blocks are taken kGroup at a time: the products with the finished part of the inverse
// (rows above the group) run for the whole group while each of its tiles is in cache, instead of
// re-reading that part (up to 128 MB at n = 8192) from memory for every row block. Every element
// of S still sums its tile products in ascending K, one call each: the same bits.
template <class T>
void invert_lower(T* A, int64_t n, int n_threads) {
  assert(n % 32 == 0);
  constexpr int64_t kGroup = 4;
  const int64_t nt = (n + kTile - 1) / kTile;
  std::vector<T> S(static_cast<size_t>(kGroup * kTile * n)), D(static_cast<size_t>(kTile * kTile));
  // The group's rows of L left of it, packed once per group tile by tile: pl[(I - ib0) nt + K].
  std::vector<T> pl(static_cast<size_t>(kGroup * nt * kTile * kTile));
  auto t0 = [](int64_t t) { return t * kTile; };
  auto tn = [n](int64_t t) { return std::min(kTile, n - t * kTile); };
  auto s_of = [&](int64_t ib, int64_t ib0) { return S.data() + (ib - ib0) * kTile * n; };
  auto pl_of = [&](int64_t ib, int64_t ib0, int64_t kb) { return pl.data() + ((ib - ib0) * nt + kb) * kTile * kTile; };
  for (int64_t ib0 = 0; ib0 < nt; ib0 += kGroup) {
    const int64_t ib1 = std::min(nt, ib0 + kGroup);
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t kb = 0; kb < ib0; ++kb)
      for (int64_t ib = ib0; ib < ib1; ++ib)
        pack_a<T>(pl_of(ib, ib0, kb), A + t0(ib) * n + t0(kb), n, tn(ib), tn(kb), T(1));
    // S_I[:, J] = sum_{K = J .. ib0-1} L[I][K] X[K][J] for the group's row blocks I, J < ib0;
    // each tile of X packed once for the whole group.
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
    for (int64_t jb = 0; jb < ib0; ++jb) {
      const int64_t j0 = t0(jb), jn = tn(jb);
      thread_local std::vector<T> pb(kTile * kTile);
      for (int64_t ib = ib0; ib < ib1; ++ib)
        for (int64_t r = 0; r < tn(ib); ++r) std::fill(s_of(ib, ib0) + r * n + j0, s_of(ib, ib0) + r * n + j0 + jn, T(0));
      for (int64_t kb = jb; kb < ib0; ++kb) {
        pack_b<T>(pb.data(), A + t0(kb) * n + j0, n, jn, tn(kb));
        for (int64_t ib = ib0; ib < ib1; ++ib)
          gemm_packed<T>(s_of(ib, ib0) + j0, n, pl_of(ib, ib0, kb), pb.data(), tn(ib), jn, tn(kb));
      }
    }
    for (int64_t ib = ib0; ib < ib1; ++ib) {
      const int64_t i0 = t0(ib), in = tn(ib);
      T* si = s_of(ib, ib0);
      invert_tile(A + i0 * n + i0, n, in, D.data());
      // The rest of S_I[:, J] (K from max(J, ib0) to ib - 1: rows of the group already
      // inverted), then X[I][J] = -D S_I[:, J]. S is complete before A's row block is written.
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
      for (int64_t jb = 0; jb < ib; ++jb) {
        const int64_t j0 = t0(jb), jn = tn(jb);
        if (jb >= ib0)
          for (int64_t r = 0; r < in; ++r) std::fill(si + r * n + j0, si + r * n + j0 + jn, T(0));
        for (int64_t kb = std::max(jb, ib0); kb < ib; ++kb)
          gemm_tile<T>(si + j0, n, A + i0 * n + t0(kb), n, A + t0(kb) * n + j0, n, in, jn, tn(kb), T(1));
      }
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
      for (int64_t jb = 0; jb < ib; ++jb) {
        const int64_t j0 = t0(jb), jn = tn(jb);
        T* x = A + i0 * n + j0;
        for (int64_t r = 0; r < in; ++r) std::fill(x + r * n, x + r * n + jn, T(0));
        gemm_tile<T>(x, n, D.data(), in, si + j0, n, in, jn, in, T(-1));
      }
      // The whole diagonal tile, zeros above its diagonal included: later products read it whole.
      for (int64_t r = 0; r < in; ++r)
        for (int64_t c = 0; c < in; ++c) A[(i0 + r) * n + i0 + c] = D[r * in + c];
    }
  }
}

template int64_t cholesky_lower<float>(float*, int64_t, int);
template void invert_lower<float>(float*, int64_t, int);

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

// The same update with AVX-512: 8 rows x 32 columns in registers (16 accumulators), each pair of
// U loads serving 16 FMAs; a 16-column tail and rows beyond a multiple of 8 one zmm at a time.
// Per element the same FMA sequence over k as the AVX2 kernel (same bits). E: one pointer per
// row of the tile (E[i][k]), so that rows of a packed triangle serve as well as a dense matrix.
template <int kRows, int kVecs>
[[gnu::target("avx512f,avx512vl,avx2,fma")]] inline void deferred_avx512_tile(float* W, int64_t ldW, int64_t j,
                                                                              const float* const* E, int64_t nk,
                                                                              const float* const* U) {
  __m512 acc[kRows][kVecs];
  for (int i = 0; i < kRows; ++i)
    for (int v = 0; v < kVecs; ++v) acc[i][v] = _mm512_loadu_ps(W + i * ldW + j + 16 * v);
  for (int64_t k = 0; k < nk; ++k) {
    __m512 u[kVecs];
    for (int v = 0; v < kVecs; ++v) u[v] = _mm512_loadu_ps(U[k] + j + 16 * v);
    for (int i = 0; i < kRows; ++i) {
      const __m512 e = _mm512_set1_ps(E[i][k]);
      for (int v = 0; v < kVecs; ++v) acc[i][v] = _mm512_fnmadd_ps(e, u[v], acc[i][v]);
    }
  }
  for (int i = 0; i < kRows; ++i)
    for (int v = 0; v < kVecs; ++v) _mm512_storeu_ps(W + i * ldW + j + 16 * v, acc[i][v]);
}

// Rows r < nr of W (stride ldW), columns [c0, c1): W[r][c] -= sum_k E[r][k] U[k][c] (E: row
// pointers).
[[gnu::target("avx512f,avx512vl,avx2,fma")]] void deferred_avx512(float* W, int64_t ldW, int64_t nr, int64_t c0,
                                                                  int64_t c1, const float* const* E, int64_t nk,
                                                                  const float* const* U) {
  constexpr int64_t kColTile = 256;
  for (int64_t t0 = c0; t0 < c1; t0 += kColTile) {
    const int64_t t1 = std::min(c1, t0 + kColTile);
    int64_t r = 0;
    for (; r + 8 <= nr; r += 8) {
      int64_t j = t0;
      for (; j + 32 <= t1; j += 32) deferred_avx512_tile<8, 2>(W + r * ldW, ldW, j, E + r, nk, U);
      if (j < t1) deferred_avx512_tile<8, 1>(W + r * ldW, ldW, j, E + r, nk, U);
    }
    for (; r < nr; ++r)
      for (int64_t j = t0; j < t1; j += 16) deferred_avx512_tile<1, 1>(W + r * ldW, ldW, j, E + r, nk, U);
  }
}
#endif

}  // namespace

void deferred_update(float* W, int64_t nr, int64_t n, int64_t c1, const float* E, int64_t ldE, int64_t nk,
                     const float* const* U) {
  assert((n - c1) % 16 == 0);
#ifdef SMOLQ_EF_X86
  if (cpu::has_avx512()) {
    constexpr int64_t kMaxRows = 256;  // row pointers on the stack, chunks of rows beyond
    const float* er[kMaxRows];
    for (int64_t r0 = 0; r0 < nr; r0 += kMaxRows) {
      const int64_t m = std::min(kMaxRows, nr - r0);
      for (int64_t r = 0; r < m; ++r) er[r] = E + (r0 + r) * ldE;
      deferred_avx512(W + r0 * n, n, m, c1, n, er, nk, U);
    }
    return;
  }
  if (use_avx2_fma()) return deferred_avx2(W, nr, n, c1, E, ldE, nk, U);
#endif
  deferred_ref(W, nr, n, c1, E, ldE, nk, U);
}

void deferred_update_rows(float* W, int64_t ldW, int64_t nr, int64_t c0, int64_t c1, const float* const* E, int64_t nk,
                          const float* const* U) {
  assert((c1 - c0) % 16 == 0);
#ifdef SMOLQ_EF_X86
  if (cpu::has_avx512()) return deferred_avx512(W, ldW, nr, c0, c1, E, nk, U);
#endif
  // One row at a time through deferred_update on the column range (the same per-element FMA
  // sequence as its multi-row tiles).
  std::vector<const float*> us(static_cast<size_t>(nk));
  for (int64_t k = 0; k < nk; ++k) us[k] = U[k] + c0;
  for (int64_t r = 0; r < nr; ++r) deferred_update(W + r * ldW + c0, 1, c1 - c0, 0, E[r], 0, nk, us.data());
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
