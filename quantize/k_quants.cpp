// K-quants: 256-element super-blocks with small integer sub-block scales (quantize/blocks.h).
// This file holds, per type, the search configuration, the bit packing and ggml's decoder;
// the searches themselves are in quant_search.cpp. Every type has a scalar `_ref` quantizer
// and a fast one (the same engine compiled for AVX2 when the CPU has it; identical bytes).
//
// Bit layouts (facts of the format, as ggml defines them):
//   - 2-bit planes (Q2_K qs, Q3_K qs): each 128-element half uses 32 bytes; element 32*k + l of
//     the half sits in byte l, bits 2k..2k+1 (k = 0..3).
//   - Q3_K hmask: the third bit of element j is bit (j / 32) of hmask[j % 32]; the stored level
//     is l + 4, so a set bit means "no -4".
//   - Q3_K / Q4_K / Q5_K 12-byte scales: see pack_q3k_scales / pack_scale_min_k4 below.
//   - 4-bit planes (Q4_K, Q5_K): each 64-element chunk uses 32 bytes; element l in the low
//     nibble of byte l, element 32 + l in the high nibble.
//   - Q5_K qh: the fifth bit of element 64*c + l is bit 2c of qh[l], of element 64*c + 32 + l
//     bit 2c + 1.
//   - Q6_K: per 128-element half, ql holds 64 bytes: byte l = low nibbles of elements l (low)
//     and l + 64 (high), byte 32 + l = elements l + 32 and l + 96; qh byte l holds the top two
//     bits of elements l, l + 32, l + 64, l + 96 at bits 0, 2, 4, 6.
#include <cassert>
#include <cstring>

#include "formats/cpu_features.h"
#include "formats/half.h"
#include "quantize/block_levels.h"
#include "quantize/blocks.h"
#include "quantize/quant_search.h"
#include "quantize/quants_legacy_k.h"

