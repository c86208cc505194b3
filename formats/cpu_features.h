// The one CPU-feature check of the project. Every SIMD kernel family (quantize/, eval/)
// dispatches the same way: its entry point tests a flag from here and calls the variant
// (`_avx2`, `_avx512`, or the scalar `_ref` / portable code), so one test of this header decides
// which code runs everywhere. Detection runs once (CPUID through the compiler's builtins).
//
// SMOLQ_SIMD=scalar|avx2|avx512 in the environment caps the level (never raises it above what the
// CPU has): tests and benchmarks use it to run the portable paths on a machine with AVX-512.
#pragma once

namespace smolq::cpu {

enum class SimdLevel { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

struct Features {
  bool avx2 = false;         // AVX2, FMA and F16C (x86-64-v3's vector part)
  bool avx512 = false;       // AVX-512 F, BW, VL and DQ (x86-64-v4)
  bool avx512_vnni = false;  // AVX-512 VNNI: int8 dot products (vpdpbusd)
  bool avx512_bf16 = false;  // AVX-512 BF16: bf16 dot products (vdpbf16ps)
};

// What this CPU has, capped by SMOLQ_SIMD. Detected once; thread-safe.
const Features& features();
SimdLevel simd_level();
const char* simd_level_name(SimdLevel l);  // "scalar", "avx2", "avx512"

inline bool has_avx2() { return features().avx2; }
inline bool has_avx512() { return features().avx512; }
inline bool has_avx512_vnni() { return features().avx512_vnni; }
inline bool has_avx512_bf16() { return features().avx512_bf16; }

}  // namespace smolq::cpu
