// smolq_bench_error_feedback: time of the error-feedback quantizer (quantize/error_feedback.h)
// against the plain quantizer of the same type, per tensor, on the shapes that matter:
//   576 x 1536   SmolLM2-135M's ffn_down (rows x d_in)
//   2048 x 8192  SmolLM2-1.7B's ffn_down (the largest d_in of the family)
//
//   smolq_bench_error_feedback [--threads N] [--types Q4_K,Q4_0,IQ2_XS] [--small-only] [--shape RxD]
//
// Weights are 0.02 * N(0,1); H = B B^T + 0.1 * mean * I with B d_in x 64 gaussian columns with a
// decaying scale (a correlated, low-rank-dominated Gram matrix like real activations); the
// imatrix is diag(H). Printed per tensor: wall and CPU time of the plain kernel (rows in
// parallel), of prepare() (the factorisation, once per distinct H: shared by q/k/v and by
// gate/up) and of the sweep, the CPU-time ratio, and the process's peak resident memory so far
// (H in double, the float copy the factorisation works in, the factor, the weights).
#include <omp.h>
#include <sys/resource.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "quantize/error_feedback.h"
#include "quantize/registry.h"

namespace {

using smolq::GgmlType;

// CPU seconds of the whole process (user + system): on a shared machine wall time mostly
// measures the scheduler, CPU time the work.
double cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

double peak_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

std::vector<double> make_h(int64_t d) {
  constexpr int kRank = 64;
  std::mt19937 rng(1);
  std::normal_distribution<double> n01;
  std::vector<double> B(static_cast<size_t>(d * kRank));
  for (int64_t i = 0; i < d; ++i)
    for (int k = 0; k < kRank; ++k) B[i * kRank + k] = n01(rng) / (1.0 + k / 8.0);
  std::vector<double> H(static_cast<size_t>(d * d));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0.0;
      for (int k = 0; k < kRank; ++k) s += B[i * kRank + k] * B[j * kRank + k];
      H[i * d + j] = H[j * d + i] = s;
    }
  double mean = 0.0;
  for (int64_t i = 0; i < d; ++i) mean += H[i * d + i] / static_cast<double>(d);
  for (int64_t i = 0; i < d; ++i) H[i * d + i] += 0.1 * mean;
  return H;
}

void bench(GgmlType type, int64_t rows, int64_t d, int threads) {
  const auto& info = smolq::type_info(type);
  if (d % info.block_elems != 0) return;
  std::mt19937 rng(2);
  std::normal_distribution<float> n01;
  std::vector<float> W(static_cast<size_t>(rows * d));
  for (auto& v : W) v = 0.02f * n01(rng);
  std::vector<double> H = make_h(d);
  std::vector<float> imat(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i) imat[i] = static_cast<float>(H[i * d + i]);
  const uint64_t rb = *smolq::row_bytes(type, d);
  std::vector<std::byte> out(rb * rows);

  double t0 = omp_get_wtime(), c0 = cpu_s();
  const int64_t chunk = 16;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t r = 0; r < rows; r += chunk) {
    const int64_t n = std::min(chunk, rows - r);
    smolq::quantize_rows(type, {W.data() + r * d, static_cast<size_t>(n * d)}, {out.data() + r * rb, n * rb}, d, imat);
  }
  const double t_plain = omp_get_wtime() - t0, c_plain = cpu_s() - c0;

  smolq::ef::Settings s;
  t0 = omp_get_wtime();
  c0 = cpu_s();
  // As the driver does (mix/optimize.h error_feedback_core): the factorisation consumes H,
  // releasing its rows as the float copy takes them, and turns the copy into the factor.
  const smolq::ef::Factor f = smolq::ef::prepare(std::move(H), d, static_cast<int>(info.block_elems), s, threads);
  const double t_prep = omp_get_wtime() - t0, c_prep = cpu_s() - c0;
  t0 = omp_get_wtime();
  c0 = cpu_s();
  smolq::ef::quantize_tensor(type, W, rows, d, f, imat, out, threads);
  const double t_sweep = omp_get_wtime() - t0, c_sweep = cpu_s() - c0;
  std::printf("%-8s %5lld x %-5lld  wall: plain %7.3f s  prepare %7.3f s  sweep %7.3f s  |  cpu: plain %7.3f s"
              "  prepare %7.3f s  sweep %7.3f s  (prepare+sweep)/plain %5.1fx  |  peak RSS %6.0f MB\n",
              std::string(info.name).c_str(), static_cast<long long>(rows), static_cast<long long>(d), t_plain, t_prep,
              t_sweep, c_plain, c_prep, c_sweep, (c_prep + c_sweep) / c_plain, peak_mb());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  bool small_only = false;
  long long shape_rows = 0, shape_d = 0;  // --shape RxD: only this shape
  std::string types = "Q4_K,Q4_0,IQ2_XS";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--types" && i + 1 < argc) types = argv[++i];
    else if (a == "--small-only") small_only = true;
    else if (a == "--shape" && i + 1 < argc) {
      if (std::sscanf(argv[++i], "%lldx%lld", &shape_rows, &shape_d) != 2) return 2;
    }
    else {
      std::fprintf(stderr, "usage: smolq_bench_error_feedback [--threads N] [--types T,...] [--small-only] [--shape RxD]\n");
      return 2;
    }
  }
  std::printf("error feedback vs plain, %d threads (wall time)\n", threads);
  std::stringstream ss(types);
  std::string name;
  while (std::getline(ss, name, ',')) {
    const smolq::QTypeInfo* q = smolq::find_qtype(name);
    if (!q || !smolq::ef::supports(q->id())) {
      std::fprintf(stderr, "unsupported type %s\n", name.c_str());
      return 2;
    }
    if (shape_rows > 0) {
      bench(q->id(), shape_rows, shape_d, threads);
      continue;
    }
    bench(q->id(), 576, 1536, threads);
    if (!small_only) bench(q->id(), 2048, 8192, threads);
  }
  return 0;
}
