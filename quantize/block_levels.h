// Where the integer levels of the scalar block formats sit in their bytes (quantize/blocks.h),
// written once for the encoders that pack them (legacy_quants.cpp, k_quants.cpp, iq4.cpp) and
// the error-feedback codecs that read and rewrite them (ef_scalar.cpp). `q` holds the stored
// (non-negative) level of each element; put_* write only the bits of their field. The
// decoders keep their own loops, which follow ggml's operation order.
#pragma once
#include <cstdint>
#include <cstring>

namespace smolq::levels {

// 32-element nibbles (Q4_0, Q4_1, Q5_x, IQ4_NL, each 32 of IQ4_XS): element j < 16 in the low
// nibble of qs[j], element j + 16 in the high nibble.
template <class T>
void put_nibbles32(uint8_t* qs, const T* q) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
}
inline void get_nibbles32(const uint8_t* qs, int* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = qs[j] & 15;
    q[j + 16] = qs[j] >> 4;
  }
}

// Q5_0 / Q5_1 fifth bits: bit 4 of element j is bit j of the little-endian uint32 qh.
template <class T>
void put_qh32(uint8_t* qh, const T* q) {
  uint32_t h = 0;
  for (int j = 0; j < 32; ++j) h |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
  std::memcpy(qh, &h, 4);
}
inline void or_qh32(const uint8_t* qh, int* q) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  for (int j = 0; j < 32; ++j) q[j] |= static_cast<int>((h >> j) & 1) << 4;
}

// 2-bit planes of 256 elements (Q2_K and Q3_K qs, Q6_K's top two bits): element e sits in byte
// 32*(e/128) + e%32 at bit 2*((e%128)/32).
inline int plane2_byte(int e) { return 32 * (e / 128) + e % 32; }
inline int plane2_shift(int e) { return 2 * ((e % 128) / 32); }
template <class T>
void put_plane2(uint8_t* qs, const T* q) {
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const T* e = q + 128 * h + l;
      qs[32 * h + l] = static_cast<uint8_t>((e[0] & 3) | ((e[32] & 3) << 2) | ((e[64] & 3) << 4) | ((e[96] & 3) << 6));
    }
}
inline void get_plane2(const uint8_t* qs, int* q) {
  for (int e = 0; e < 256; ++e) q[e] = (qs[plane2_byte(e)] >> plane2_shift(e)) & 3;
}

// Q3_K third bits: bit 2 of element e is bit e/32 of hmask[e%32].
template <class T>
void put_hmask(uint8_t* hmask, const T* q) {
  for (int l = 0; l < 32; ++l) {
    uint8_t m = 0;
    for (int k = 0; k < 8; ++k) m |= static_cast<uint8_t>(((q[32 * k + l] >> 2) & 1) << k);
    hmask[l] = m;
  }
}
inline void or_hmask(const uint8_t* hmask, int* q) {
  for (int e = 0; e < 256; ++e) q[e] |= ((hmask[e % 32] >> (e / 32)) & 1) << 2;
}

// Q4_K / Q5_K nibbles: per 64-element chunk c, element 64c + l in the low nibble of
// qs[32c + l], element 64c + 32 + l in the high nibble.
template <class T>
void put_k4_nibbles(uint8_t* qs, const T* q) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) qs[32 * c + l] = static_cast<uint8_t>((q[64 * c + l] & 15) | ((q[64 * c + 32 + l] & 15) << 4));
}
inline void get_k4_nibbles(const uint8_t* qs, int* q) {
  for (int e = 0; e < 256; ++e) q[e] = (qs[32 * (e / 64) + e % 32] >> (4 * ((e / 32) % 2))) & 15;
}

// Q5_K fifth bits: bit 4 of element e is bit e/32 of qh[e%32].
template <class T>
void put_q5k_qh(uint8_t* qh, const T* q) {
  std::memset(qh, 0, 32);
  for (int e = 0; e < 256; ++e) qh[e % 32] |= static_cast<uint8_t>(((q[e] >> 4) & 1) << (e / 32));
}
inline void or_q5k_qh(const uint8_t* qh, int* q) {
  for (int e = 0; e < 256; ++e) q[e] |= ((qh[e % 32] >> (e / 32)) & 1) << 4;
}

// Q6_K: per 128-element half h, the low nibble of element 128h + 32k + l is in
// ql[64h + 32(k&1) + l] at bit 4(k>>1), its top two bits in the 2-bit plane qh.
inline int q6_ql_byte(int e) { return 64 * (e / 128) + 32 * (((e % 128) / 32) & 1) + e % 32; }
inline int q6_ql_shift(int e) { return 4 * (((e % 128) / 32) >> 1); }
template <class T>
void put_q6k(uint8_t* ql, uint8_t* qh, const T* q) {
  std::memset(ql, 0, 128);
  for (int e = 0; e < 256; ++e) ql[q6_ql_byte(e)] |= static_cast<uint8_t>((q[e] & 15) << q6_ql_shift(e));
  T hi[256];
  for (int e = 0; e < 256; ++e) hi[e] = static_cast<T>(q[e] >> 4);
  put_plane2(qh, hi);
}
inline void get_q6k(const uint8_t* ql, const uint8_t* qh, int* q) {
  get_plane2(qh, q);
  for (int e = 0; e < 256; ++e) q[e] = ((ql[q6_ql_byte(e)] >> q6_ql_shift(e)) & 15) | (q[e] << 4);
}

}  // namespace smolq::levels