namespace smolq::kernels {
namespace {

using qsearch::AffineSearch;
using qsearch::AffineSuperBlock;
using qsearch::AffineSuperConfig;
using qsearch::SymmetricSearch;
using qsearch::SymmetricSuperBlock;
using qsearch::SymmetricSuperConfig;

// ---- search configurations ----------------------------------------------------------------
// Element searches: a sweep of inverse scales then local refinement (quant_search.h).
// Scale searches: the integer sub-block scales are fitted like a symmetric group.
// Sizes were chosen on the golden data (ggml's figures as the bar) and for speed: candidate
// counts fill whole AVX2 passes of 8 (16 or 24 affine candidates, 14 symmetric ones in two
// passes), `radius` is the +- neighbourhood of integer sub-block scales tried under the f16
// super-block scale, and `rounds` bounds the "refit d, re-pick integers" iterations. Wider
// sweeps or more rounds measured no better beyond these.
constexpr SymmetricSearch kScaleSearch{.ntry = 4, .step = 0.1f, .both_ends = false, .refine_passes = 2};
// Plain Q3_K's lighter variant (7 candidates, no refinement): the pick step repairs the rest.
constexpr SymmetricSearch kScaleSearchLight{.ntry = 3, .step = 0.1f, .both_ends = false, .refine_passes = 0};

// Q2_K: 2-bit levels 0..3 in 16-element sub-blocks, 4-bit scales and mins.
constexpr AffineSuperConfig kQ2K{.sub = 16, .nsub = 16, .nmax = 3, .smax = 15,
                                 .element = {.rmin = -0.5f, .rdelta = 0.1f, .nstep = 14, .alternations = 4},
                                 .scale = kScaleSearch, .radius = 1, .rounds = 1};
// Q3_K without an imatrix: one candidate pass per sub-block and no refit round. ggml's plain
// Q3_K is a single rounding plus coordinate descent, and this keeps us near its speed while
// still beating its error; with an imatrix the fuller search below pays off.
constexpr SymmetricSuperConfig kQ3KPlain{.sub = 16, .nsub = 16, .lo = -4, .hi = 3, .slo = -32, .shi = 31,
                                         .element = {.ntry = 1, .step = 0.3f, .both_ends = true, .refine_passes = 0},
                                         .scale = kScaleSearchLight, .radius = 1, .rounds = 0};
constexpr SymmetricSuperConfig kQ3K{.sub = 16, .nsub = 16, .lo = -4, .hi = 3, .slo = -32, .shi = 31,
                                    .element = {.ntry = 3, .step = 0.3f, .both_ends = true, .refine_passes = 0},
                                    .scale = kScaleSearch, .radius = 1, .rounds = 1};
// Q4_K / Q5_K: 4- / 5-bit levels in 32-element sub-blocks, 6-bit scales and mins.
constexpr AffineSuperConfig kQ4K{.sub = 32, .nsub = 8, .nmax = 15, .smax = 63,
                                 .element = {.rmin = -1.1f, .rdelta = 0.1f, .nstep = 22, .alternations = 4},
                                 .scale = kScaleSearch, .radius = 1, .rounds = 2};
constexpr AffineSuperConfig kQ5K{.sub = 32, .nsub = 8, .nmax = 31, .smax = 63,
                                 .element = {.rmin = -0.7f, .rdelta = 0.1f, .nstep = 14, .alternations = 4},
                                 .scale = kScaleSearch, .radius = 1, .rounds = 2};
// Q6_K: levels -32..31 in 16-element sub-blocks, int8 scales (ggml's decoder accepts -128).
// Its pick step tries +-3 integers: the AVX2 kernel scores 7 candidates in one pass anyway.
constexpr SymmetricSuperConfig kQ6K{.sub = 16, .nsub = 16, .lo = -32, .hi = 31, .slo = -128, .shi = 127,
                                    .element = {.ntry = 3, .step = 0.3f, .both_ends = true, .refine_passes = 0},
                                    .scale = kScaleSearch, .radius = 3, .rounds = 1};

// sigma^2 of the element weighting sqrt(sigma2 + x^2), as a multiple of the super-block's
// mean square (ggml uses 1 for Q2_K and 2 for Q3_K..Q5_K).
constexpr float kSigmaScaleQ2K = 1.0f;
constexpr float kSigmaScaleK = 2.0f;

// Row driver: per super-block the weights, then `encode(x, w, block)`. Blocks are written with
// memcpy because a row of blocks inside a mapped file need not be aligned.
template <class Block, class Encode>
void quantize_rows_k(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                     std::span<const float> imatrix, float sigma_scale, Encode encode) {
  assert(n_per_row % kQKK == 0 && src.size() % static_cast<size_t>(n_per_row) == 0);
  assert(imatrix.empty() || imatrix.size() == static_cast<size_t>(n_per_row));
  const int64_t nrows = static_cast<int64_t>(src.size()) / n_per_row;
  const int64_t nb = n_per_row / kQKK;
  assert(dst.size() == static_cast<size_t>(nrows * nb) * sizeof(Block));
  float w[kQKK];
  for (int64_t r = 0; r < nrows; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* x = src.data() + r * n_per_row + b * kQKK;
      const float sigma2 = sigma_scale * qsearch::sum_squares(x, kQKK) / kQKK;
      qsearch::element_weights(x, imatrix.empty() ? nullptr : imatrix.data() + b * kQKK, sigma2, kQKK, w);
      Block blk;
      encode(x, w, blk);
      std::memcpy(dst.data() + (r * nb + b) * sizeof(Block), &blk, sizeof blk);
    }
  }
}

template <class Block>
void load_block(std::span<const std::byte> src, size_t b, Block& blk) {
  std::memcpy(&blk, src.data() + b * sizeof(Block), sizeof blk);
}

// 2-bit plane of 256 values (Q2_K, Q3_K): see the layout note at the top.
void pack_2bit(const uint8_t* q, uint8_t* qs) { levels::put_plane2(qs, q); }

// Q4_K/Q5_K scales: 8 pairs of 6-bit (scale, min). Pairs 0-3 keep their low 6 bits in
// bytes 0-3 (scale) and 4-7 (min); pairs 4-7 keep their low 4 bits in the nibbles of bytes
// 8-11 and their top 2 bits in the top 2 bits of bytes 0-3 (scale) and 4-7 (min).
void pack_scale_min_k4(const uint8_t* sc, const uint8_t* mn, uint8_t* out) {
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
}
void unpack_scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    mn = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Q3_K scales: 16 6-bit values (stored scale + 32). Low nibbles: value j < 8 in the low
// nibble of byte j, value j >= 8 in the high nibble of byte j - 8. Top 2 bits: value j at bits
// 2*(j/4) of byte 8 + j%4.
void pack_q3k_scales(const int8_t* sc, uint8_t* out) {
  std::memset(out, 0, 12);
  for (int j = 0; j < 16; ++j) {
    const int v = sc[j] + 32;
    out[j % 8] |= static_cast<uint8_t>((v & 15) << (j < 8 ? 0 : 4));
    out[8 + j % 4] |= static_cast<uint8_t>((v >> 4) << (2 * (j / 4)));
  }
}
int unpack_q3k_scale(int j, const uint8_t* s) {
  const int lo = j < 8 ? (s[j] & 15) : (s[j - 8] >> 4);
  return (lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

}  // namespace

// ---- Q2_K: w = d*(sc & 15)*q - dmin*(sc >> 4), 16 sub-blocks of 16 --------------------------

namespace {

// Q2_K: byte j of scales = 4-bit scale (low nibble) | 4-bit min (high nibble) of sub-block j.
void pack_q2_k(const qsearch::AffineSuperBlock& s, BlockQ2_K& b) {
  for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<uint8_t>(s.sc[j] | (s.m[j] << 4));
  pack_2bit(s.L, b.qs);
  b.d = s.d;
  b.dmin = s.dmin;
}

}  // namespace

void quantize_q2_k_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                       std::span<const float> imatrix) {
  quantize_rows_k<BlockQ2_K>(src, dst, n_per_row, imatrix, kSigmaScaleQ2K, [](const float* x, const float* w, BlockQ2_K& b) {
    qsearch::AffineSuperBlock s;
    qsearch::encode_affine_super(x, w, kQ2K, s);
    pack_q2_k(s, b);
  });
}

void quantize_q2_k(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix) {
  if (!cpu::has_avx2()) return quantize_q2_k_ref(src, dst, n_per_row, imatrix);
  quantize_rows_k<BlockQ2_K>(src, dst, n_per_row, imatrix, kSigmaScaleQ2K, [](const float* x, const float* w, BlockQ2_K& b) {
    qsearch::AffineSuperBlock s;
    qsearch::encode_affine_super_avx2(x, w, kQ2K, s);
    pack_q2_k(s, b);
  });
}

// ggml's order: dl = d * (sc & 15) and ml = dmin * (sc >> 4) first, then dl * q - ml.
void dequantize_q2_k(std::span<const std::byte> src, std::span<float> dst) {
  const size_t nb = dst.size() / kQKK;
  assert(dst.size() % kQKK == 0 && src.size() >= nb * sizeof(BlockQ2_K));
  for (size_t b = 0; b < nb; ++b) {
    BlockQ2_K blk;
    load_block(src, b, blk);
    const float d = f16_to_f32(blk.d), dmin = f16_to_f32(blk.dmin);
    float* y = dst.data() + b * kQKK;
    for (int e = 0; e < kQKK; ++e) {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const uint8_t sc = blk.scales[e / 16];
      const float dl = d * static_cast<float>(sc & 15), ml = dmin * static_cast<float>(sc >> 4);
      const int q = (blk.qs[32 * h + l] >> (2 * k)) & 3;
      y[e] = dl * static_cast<float>(q) - ml;
    }
  }
}

// ---- Q3_K: w = d*sc*(q - 4), sc signed 6-bit, 16 sub-blocks of 16 ----------------------------

namespace {

// Q3_K: 6-bit signed scales (stored + 32), third level bit in hmask, low two bits in qs.
void pack_q3_k(const qsearch::SymmetricSuperBlock& s, BlockQ3_K& b) {
  pack_q3k_scales(s.sc, b.scales);
  // Stored level l + 4: its third bit (set exactly when l >= 0) goes to hmask, its low two bits
  // to the 2-bit plane.
  uint8_t q[kQKK];
  for (int e = 0; e < kQKK; ++e) q[e] = static_cast<uint8_t>(s.L[e] + 4);
  levels::put_hmask(b.hmask, q);
  levels::put_plane2(b.qs, q);
  b.d = s.d;
}

}  // namespace

void quantize_q3_k_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                       std::span<const float> imatrix) {
  const SymmetricSuperConfig& cfg = imatrix.empty() ? kQ3KPlain : kQ3K;
  quantize_rows_k<BlockQ3_K>(src, dst, n_per_row, imatrix, kSigmaScaleK, [&cfg](const float* x, const float* w, BlockQ3_K& b) {
    qsearch::SymmetricSuperBlock s;
    qsearch::encode_symmetric_super(x, w, cfg, s);
    pack_q3_k(s, b);
  });
}

