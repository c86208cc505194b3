// Q8_0: 32 weights, one f16 scale, w = d * q with q in [-127, 127].
// The encoding is ggml's reference rule: d = amax / 127, q = round(x / d). It ignores
// importance weights (as ggml does): with 8 bits the rounding error is already tiny and
// round-to-nearest (ties away from zero, as ggml) is is optimal per element for any fixed d.
#include <cassert>
#include <cmath>
#include <cstring>

#include "formats/half.h"
#include "quantize/blocks.h"
#include "quantize/kernels.h"

namespace smolq::kernels {

void quantize_q8_0_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                       std::span<const float>) {
  assert(n_per_row % kQK == 0 && src.size() % kQK == 0);
  const size_t nb = src.size() / kQK;
  assert(dst.size() == nb * sizeof(BlockQ8_0));
  for (size_t b = 0; b < nb; ++b) {
    const float* x = src.data() + b * kQK;
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ8_0 blk;
    blk.d = f32_to_f16(d);
    for (int j = 0; j < kQK; ++j) blk.qs[j] = static_cast<int8_t>(std::round(x[j] * id));
    std::memcpy(dst.data() + b * sizeof(BlockQ8_0), &blk, sizeof blk);
  }
}

void dequantize_q8_0(std::span<const std::byte> src, std::span<float> dst) {
  assert(dst.size() % kQK == 0);
  const size_t nb = dst.size() / kQK;
  assert(src.size() >= nb * sizeof(BlockQ8_0));
  for (size_t b = 0; b < nb; ++b) {
    BlockQ8_0 blk;
    std::memcpy(&blk, src.data() + b * sizeof(BlockQ8_0), sizeof blk);
    const float d = f16_to_f32(blk.d);
    for (int j = 0; j < kQK; ++j) dst[b * kQK + j] = static_cast<float>(blk.qs[j]) * d;
  }
}

}  // namespace smolq::kernels
