// Dense linear algebra of the error-feedback quantizer (quantize/error_feedback.h): the blocked
// Cholesky factorisation and triangular inversion behind prepare(), and the small matrix
// product of the sweep's deferred update. Row-major storage, sizes multiples of 32 (every
// d_in the quantizer sees is a multiple of a block size). Work is split into fixed tiles whose
// arithmetic does not depend on the thread that runs them, so results never depend on the
// thread count. The tile products and the deferred update run in AVX-512 or AVX2+FMA kernels
// chosen by the project's one CPU-feature check (formats/cpu_features.h; scalar loops
// otherwise). The SIMD levels may differ in the last bits; a machine gives the same bytes every
// run.
#pragma once
#include <cstdint>

namespace smolq::ef::linalg {

// In place: the lower triangle of the symmetric n x n matrix A becomes L with A = L L^T (the
// strict upper triangle is scratch). Returns -1 on success, else the row whose pivot was not
// positive (or not finite). Instantiated for T = float, what prepare() uses.
template <class T>
int64_t cholesky_lower(T* A, int64_t n, int n_threads);

// In place: the lower-triangular L (lower triangle of A) becomes L^-1 (lower triangle).
template <class T>
void invert_lower(T* A, int64_t n, int n_threads);

// W[r][c1 .. n) -= sum_k E[r][k] * U[k][c1 .. n) for r < nr, k < nk: the deferred update of a
// chunk of rows. W: nr rows of stride n; E: nr rows of stride ldE; U: nk row pointers (the
// batch's rows of the factor; U[k][j] valid for c1 <= j < n). (n - c1) must be a multiple of 16.
void deferred_update(float* W, int64_t nr, int64_t n, int64_t c1, const float* E, int64_t ldE, int64_t nk,
                     const float* const* U);

// The same for nr rows of stride ldW and the columns [c0, c1) only, with E given by row
// pointers (E[r][k], k < nk): rows of a packed triangle serve as E. U[k][j] valid for
// c0 <= j < c1; (c1 - c0) a multiple of 16. Per element the same FMA sequence over k as
// deferred_update.
void deferred_update_rows(float* W, int64_t ldW, int64_t nr, int64_t c0, int64_t c1, const float* const* E, int64_t nk,
                          const float* const* U);

// w[j] -= e * u[j] for from <= j < to: the in-batch update after one column.
void axpy_update(float* w, const float* u, int64_t from, int64_t to, float e);

}  // namespace smolq::ef::linalg