void quantize_q3_k(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix) {
  if (!cpu::has_avx2()) return quantize_q3_k_ref(src, dst, n_per_row, imatrix);
  const SymmetricSuperConfig& cfg = imatrix.empty() ? kQ3KPlain : kQ3K;
  quantize_rows_k<BlockQ3_K>(src, dst, n_per_row, imatrix, kSigmaScaleK, [&cfg](const float* x, const float* w, BlockQ3_K& b) {
    qsearch::SymmetricSuperBlock s;
    qsearch::encode_symmetric_super_avx2(x, w, cfg, s);
    pack_q3_k(s, b);
  });
}

// ggml's order: dl = d * (sc - 32), then dl * q with q = low bits - (hmask bit ? 0 : 4).
void dequantize_q3_k(std::span<const std::byte> src, std::span<float> dst) {
  const size_t nb = dst.size() / kQKK;
  assert(dst.size() % kQKK == 0 && src.size() >= nb * sizeof(BlockQ3_K));
  for (size_t b = 0; b < nb; ++b) {
    BlockQ3_K blk;
    load_block(src, b, blk);
    const float d = f16_to_f32(blk.d);
    float* y = dst.data() + b * kQKK;
    for (int e = 0; e < kQKK; ++e) {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const float dl = d * static_cast<float>(unpack_q3k_scale(e / 16, blk.scales));
      const int lo2 = (blk.qs[32 * h + l] >> (2 * k)) & 3;
      const int q = lo2 - ((blk.hmask[e % 32] >> (e / 32)) & 1 ? 0 : 4);
      y[e] = dl * static_cast<float>(q);
    }
  }
}

