// Scalar-grid codecs of the error-feedback quantizer (ef_codec.h): the 32-element legacy types,
// Q8_0, IQ4_NL, the K-quants and IQ4_XS. For each: `choose` runs the plain kernel's search on
// one block (so the scales are exactly the ones the plain quantizer would pick for those
// weights), `unpack` reads every element's grid (its sub-block's decoded step and offset, as the
// decoder forms them) and level, `pack` writes levels back into the quant bits only.
// The bit layouts are ggml's (quantize/blocks.h; the decoders in legacy_quants.cpp,
// k_quants.cpp and iq4.cpp are the reference these accessors mirror, and the tests decode the
// packed blocks with them). Where the levels sit in the bytes is quantize/block_levels.h, shared
// with the encoders.
#include <cassert>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "formats/half.h"
#include "quantize/block_levels.h"
#include "quantize/blocks.h"
#include "quantize/ef_codec.h"
#include "quantize/iq_tables.h"
#include "quantize/quant_search.h"
#include "quantize/quants_legacy_k.h"
#include "quantize/registry.h"

namespace smolq::ef::detail {
namespace {

// The plain kernel (registry's fast path, byte-identical to the reference) on one block.
template <GgmlType T, int N>
void choose_registry(const float* x, const float* imatrix, float, std::byte* blk) {
  const QTypeInfo& q = qtype(T);
  std::span<const float> imat;
  if (imatrix) imat = {imatrix, static_cast<size_t>(N)};
  q.quantize({x, static_cast<size_t>(N)}, {blk, static_cast<size_t>(q.geo->block_bytes)}, N, imat);
}
template <GgmlType T>
void choose_legacy(const float* x, const float* imatrix, float row_sigma2, std::byte* blk) {
  kernels::quantize_legacy_block(T, x, imatrix, row_sigma2, blk);
}

// ---- 32-element types (level layouts: quantize/block_levels.h) ------------------------------

using levels::get_nibbles32;
using levels::put_nibbles32;
void fill_grid(ElementGrid* g, int n, float a, float b, int lo, int hi) {
  for (int j = 0; j < n; ++j) g[j] = {a, b, lo, hi};
}

// Q4_0: w = d * (q - 8); level = q - 8.
void unpack_q4_0(const std::byte* p, ElementGrid* g, int* L) {
  const auto b = load<BlockQ4_0>(p);
  fill_grid(g, kQK, f16_to_f32(b.d), 0.0f, -8, 7);
  get_nibbles32(b.qs, L);
  for (int j = 0; j < kQK; ++j) L[j] -= 8;
}
void pack_q4_0(std::byte* p, const int* L) {
  auto b = load<BlockQ4_0>(p);
  int q[kQK];
  for (int j = 0; j < kQK; ++j) q[j] = L[j] + 8;
  put_nibbles32(b.qs, q);
  store(p, b);
}
// Q4_1: w = d * q + m.
void unpack_q4_1(const std::byte* p, ElementGrid* g, int* L) {
  const auto b = load<BlockQ4_1>(p);
  fill_grid(g, kQK, f16_to_f32(b.d), f16_to_f32(b.m), 0, 15);
  get_nibbles32(b.qs, L);
}
void pack_q4_1(std::byte* p, const int* L) {
  auto b = load<BlockQ4_1>(p);
  put_nibbles32(b.qs, L);
  store(p, b);
}
// Q5_0: w = d * (q - 16), fifth bit of q in qh.
void unpack_q5_0(const std::byte* p, ElementGrid* g, int* L) {
  const auto b = load<BlockQ5_0>(p);
  fill_grid(g, kQK, f16_to_f32(b.d), 0.0f, -16, 15);
  get_nibbles32(b.qs, L);
  levels::or_qh32(b.qh, L);
  for (int j = 0; j < kQK; ++j) L[j] -= 16;
}
void pack_q5_0(std::byte* p, const int* L) {
  auto b = load<BlockQ5_0>(p);
  int q[kQK];
  for (int j = 0; j < kQK; ++j) q[j] = L[j] + 16;
  put_nibbles32(b.qs, q);
  levels::put_qh32(b.qh, q);
  store(p, b);
}
// Q5_1: w = d * q + m, 5-bit q.
void unpack_q5_1(const std::byte* p, ElementGrid* g, int* L) {
  const auto b = load<BlockQ5_1>(p);
  fill_grid(g, kQK, f16_to_f32(b.d), f16_to_f32(b.m), 0, 31);
  get_nibbles32(b.qs, L);
  levels::or_qh32(b.qh, L);
}
void pack_q5_1(std::byte* p, const int* L) {
  auto b = load<BlockQ5_1>(p);
  put_nibbles32(b.qs, L);
  levels::put_qh32(b.qh, L);
  store(p, b);
}
// Q8_0: w = d * q. Levels stop at -127 like ggml's encoder: llama.cpp's int8 dot products
// take |q| with a sign trick that -128 would overflow.
void unpack_q8_0(const std::byte* p, ElementGrid* g, int* L) {
  const auto b = load<BlockQ8_0>(p);
  fill_grid(g, kQK, f16_to_f32(b.d), 0.0f, -127, 127);
  for (int j = 0; j < kQK; ++j) L[j] = b.qs[j];
}
void pack_q8_0(std::byte* p, const int* L) {
  auto b = load<BlockQ8_0>(p);
  for (int j = 0; j < kQK; ++j) b.qs[j] = static_cast<int8_t>(L[j]);
  store(p, b);
}
// IQ4_NL: w = d * table[q].
void unpack_iq4_nl(const std::byte* p, ElementGrid* g, int* L) {
  const auto b = load<BlockIQ4_NL>(p);
  fill_grid(g, kQK, f16_to_f32(b.d), 0.0f, 0, 15);
  get_nibbles32(b.qs, L);
}
void pack_iq4_nl(std::byte* p, const int* L) {
  auto b = load<BlockIQ4_NL>(p);
  put_nibbles32(b.qs, L);
  store(p, b);
}

// ---- K-quants: element e of a 256-block --------------------------------------------------------

using levels::get_plane2;
using levels::put_plane2;

// Q2_K: w = (d*sc)*q - dmin*m, sc / m the nibbles of scales[e/16].
void unpack_q2_k(const std::byte* p, ElementGrid* g, int* L) {
  const auto b = load<BlockQ2_K>(p);
  const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
  for (int s = 0; s < 16; ++s)
    fill_grid(g + 16 * s, 16, d * static_cast<float>(b.scales[s] & 15), -(dmin * static_cast<float>(b.scales[s] >> 4)), 0, 3);
  get_plane2(b.qs, L);
}
void pack_q2_k(std::byte* p, const int* L) {
  auto b = load<BlockQ2_K>(p);
  put_plane2(b.qs, L);
  store(p, b);
}

// Q3_K: w = (d*sc)*l, l in [-4, 3] stored as l + 4 (third bit in hmask: bit e/32 of
// hmask[e%32]); 6-bit scales stored + 32 (low nibbles in bytes 0..7, top bits in 8..11).
int q3k_scale(int j, const uint8_t* s) {
  const int lo = j < 8 ? (s[j] & 15) : (s[j - 8] >> 4);
  return (lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}
void unpack_q3_k(const std::byte* p, ElementGrid* g, int* L) {
  const auto b = load<BlockQ3_K>(p);
  const float d = f16_to_f32(b.d);
  for (int s = 0; s < 16; ++s) fill_grid(g + 16 * s, 16, d * static_cast<float>(q3k_scale(s, b.scales)), 0.0f, -4, 3);
  get_plane2(b.qs, L);
  levels::or_hmask(b.hmask, L);
  for (int e = 0; e < kQKK; ++e) L[e] -= 4;
}
void pack_q3_k(std::byte* p, const int* L) {
  auto b = load<BlockQ3_K>(p);
  int q[kQKK];
  for (int e = 0; e < kQKK; ++e) q[e] = L[e] + 4;
  levels::put_hmask(b.hmask, q);
  put_plane2(b.qs, q);
  store(p, b);
}

// Q4_K / Q5_K: 8 sub-blocks of 32, w = (d*sc)*q - dmin*m with 6-bit (sc, m) pairs packed in 12
// bytes; the low nibble of element 64c + l is in qs[32c + l] (low), of 64c + 32 + l (high);
// Q5_K's fifth bit of sub-block j's element l is bit j of qh[l].
void k4_scale_min(int j, const uint8_t* q, int& sc, int& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}
template <class Block>
void k4_grid(const Block& b, ElementGrid* g, int hi) {
  const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
  for (int j = 0; j < 8; ++j) {
    int sc, mn;
    k4_scale_min(j, b.scales, sc, mn);
    fill_grid(g + 32 * j, 32, d * static_cast<float>(sc), -(dmin * static_cast<float>(mn)), 0, hi);
  }
}
using levels::get_k4_nibbles;
using levels::put_k4_nibbles;
void unpack_q4_k(const std::byte* p, ElementGrid* g, int* L) {
  const auto b = load<BlockQ4_K>(p);
  k4_grid(b, g, 15);
  get_k4_nibbles(b.qs, L);
}
void pack_q4_k(std::byte* p, const int* L) {
  auto b = load<BlockQ4_K>(p);
  put_k4_nibbles(b.qs, L);
  store(p, b);
}
void unpack_q5_k(const std::byte* p, ElementGrid* g, int* L) {
  const auto b = load<BlockQ5_K>(p);
  k4_grid(b, g, 31);
  get_k4_nibbles(b.qs, L);
  levels::or_q5k_qh(b.qh, L);
}
void pack_q5_k(std::byte* p, const int* L) {
  auto b = load<BlockQ5_K>(p);
  put_k4_nibbles(b.qs, L);
  levels::put_q5k_qh(b.qh, L);
  store(p, b);
}

// Q6_K: w = (d*sc)*(q - 32), int8 sc per 16 elements; q in ql / qh (block_levels.h).
void unpack_q6_k(const std::byte* p, ElementGrid* g, int* L) {
  const auto b = load<BlockQ6_K>(p);
  const float d = f16_to_f32(b.d);
  for (int s = 0; s < 16; ++s) fill_grid(g + 16 * s, 16, d * static_cast<float>(b.scales[s]), 0.0f, -32, 31);
  levels::get_q6k(b.ql, b.qh, L);
  for (int e = 0; e < kQKK; ++e) L[e] -= 32;
}
void pack_q6_k(std::byte* p, const int* L) {
  auto b = load<BlockQ6_K>(p);
  int q[kQKK];
  for (int e = 0; e < kQKK; ++e) q[e] = L[e] + 32;
  levels::put_q6k(b.ql, b.qh, q);
  store(p, b);
}

// IQ4_XS: 8 sub-blocks of 32, w = (d*(ls - 32))*table[q], ls 6 bits (low nibble in scales_l,
// top two bits in scales_h); nibbles of each 32 as IQ4_NL.
void unpack_iq4_xs(const std::byte* p, ElementGrid* g, int* L) {
  const auto b = load<BlockIQ4_XS>(p);
  const float d = f16_to_f32(b.d);
  for (int ib = 0; ib < 8; ++ib) {
    const int ls = ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) | (((b.scales_h >> (2 * ib)) & 3) << 4);
    fill_grid(g + 32 * ib, 32, d * static_cast<float>(ls - 32), 0.0f, 0, 15);
    get_nibbles32(b.qs + 16 * ib, L + 32 * ib);
  }
}
void pack_iq4_xs(std::byte* p, const int* L) {
  auto b = load<BlockIQ4_XS>(p);
  for (int ib = 0; ib < 8; ++ib) put_nibbles32(b.qs + 16 * ib, L + 32 * ib);
  store(p, b);
}

const int8_t* iq4_table() { return iq::kValuesIq4nl.data(); }

}  // namespace

const ScalarCodec* scalar_codec(GgmlType t) {
  using G = GgmlType;
  constexpr int kNone = -1;
#define SMOLQ_OFF(B, f) static_cast<int>(offsetof(B, f))
  static const ScalarCodec kQ4_0{kQK, sizeof(BlockQ4_0), nullptr, choose_legacy<G::Q4_0>, unpack_q4_0, pack_q4_0,
                                 SMOLQ_OFF(BlockQ4_0, d), kNone};
  static const ScalarCodec kQ4_1{kQK, sizeof(BlockQ4_1), nullptr, choose_legacy<G::Q4_1>, unpack_q4_1, pack_q4_1,
                                 SMOLQ_OFF(BlockQ4_1, d), SMOLQ_OFF(BlockQ4_1, m)};
  static const ScalarCodec kQ5_0{kQK, sizeof(BlockQ5_0), nullptr, choose_legacy<G::Q5_0>, unpack_q5_0, pack_q5_0,
                                 SMOLQ_OFF(BlockQ5_0, d), kNone};
  static const ScalarCodec kQ5_1{kQK, sizeof(BlockQ5_1), nullptr, choose_legacy<G::Q5_1>, unpack_q5_1, pack_q5_1,
                                 SMOLQ_OFF(BlockQ5_1, d), SMOLQ_OFF(BlockQ5_1, m)};
  static const ScalarCodec kQ8_0{kQK, sizeof(BlockQ8_0), nullptr, choose_registry<G::Q8_0, kQK>, unpack_q8_0, pack_q8_0,
                                 SMOLQ_OFF(BlockQ8_0, d), kNone};
  static const ScalarCodec kIQ4_NL{kQK, sizeof(BlockIQ4_NL), iq4_table(), choose_registry<G::IQ4_NL, kQK>, unpack_iq4_nl,
                                   pack_iq4_nl, SMOLQ_OFF(BlockIQ4_NL, d), kNone};
  static const ScalarCodec kQ2_K{kQKK, sizeof(BlockQ2_K), nullptr, choose_registry<G::Q2_K, kQKK>, unpack_q2_k, pack_q2_k,
                                 SMOLQ_OFF(BlockQ2_K, d), SMOLQ_OFF(BlockQ2_K, dmin)};
  static const ScalarCodec kQ3_K{kQKK, sizeof(BlockQ3_K), nullptr, choose_registry<G::Q3_K, kQKK>, unpack_q3_k, pack_q3_k,
                                 SMOLQ_OFF(BlockQ3_K, d), kNone};
  static const ScalarCodec kQ4_K{kQKK, sizeof(BlockQ4_K), nullptr, choose_registry<G::Q4_K, kQKK>, unpack_q4_k, pack_q4_k,
                                 SMOLQ_OFF(BlockQ4_K, d), SMOLQ_OFF(BlockQ4_K, dmin)};
  static const ScalarCodec kQ5_K{kQKK, sizeof(BlockQ5_K), nullptr, choose_registry<G::Q5_K, kQKK>, unpack_q5_k, pack_q5_k,
                                 SMOLQ_OFF(BlockQ5_K, d), SMOLQ_OFF(BlockQ5_K, dmin)};
  static const ScalarCodec kQ6_K{kQKK, sizeof(BlockQ6_K), nullptr, choose_registry<G::Q6_K, kQKK>, unpack_q6_k, pack_q6_k,
                                 SMOLQ_OFF(BlockQ6_K, d), kNone};
  static const ScalarCodec kIQ4_XS{kQKK, sizeof(BlockIQ4_XS), iq4_table(), choose_registry<G::IQ4_XS, kQKK>,
                                   unpack_iq4_xs, pack_iq4_xs, SMOLQ_OFF(BlockIQ4_XS, d), kNone};
#undef SMOLQ_OFF
  switch (t) {
    case G::Q4_0: return &kQ4_0;
    case G::Q4_1: return &kQ4_1;
    case G::Q5_0: return &kQ5_0;
    case G::Q5_1: return &kQ5_1;
    case G::Q8_0: return &kQ8_0;
    case G::IQ4_NL: return &kIQ4_NL;
    case G::Q2_K: return &kQ2_K;
    case G::Q3_K: return &kQ3_K;
    case G::Q4_K: return &kQ4_K;
    case G::Q5_K: return &kQ5_K;
    case G::Q6_K: return &kQ6_K;
    case G::IQ4_XS: return &kIQ4_XS;
    default: return nullptr;
  }
}

int nearest_level(const ElementGrid& g, const int8_t* table, float v) {
  if (table) {  // ascending table: the nearest value, ties to the lower one
    int best = 0;
    float be = std::fabs(grid_value(g, table, 0) - v);
    for (int l = 1; l < 16; ++l) {
      const float e = std::fabs(grid_value(g, table, l) - v);
      if (e < be) {
        be = e;
        best = l;
      }
    }
    return best;
  }
  const float t = (v - g.b) / g.a;
  if (std::isnan(t)) return g.lo;  // only from non-finite weights; keeps the level in range
  return static_cast<int>(qsearch::round_clamped(t, static_cast<float>(g.lo), static_cast<float>(g.hi)));
}

}  // namespace smolq::ef::detail
