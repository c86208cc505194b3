// smolq_bench_peak: the f32 peak of one core, measured: 12 independent chains of fused
// multiply-adds on the widest vectors this CPU has (AVX-512, else AVX2), enough to cover the
// FMA latency on every pipe, for ~0.3 s of CPU time; the best of 5 runs, in GFLOP per
// CPU-second (CPU time, so a shared machine's other jobs do not lower it). bench_eval.sh
// divides the evaluator's FLOP rate by this number times its threads.
//
//   smolq_bench_peak          prints "peak_gflops_per_core <value> <isa>"
#include <sys/resource.h>

#include <immintrin.h>

#include <cstdio>

#include "formats/cpu_features.h"

namespace {

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

constexpr int kChains = 12;
constexpr long kIters = 20'000'000;

#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("avx512f"))) float fma_loop_512(long iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long n = 0; n < iters; ++n)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) float fma_loop_256(long iters) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(0.001f * i);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long n = 0; n < iters; ++n)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  __m256 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}
#endif

}  // namespace

int main() {
#if defined(__GNUC__) && defined(__x86_64__)
  const bool wide = smolq::cpu::has_avx512();
  const int lanes = wide ? 16 : 8;
  double best = 0;
  volatile float sink = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const double c0 = cpu_seconds();
    sink = sink + (wide ? fma_loop_512(kIters / 2) : fma_loop_256(kIters));
    const double cpu = cpu_seconds() - c0;
    const double flop = 2.0 * lanes * kChains * static_cast<double>(wide ? kIters / 2 : kIters);
    if (cpu > 0 && flop / cpu > best) best = flop / cpu;
  }
  std::printf("peak_gflops_per_core %.1f %s\n", best * 1e-9, wide ? "avx512" : "avx2");
#else
  std::printf("peak_gflops_per_core 0 none\n");
#endif
  return 0;
}
