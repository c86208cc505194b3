// The sub-block scale codes of the K-quants and IQ4_XS, read and written in place (ef_cd.h,
// SubScaleCodec). Bit layouts are ggml's, as the decoders in k_quants.cpp / iq4.cpp read them
// and as ef_scalar.cpp's unpack functions mirror them; the tests write codes with `set` and
// check `get`, the codec's grids and the registry's decoder against each other.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "formats/half.h"
#include "quantize/blocks.h"
#include "quantize/ef_cd.h"

namespace smolq::ef::detail {
namespace {

// Q2_K: scales[s] = sc | m << 4 (4 bits each).
void get_q2_k(const std::byte* p, int s, int& sc, int& m) {
  const auto b = load<BlockQ2_K>(p);
  sc = b.scales[s] & 15;
  m = b.scales[s] >> 4;
}
// The sub-block's step and offset for codes (sc, m), formed exactly as ef_scalar.cpp's unpack
// functions (the decoders) form them.
template <class Block>
void grid_d_dmin(const std::byte* p, int sc, int m, float& a, float& b) {
  const auto blk = load<Block>(p);
  a = f16_to_f32(blk.d) * static_cast<float>(sc);
  b = -(f16_to_f32(blk.dmin) * static_cast<float>(m));
}
template <class Block>
void grid_d(const std::byte* p, int sc, int, float& a, float& b) {
  a = f16_to_f32(load<Block>(p).d) * static_cast<float>(sc);
  b = 0.0f;
}
void set_q2_k(std::byte* p, int s, int sc, int m) {
  auto b = load<BlockQ2_K>(p);
  b.scales[s] = static_cast<uint8_t>(sc | (m << 4));
  store(p, b);
}

// Q3_K: 6-bit codes stored + 32: low nibble in byte s (s < 8, low half) or s - 8 (high half),
// top two bits at bit 2 (s / 4) of byte 8 + s % 4.
void get_q3_k(const std::byte* p, int s, int& sc, int& m) {
  const auto b = load<BlockQ3_K>(p);
  const int lo = s < 8 ? (b.scales[s] & 15) : (b.scales[s - 8] >> 4);
  sc = (lo | (((b.scales[8 + s % 4] >> (2 * (s / 4))) & 3) << 4)) - 32;
  m = 0;
}
void set_q3_k(std::byte* p, int s, int sc, int) {
  auto b = load<BlockQ3_K>(p);
  const int v = sc + 32;
  if (s < 8)
    b.scales[s] = static_cast<uint8_t>((b.scales[s] & 0xF0) | (v & 15));
  else
    b.scales[s - 8] = static_cast<uint8_t>((b.scales[s - 8] & 0x0F) | ((v & 15) << 4));
  const int sh = 2 * (s / 4);
  uint8_t& hb = b.scales[8 + s % 4];
  hb = static_cast<uint8_t>((hb & ~(3 << sh)) | (((v >> 4) & 3) << sh));
  store(p, b);
}

// Q4_K / Q5_K: 8 pairs of 6-bit (sc, m) in 12 bytes (ggml's get_scale_min_k4 and its inverse).
void get_k4(const uint8_t* q, int j, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}
void set_k4(uint8_t* q, int j, int sc, int m) {
  if (j < 4) {
    q[j] = static_cast<uint8_t>((q[j] & 0xC0) | sc);
    q[j + 4] = static_cast<uint8_t>((q[j + 4] & 0xC0) | m);
  } else {
    q[j + 4] = static_cast<uint8_t>((sc & 15) | ((m & 15) << 4));
    q[j - 4] = static_cast<uint8_t>((q[j - 4] & 63) | ((sc >> 4) << 6));
    q[j] = static_cast<uint8_t>((q[j] & 63) | ((m >> 4) << 6));
  }
}
template <class Block>
void get_k4_block(const std::byte* p, int s, int& sc, int& m) {
  const auto b = load<Block>(p);
  get_k4(b.scales, s, sc, m);
}
template <class Block>
void set_k4_block(std::byte* p, int s, int sc, int m) {
  auto b = load<Block>(p);
  set_k4(b.scales, s, sc, m);
  store(p, b);
}

// Q6_K: int8 scale per 16 elements.
void get_q6_k(const std::byte* p, int s, int& sc, int& m) {
  sc = load<BlockQ6_K>(p).scales[s];
  m = 0;
}
void set_q6_k(std::byte* p, int s, int sc, int) {
  auto b = load<BlockQ6_K>(p);
  b.scales[s] = static_cast<int8_t>(sc);
  store(p, b);
}

// IQ4_XS: ls (6 bits; the decoder multiplies ls - 32): low nibble in scales_l[s / 2] at bit
// 4 (s % 2), top two bits at bit 2 s of scales_h.
void get_iq4_xs(const std::byte* p, int s, int& sc, int& m) {
  const auto b = load<BlockIQ4_XS>(p);
  sc = (((b.scales_l[s / 2] >> (4 * (s % 2))) & 0xf) | (((b.scales_h >> (2 * s)) & 3) << 4)) - 32;
  m = 0;
}
void set_iq4_xs(std::byte* p, int s, int sc, int) {
  auto b = load<BlockIQ4_XS>(p);
  const int v = sc + 32, sh = 4 * (s % 2);
  b.scales_l[s / 2] = static_cast<uint8_t>((b.scales_l[s / 2] & ~(0xf << sh)) | ((v & 15) << sh));
  b.scales_h = static_cast<uint16_t>((b.scales_h & ~(3 << (2 * s))) | (((v >> 4) & 3) << (2 * s)));
  store(p, b);
}

}  // namespace

const SubScaleCodec* subscale_codec(GgmlType t) {
  static const SubScaleCodec kQ2_K{16, 16, 0, 15, 0, 15, get_q2_k, set_q2_k, grid_d_dmin<BlockQ2_K>};
  static const SubScaleCodec kQ3_K{16, 16, -32, 31, 0, -1, get_q3_k, set_q3_k, grid_d<BlockQ3_K>};
  static const SubScaleCodec kQ4_K{8,  32, 0,   63, 0, 63, get_k4_block<BlockQ4_K>, set_k4_block<BlockQ4_K>,
                                   grid_d_dmin<BlockQ4_K>};
  static const SubScaleCodec kQ5_K{8,  32, 0,   63, 0, 63, get_k4_block<BlockQ5_K>, set_k4_block<BlockQ5_K>,
                                   grid_d_dmin<BlockQ5_K>};
  static const SubScaleCodec kQ6_K{16, 16, -128, 127, 0, -1, get_q6_k, set_q6_k, grid_d<BlockQ6_K>};
  static const SubScaleCodec kIQ4_XS{8, 32, -32, 31, 0, -1, get_iq4_xs, set_iq4_xs, grid_d<BlockIQ4_XS>};
  switch (t) {
    case GgmlType::Q2_K: return &kQ2_K;
    case GgmlType::Q3_K: return &kQ3_K;
    case GgmlType::Q4_K: return &kQ4_K;
    case GgmlType::Q5_K: return &kQ5_K;
    case GgmlType::Q6_K: return &kQ6_K;
    case GgmlType::IQ4_XS: return &kIQ4_XS;
    default: return nullptr;
  }
}

}  // namespace smolq::ef::detail