// ---- Q4_K: w = d*sc*q - dmin*m, 8 sub-blocks of 32, 6-bit sc and m ---------------------------

namespace {

// Q4_K: 12-byte (scale, min) pairs, then element pairs (l, 32 + l) of each 64-chunk per byte.
void pack_q4_k(const qsearch::AffineSuperBlock& s, BlockQ4_K& b) {
  b.d = s.d;
  b.dmin = s.dmin;
  pack_scale_min_k4(s.sc, s.m, b.scales);
  levels::put_k4_nibbles(b.qs, s.L);
}

}  // namespace

void quantize_q4_k_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                       std::span<const float> imatrix) {
  quantize_rows_k<BlockQ4_K>(src, dst, n_per_row, imatrix, kSigmaScaleK, [](const float* x, const float* w, BlockQ4_K& b) {
    qsearch::AffineSuperBlock s;
    qsearch::encode_affine_super(x, w, kQ4K, s);
    pack_q4_k(s, b);
  });
}

void quantize_q4_k(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix) {
  if (!cpu::has_avx2()) return quantize_q4_k_ref(src, dst, n_per_row, imatrix);
  quantize_rows_k<BlockQ4_K>(src, dst, n_per_row, imatrix, kSigmaScaleK, [](const float* x, const float* w, BlockQ4_K& b) {
    qsearch::AffineSuperBlock s;
    qsearch::encode_affine_super_avx2(x, w, kQ4K, s);
    pack_q4_k(s, b);
  });
}

// ggml's order: d1 = d * sc and m1 = dmin * m per sub-block, then d1 * q - m1.
void dequantize_q4_k(std::span<const std::byte> src, std::span<float> dst) {
  const size_t nb = dst.size() / kQKK;
  assert(dst.size() % kQKK == 0 && src.size() >= nb * sizeof(BlockQ4_K));
  for (size_t b = 0; b < nb; ++b) {
    BlockQ4_K blk;
    load_block(src, b, blk);
    const float d = f16_to_f32(blk.d), dmin = f16_to_f32(blk.dmin);
    float* y = dst.data() + b * kQKK;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      unpack_scale_min_k4(j, blk.scales, sc, m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      const uint8_t* q = blk.qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) y[32 * j + l] = d1 * static_cast<float>((q[l] >> shift) & 15) - m1;
    }
  }
}

// ---- Q5_K: as Q4_K with a fifth bit per element in qh -------------------------------------------

namespace {

// Q5_K: as Q4_K for the low four bits; the fifth bits go to qh (see the layout note on top).
void pack_q5_k(const qsearch::AffineSuperBlock& s, BlockQ5_K& b) {
  b.d = s.d;
  b.dmin = s.dmin;
  pack_scale_min_k4(s.sc, s.m, b.scales);
  levels::put_k4_nibbles(b.qs, s.L);
  levels::put_q5k_qh(b.qh, s.L);
}

}  // namespace

