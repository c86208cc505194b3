// Overflow-checked size arithmetic. Every size derived from untrusted header fields goes
// through these: an overflow is reported as a FormatError by the caller's context.
#pragma once
#include <cstdint>
#include <optional>

namespace smolq {

inline std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<uint64_t> checked_add(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// Round `v` up to a multiple of `align` (align > 0); nullopt on overflow.
inline std::optional<uint64_t> checked_align_up(uint64_t v, uint64_t align) {
  auto t = checked_add(v, align - 1);
  if (!t) return std::nullopt;
  return *t / align * align;
}

}  // namespace smolq
