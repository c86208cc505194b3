#include "formats/finite_scan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "formats/cpu_features.h"

namespace smolq {
namespace {

// Elements tested per branch-free block: big enough for the loop to vectorise well, small
// enough that the exact search inside a bad block is cheap.
constexpr size_t kBlock = 256;

// `Bits` is the unsigned storage of one value; a value is non-finite when all its exponent
// bits (`exp_mask`) are set.
template <typename Bits>
std::optional<uint64_t> scan_bits(const std::byte* p, uint64_t n, Bits exp_mask) {
  Bits buf[kBlock];
  for (uint64_t b0 = 0; b0 < n; b0 += kBlock) {
    const size_t m = static_cast<size_t>(std::min<uint64_t>(kBlock, n - b0));
    std::memcpy(buf, p + b0 * sizeof(Bits), m * sizeof(Bits));  // any alignment
    unsigned bad = 0;
    for (size_t i = 0; i < m; ++i) bad |= static_cast<unsigned>((buf[i] & exp_mask) == exp_mask);
    if (!bad) continue;
    for (size_t i = 0; i < m; ++i)
      if ((buf[i] & exp_mask) == exp_mask) return b0 + i;
  }
  return std::nullopt;
}

#if defined(__x86_64__) || defined(__i386__)
// find_non_finite on AVX2: 32 floats per step straight from the (float-aligned) buffer, the
// first bad index found by the portable scan of the step that has one.
[[gnu::target("avx2")]] std::optional<uint64_t> scan_f32_avx2(const float* v, uint64_t n) {
  const __m256i exp = _mm256_set1_epi32(0x7f800000);
  uint64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i bad = _mm256_setzero_si256();
    for (int k = 0; k < 32; k += 8) {
      const __m256i b = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + i + k)), exp);
      bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(b, exp));
    }
    if (!_mm256_testz_si256(bad, bad)) break;
  }
  if (auto r = scan_bits<uint32_t>(reinterpret_cast<const std::byte*>(v + i), n - i, 0x7f800000u)) return i + *r;
  return std::nullopt;
}
#endif

}  // namespace

std::optional<uint64_t> find_non_finite(std::span<const float> v) {
#if defined(__x86_64__) || defined(__i386__)
  if (cpu::has_avx2()) return scan_f32_avx2(v.data(), v.size());
#endif
  return scan_bits<uint32_t>(reinterpret_cast<const std::byte*>(v.data()), v.size(), 0x7f800000u);
}

std::optional<uint64_t> find_non_finite_f16(std::span<const uint16_t> bits) {
  return scan_bits<uint16_t>(reinterpret_cast<const std::byte*>(bits.data()), bits.size(), uint16_t{0x7c00});
}

std::optional<uint64_t> find_non_finite_bf16(std::span<const uint16_t> bits) {
  return scan_bits<uint16_t>(reinterpret_cast<const std::byte*>(bits.data()), bits.size(), uint16_t{0x7f80});
}

std::optional<uint64_t> find_non_finite_plain(GgmlType type, std::span<const std::byte> data, uint64_t n) {
  switch (type) {
    case GgmlType::F32:
      if (data.size() / 4 < n) n = data.size() / 4;
      return scan_bits<uint32_t>(data.data(), n, 0x7f800000u);
    case GgmlType::F16:
      if (data.size() / 2 < n) n = data.size() / 2;
      return scan_bits<uint16_t>(data.data(), n, uint16_t{0x7c00});
    case GgmlType::BF16:
      if (data.size() / 2 < n) n = data.size() / 2;
      return scan_bits<uint16_t>(data.data(), n, uint16_t{0x7f80});
    default:
      return std::nullopt;
  }
}

std::string float_text(float v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char b[32];
  std::snprintf(b, sizeof b, "%g", static_cast<double>(v));
  return b;
}

std::string element_position(uint64_t index, uint64_t ncols) {
  if (ncols == 0) ncols = 1;
  return "row " + std::to_string(index / ncols) + ", column " + std::to_string(index % ncols);
}

}  // namespace smolq
