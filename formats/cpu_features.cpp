// CPU feature detection (see cpu_features.h).
#include "formats/cpu_features.h"

#include <cstdlib>
#include <string_view>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#endif

namespace smolq::cpu {
namespace {

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
// F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know "f16c".
bool has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}
#endif

Features detect() {
  Features f;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
  f.avx512 = f.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  f.avx512_vnni = f.avx512 && __builtin_cpu_supports("avx512vnni");
  f.avx512_bf16 = f.avx512 && __builtin_cpu_supports("avx512bf16");
#endif
  // The environment may only lower the level.
  if (const char* env = std::getenv("SMOLQ_SIMD")) {
    const std::string_view v(env);
    if (v == "scalar") f = Features{};
    if (v == "avx2") f.avx512 = f.avx512_vnni = f.avx512_bf16 = false;
  }
  return f;
}

}  // namespace

const Features& features() {
  static const Features f = detect();
  return f;
}

SimdLevel simd_level() {
  const Features& f = features();
  return f.avx512 ? SimdLevel::kAvx512 : f.avx2 ? SimdLevel::kAvx2 : SimdLevel::kScalar;
}

const char* simd_level_name(SimdLevel l) {
  switch (l) {
    case SimdLevel::kAvx512: return "avx512";
    case SimdLevel::kAvx2: return "avx2";
    case SimdLevel::kScalar: break;
  }
  return "scalar";
}

}  // namespace smolq::cpu
