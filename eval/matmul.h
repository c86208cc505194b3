// The matrix product of the reference forward pass: y = x * W^T for a whole batch of tokens,
// with W in any stored encoding (eval/model.h) and all arithmetic in f32.
//
// Speed: W is never expanded whole. Each thread dequantizes a tile of rows (sized for L2)
// into a scratch buffer and multiplies it with blocks of tokens in a register-blocked
// micro-kernel (4 weight rows x 3 tokens, 8 f32 lanes, runtime-dispatched AVX2/FMA with a
// portable fallback; with AVX-512, 8 packed rows x 6 tokens, two rows per 512-bit register,
// same arithmetic). Threads split the output rows (OpenMP).
//
// Determinism: every output value is one dot product whose reduction order is fixed —
// lane l (of 8) accumulates the products of columns k = l mod 8 with fused multiply-adds in
// increasing k, the lanes are added pairwise in a fixed tree, then any tail columns are added
// in order. Tiling, batch composition and thread count change which thread computes a value,
// never how, so results are bit-identical for any --threads and any batch split.
#pragma once
#include <cstdint>

#include "eval/model.h"

namespace smolq {

// y[t * w.rows + r] = sum_k w(r, k) * x[t * w.cols + k]   for t < n_tokens, r < w.rows.
// By default, block-quantized weights with an integer form (quantize/weight_ints.h) take the
// integer path (eval/matmul_int.h: int16 activations, AVX-512 VNNI) on CPUs that have it;
// everything else — SMOLQ_EVAL_MATMUL=f32, F32/F16/BF16, the other types, other CPUs,
// SMOLQ_SIMD=avx2|scalar — takes matmul_f32, the reference.
void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int n_threads);

// The f32 path described above for any weight type: rows dequantized to f32 by tiles.
void matmul_f32(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int n_threads);

// The same fixed-order dot product on plain arrays (n may be any length).
float dot_f32(const float* a, const float* b, int64_t n);

// out[i * ldo + j] = dot_f32(q[i], k + j * k_stride, d) for i < nq (1..3), j < n_keys:
// attention scores of up to three queries against the same keys (the keys' loads are shared).
void dot_rows(const float* const* q, int nq, const float* k, int64_t k_stride, int64_t n_keys, int64_t d, float* out,
              int64_t ldo);

// out[i] = sum_j p[j] * v[j * v_stride + i] for i < d, j in increasing order (attention output).
void weighted_rows(const float* p, const float* v, int64_t v_stride, int64_t n_rows, int64_t d, float* out);

// dot_rows on keys packed in groups of 8 (detail::pack_group8's layout, 8 * d floats a group,
// as tile8_avx512 reads them) for up to 6 queries; the same bits as dot_rows. AVX-512 only:
// call it when cpu::has_avx512().
void dot_rows_packed(const float* const* q, int nq, const float* packed_keys, int64_t n_keys, int64_t d, float* out,
                     int64_t ldo);

// The attention outputs of nq (1..6) consecutive queries of one head, query i seeing n_keys + i
// keys: out[i * ldo + c] = weighted_rows(p + i * ldp, v, v_stride, n_keys + i, d)[c] (same bits;
// with AVX-512 the queries share the loads of v).
void weighted_rows_block(const float* p, int64_t ldp, int nq, const float* v, int64_t v_stride, int64_t n_keys,
                         int64_t d, float* out, int64_t ldo);

namespace detail {
// One micro-kernel call: rm (1..4) weight rows x rn (1..3) token rows of length k; writes
// y[t * ldy + r]. Both implementations follow the reduction order described above.
using TileFn = void (*)(const float* const* w, int rm, const float* const* x, int rn, int64_t k, float* y,
                        int64_t ldy);
void tile_portable(const float* const* w, int rm, const float* const* x, int rn, int64_t k, float* y, int64_t ldy);
void tile_avx2(const float* const* w, int rm, const float* const* x, int rn, int64_t k, float* y, int64_t ldy);
// The same arithmetic on 8 weight rows x rn (1..6) tokens, two rows per 512-bit register, reading
// the rows from one packed group (pack_group8 in matmul.cpp: per 8 columns the 8 rows' values,
// then the tail columns row by row; 8 * k floats). Writes rows r < rm (1..8) only.
void tile8_avx512(const float* wp, int rm, const float* const* x, int rn, int64_t k, float* y, int64_t ldy);
// Rows[0, n) (n <= 8) of length k in tile8_avx512's packed layout (8 * k floats); rows n..7
// are zeros (their outputs are computed and dropped).
void pack_group8(const float* const* rows, int n, int64_t k, float* out);
void weighted_rows_block_avx512(const float* p, int64_t ldp, int nq, const float* v, int64_t v_stride, int64_t n_keys,
                                int64_t d, float* out, int64_t ldo);
void dot_rows_avx2(const float* const* q, int nq, const float* k, int64_t k_stride, int64_t n_keys, int64_t d, float* out,
                   int64_t ldo);
void weighted_rows_avx2(const float* p, const float* v, int64_t v_stride, int64_t n_rows, int64_t d, float* out);
}  // namespace detail

}  // namespace smolq
