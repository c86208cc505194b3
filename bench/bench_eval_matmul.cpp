// smolq_bench_eval_matmul: throughput of the forward pass's matmul (eval/matmul.h) on the
// SmolLM2-135M shapes and one 2048 x 2048 (SmolLM2-1.7B) shape, per weight type, in GFLOP/s of
// wall time and of CPU time (CPU time stays meaningful on a machine shared with other jobs):
// the f32 path, and for the block types with an integer form the integer path
// (eval/matmul_int.h, AVX-512 VNNI CPUs only) on the same matrix.
//
//   smolq_bench_eval_matmul [threads] [tokens]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "formats/cpu_features.h"
#include "quantize/registry.h"
#include "eval/matmul.h"
#include "eval/matmul_int.h"

using namespace smolq;

namespace {

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int n = argc > 2 ? std::atoi(argv[2]) : 512;
  std::printf("matmul: %d tokens, %d threads, %s kernels\n", n, threads, cpu::has_avx2() ? "AVX2/FMA" : "portable");
  std::printf("%-6s %-5s %14s %10s %10s\n", "type", "path", "rows x cols", "GFLOP/s", "GFLOP/s/cpu");
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  struct Shape {
    uint64_t rows, cols;
  };
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::Q6_K}) {
    if (!qtype(t).can_quantize() || !qtype(t).can_dequantize()) continue;
    for (Shape s : {Shape{1536, 576}, Shape{576, 1536}, Shape{576, 576}, Shape{49152, 576}, Shape{2048, 2048}}) {
      if (s.cols % type_info(t).block_elems != 0) continue;
      std::vector<float> w(s.rows * s.cols), x(static_cast<size_t>(n) * s.cols), y(static_cast<size_t>(n) * s.rows);
      for (auto& v : w) v = nd(rng);
      for (auto& v : x) v = nd(rng) * 20;
      std::vector<std::byte> bytes(*row_bytes(t, s.cols) * s.rows);
      quantize_rows(t, w, bytes, static_cast<int64_t>(s.cols));
      WeightMatrix m;
      m.name = "w";
      m.type = t;
      m.rows = s.rows;
      m.cols = s.cols;
      m.row_bytes = *row_bytes(t, s.cols);
      m.data = bytes.data();
      // The f32 path, then (where this CPU and type have it) the integer path matmul() takes.
      for (bool int_path : {false, true}) {
        if (int_path && (!cpu::has_avx512_vnni() || !int_weight_format(t))) continue;
        auto run = [&] {
          int_path ? matmul_int(m, x.data(), n, y.data(), threads, false) : matmul_f32(m, x.data(), n, y.data(), threads);
        };
        run();  // warm-up
        const int reps = s.rows > 10000 ? 2 : 8;
        const auto t0 = std::chrono::steady_clock::now();
        const double c0 = cpu_seconds();
        for (int r = 0; r < reps; ++r) run();
        const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double cpu = cpu_seconds() - c0;
        const double flop = 2.0 * s.rows * s.cols * n * reps;
        std::printf("%-6s %-5s %6llu x %-6llu %10.1f %10.1f\n", std::string(type_info(t).name).c_str(),
                    int_path ? "int8" : "f32", static_cast<unsigned long long>(s.rows),
                    static_cast<unsigned long long>(s.cols), flop / wall * 1e-9, flop / cpu * 1e-9);
      }
    }
  }
  return 0;
}
