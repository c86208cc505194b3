// smolq_bench_eval_matmul: throughput of the forward pass's matmul (eval/matmul.h) on the
// SmolLM2-135M shapes and one 2048 x 2048 (SmolLM2-1.7B) shape, per weight type, in GFLOP/s of
// wall time and of CPU time (CPU time stays meaningful on a machine shared with other jobs):
// the f32 path, and for the block types with an integer form the integer path
// (eval/matmul_int.h, AVX-512 VNNI CPUs only) on the same matrix.
//
//   smolq_bench_eval_matmul [threads] [tokens]
//   SMOLQ_BENCH_SHAPES="2048x8192,8192x2048" SMOLQ_BENCH_TYPES="F16,Q4_K" smolq_bench_eval_matmul 2 512
// (rows x cols; the 1.7B shape's FFN is 8192 x 2048 up and 2048 x 8192 down)
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "formats/cpu_features.h"
#include "quantize/registry.h"
#include "eval/matmul.h"
#include "eval/matmul_int.h"

using namespace smolq;

namespace {

// "a,b,c" -> {"a", "b", "c"}; empty when the variable is unset.
std::vector<std::string> env_list(const char* name) {
  std::vector<std::string> out;
  const char* v = std::getenv(name);
  if (v == nullptr) return out;
  std::stringstream ss(v);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

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
  std::vector<Shape> shapes = {{1536, 576}, {576, 1536}, {576, 576}, {49152, 576}, {2048, 2048}};
  if (auto list = env_list("SMOLQ_BENCH_SHAPES"); !list.empty()) {
    shapes.clear();
    for (const auto& item : list) {
      const auto x = item.find('x');
      if (x == std::string::npos) { std::fprintf(stderr, "SMOLQ_BENCH_SHAPES: %s is not ROWSxCOLS\n", item.c_str()); return 2; }
      shapes.push_back({std::stoull(item.substr(0, x)), std::stoull(item.substr(x + 1))});
    }
  }
  const auto only_types = env_list("SMOLQ_BENCH_TYPES");
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
    if (!qtype(t).can_quantize() || !qtype(t).can_dequantize()) continue;
    if (!only_types.empty() && std::find(only_types.begin(), only_types.end(), std::string(type_info(t).name)) == only_types.end()) continue;
    for (Shape s : shapes) {
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
                    int_path ? "int" : "f32", static_cast<unsigned long long>(s.rows),
                    static_cast<unsigned long long>(s.cols), flop / wall * 1e-9, flop / cpu * 1e-9);
      }
    }
  }
  return 0;
}