void quantize_q5_k_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                       std::span<const float> imatrix) {
  quantize_rows_k<BlockQ5_K>(src, dst, n_per_row, imatrix, kSigmaScaleK, [](const float* x, const float* w, BlockQ5_K& b) {
    qsearch::AffineSuperBlock s;
    qsearch::encode_affine_super(x, w, kQ5K, s);
    pack_q5_k(s, b);
  });
}

void quantize_q5_k(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix) {
  if (!cpu::has_avx2()) return quantize_q5_k_ref(src, dst, n_per_row, imatrix);
  quantize_rows_k<BlockQ5_K>(src, dst, n_per_row, imatrix, kSigmaScaleK, [](const float* x, const float* w, BlockQ5_K& b) {
    qsearch::AffineSuperBlock s;
    qsearch::encode_affine_super_avx2(x, w, kQ5K, s);
    pack_q5_k(s, b);
  });
}

// As Q4_K; the fifth bit adds 16 to the integer level before the conversion to float.
void dequantize_q5_k(std::span<const std::byte> src, std::span<float> dst) {
  const size_t nb = dst.size() / kQKK;
  assert(dst.size() % kQKK == 0 && src.size() >= nb * sizeof(BlockQ5_K));
  for (size_t b = 0; b < nb; ++b) {
    BlockQ5_K blk;
    load_block(src, b, blk);
    const float d = f16_to_f32(blk.d), dmin = f16_to_f32(blk.dmin);
    float* y = dst.data() + b * kQKK;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      unpack_scale_min_k4(j, blk.scales, sc, m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      const uint8_t* q = blk.qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 15) + (((blk.qh[l] >> j) & 1) ? 16 : 0);
        y[32 * j + l] = d1 * static_cast<float>(v) - m1;
      }
    }
  }
}

// ---- Q6_K: w = d*sc*(q - 32), int8 sc, 16 sub-blocks of 16 -----------------------------------

namespace {

// Q6_K: stored level l + 32 (0..63) split into four low bits (ql) and two high bits (qh).
void pack_q6_k(const qsearch::SymmetricSuperBlock& s, BlockQ6_K& b) {
  b.d = s.d;
  std::memcpy(b.scales, s.sc, 16);
  uint8_t q[kQKK];
  for (int e = 0; e < kQKK; ++e) q[e] = static_cast<uint8_t>(s.L[e] + 32);
  levels::put_q6k(b.ql, b.qh, q);
}

}  // namespace

void quantize_q6_k_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                       std::span<const float> imatrix) {
  quantize_rows_k<BlockQ6_K>(src, dst, n_per_row, imatrix, kSigmaScaleK, [](const float* x, const float* w, BlockQ6_K& b) {
    qsearch::SymmetricSuperBlock s;
    qsearch::encode_symmetric_super(x, w, kQ6K, s);
    pack_q6_k(s, b);
  });
}

void quantize_q6_k(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix) {
  if (!cpu::has_avx2()) return quantize_q6_k_ref(src, dst, n_per_row, imatrix);
  quantize_rows_k<BlockQ6_K>(src, dst, n_per_row, imatrix, kSigmaScaleK, [](const float* x, const float* w, BlockQ6_K& b) {
    qsearch::SymmetricSuperBlock s;
    qsearch::encode_symmetric_super_avx2(x, w, kQ6K, s);
    pack_q6_k(s, b);
  });
}

// ggml computes d * sc * q left to right: (d * sc) * q.
void dequantize_q6_k(std::span<const std::byte> src, std::span<float> dst) {
  const size_t nb = dst.size() / kQKK;
  assert(dst.size() % kQKK == 0 && src.size() >= nb * sizeof(BlockQ6_K));
  for (size_t b = 0; b < nb; ++b) {
    BlockQ6_K blk;
    load_block(src, b, blk);
    const float d = f16_to_f32(blk.d);
    float* y = dst.data() + b * kQKK;
    for (int e = 0; e < kQKK; ++e) {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const int lo4 = (blk.ql[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 15;
      const int hi2 = (blk.qh[32 * h + l] >> (2 * k)) & 3;
      const int q = (lo4 | (hi2 << 4)) - 32;
      y[e] = d * static_cast<float>(blk.scales[e / 16]) * static_cast<float>(q);
    }
  }
}

}  // namespace smolq::kernels
