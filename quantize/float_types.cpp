// F32 / F16 / BF16 "kernels": plain element-wise conversions (round to nearest even).
#include <cassert>
#include <cstring>

#include "formats/half.h"
#include "quantize/kernels.h"

namespace smolq::kernels {

void quantize_f32_ref(std::span<const float> src, std::span<std::byte> dst, int64_t,
                      std::span<const float>) {
  assert(dst.size() == src.size() * 4);
  std::memcpy(dst.data(), src.data(), dst.size());
}
void dequantize_f32(std::span<const std::byte> src, std::span<float> dst) {
  assert(src.size() >= dst.size() * 4);
  std::memcpy(dst.data(), src.data(), dst.size() * 4);
}

// 16-bit types: src bytes may be unaligned inside a mapped file, so go through memcpy.
template <uint16_t (*Enc)(float)>
static void encode16(std::span<const float> src, std::span<std::byte> dst) {
  assert(dst.size() == src.size() * 2);
  for (size_t i = 0; i < src.size(); ++i) {
    uint16_t h = Enc(src[i]);
    std::memcpy(dst.data() + 2 * i, &h, 2);
  }
}
template <float (*Dec)(uint16_t)>
static void decode16(std::span<const std::byte> src, std::span<float> dst) {
  assert(src.size() >= dst.size() * 2);
  for (size_t i = 0; i < dst.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, src.data() + 2 * i, 2);
    dst[i] = Dec(h);
  }
}

void quantize_f16_ref(std::span<const float> src, std::span<std::byte> dst, int64_t,
                      std::span<const float>) {
  encode16<f32_to_f16>(src, dst);
}
void dequantize_f16(std::span<const std::byte> src, std::span<float> dst) {
  assert(src.size() >= dst.size() * 2);
  f16_bytes_to_f32(src.data(), dst);  // decode16<f16_to_f32>, vectorised
}
void quantize_bf16_ref(std::span<const float> src, std::span<std::byte> dst, int64_t,
                       std::span<const float>) {
  encode16<f32_to_bf16>(src, dst);
}
void dequantize_bf16(std::span<const std::byte> src, std::span<float> dst) { decode16<bf16_to_f32>(src, dst); }

}  // namespace smolq::kernels
