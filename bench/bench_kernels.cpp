// smolq_bench_kernels: single-thread speed and error of every block quantizer, ours against
// ggml's own quantizer, on the same rows in the same process.
//
//   smolq_bench_kernels [--model F16.gguf] [--imatrix imatrix.gguf] [--layers 0,10,20,29]
//                       [--rows N] [--gaussian] [--cols N] [--types Q4_K,IQ4_XS,...]
//                       [--repeat N] [--ref] [--ggml libggml-base.so]
//
// Data (each run uses one or both sets; every type sees exactly the same floats):
//   real      rows of blk.L.ffn_down.weight (SmolLM2-135M: 1536 wide, a multiple of every block
//             size) from an F16/BF16/F32 GGUF given with --model, N rows from each layer in
//             --layers; importance = the --imatrix file's entry for that tensor when given,
//             else the synthetic one below.
//   gaussian  N rows x --cols (default 2048) of 0.02 * N(0,1) (fixed seed), with a synthetic
//             importance vector 0.1 + chi-square(1) per column, every 64th column x 50 (the
//             shape of the golden vectors' imatrix). Used when no --model is given, or with
//             --gaussian.
//
// ggml is loaded with dlopen from the project's venv (llama-cpp-python ships libggml-base.so);
// we declare the three C functions we call ourselves instead of including ggml headers:
//   size_t ggml_quantize_chunk(enum ggml_type, const float* src, void* dst, int64_t start,
//                              int64_t nrows, int64_t n_per_row, const float* imatrix);
//   void   ggml_quantize_init(enum ggml_type);            // builds the IQ grids (not timed)
//   const char* ggml_type_name(enum ggml_type);           // to check the ids agree
// Both quantizers are single-threaded. Time is CPU time of the process (the machine is
// shared: wall time would mostly measure the scheduler), best of --repeat runs, ours and
// ggml's interleaved so both see the same machine state. Mw/s = 10^6 weights per second.
//
// Error: both outputs are decoded with our dequantizers (bit-exact with ggml's decoders: the
// golden tests check this) and compared with the input in double precision:
//   rmse   sqrt(mean (dq - x)^2)
//   wrmse  sqrt(sum_ij w_j (dq - x)^2 / sum_ij w_j), w = the importance vector of the row's
//          tensor (the same weights for the plain and the imatrix runs)
// Ratios are ours / ggml: speed > 1 means we are faster, error < 1 means we are more accurate.
// Types ggml cannot quantize without an imatrix (IQ2_XXS, IQ2_XS, IQ1_S) have no plain row.
#include <dlfcn.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "formats/error.h"
#include "formats/gguf.h"
#include "formats/half.h"
#include "formats/imatrix.h"
#include "quantize/registry.h"

namespace {

using smolq::GgmlType;
using smolq::QTypeInfo;

constexpr const char* kDefaultGgml = SMOLQ_SOURCE_DIR "/.venv/lib/python3.11/site-packages/llama_cpp/lib/libggml-base.so";

// CPU time of the whole process (our kernels and ggml's are single-threaded).
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// One quantization job: rows of equal width with their importance vector (one per tensor).
struct Slab {
  std::string name;
  int64_t cols = 0;
  std::vector<float> x;        // rows * cols
  std::vector<float> imatrix;  // cols
  int64_t rows() const { return static_cast<int64_t>(x.size()) / cols; }
};

struct Dataset {
  std::string label;
  std::vector<Slab> slabs;
  int64_t weights() const {
    int64_t n = 0;
    for (const auto& s : slabs) n += static_cast<int64_t>(s.x.size());
    return n;
  }
};

// The golden vectors' imatrix shape: 0.1 + chi-square(1), a few columns 50x more important.
std::vector<float> synthetic_imatrix(int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::chi_squared_distribution<float> chi(1.0f);
  std::vector<float> im(cols);
  for (int64_t j = 0; j < cols; ++j) im[j] = (0.1f + chi(rng)) * (j % 64 == 3 ? 50.0f : 1.0f);
  return im;
}

Dataset gaussian_set(int64_t rows, int64_t cols) {
  Slab s;
  s.name = "gaussian";
  s.cols = cols;
  s.x.resize(rows * cols);
  std::mt19937 rng(20260801);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  for (auto& v : s.x) v = nd(rng);
  s.imatrix = synthetic_imatrix(cols, 7);
  Dataset d;
  d.label = "gaussian " + std::to_string(rows) + " x " + std::to_string(cols);
  d.slabs.push_back(std::move(s));
  return d;
}

Dataset real_set(const std::string& model, const std::string& imatrix_path, const std::vector<int>& layers,
                 int64_t rows_per_layer) {
  auto r = smolq::GgufReader::open(model);
  smolq::ImatrixData imat;
  if (!imatrix_path.empty()) imat = smolq::read_imatrix(imatrix_path);
  Dataset d;
  int64_t cols_seen = 0;
  for (int layer : layers) {
    const std::string name = "blk." + std::to_string(layer) + ".ffn_down.weight";
    const smolq::GgufTensorInfo& t = r->tensor(name);
    Slab s;
    s.name = name;
    s.cols = static_cast<int64_t>(t.shape[0]);
    const int64_t rows = std::min<int64_t>(rows_per_layer, static_cast<int64_t>(t.rows()));
    const smolq::ByteView v = r->tensor_data(t);
    s.x.resize(rows * s.cols);
    const size_t n = s.x.size();
    if (t.type == GgmlType::F32) {
      std::memcpy(s.x.data(), v.data(), n * 4);
    } else if (t.type == GgmlType::F16 || t.type == GgmlType::BF16) {
      std::vector<uint16_t> h(n);
      std::memcpy(h.data(), v.data(), n * 2);
      if (t.type == GgmlType::F16) smolq::f16_to_f32_row(h, s.x);
      else smolq::bf16_to_f32_row(h, s.x);
    } else {
      throw smolq::UsageError(model + ": " + name + " is not F32/F16/BF16 (convert with --outtype f16)");
    }
    const smolq::ImatrixEntry* e = imat.find(name);
    if (e && e->n_cols() == static_cast<size_t>(s.cols)) {
      s.imatrix = e->importance();
      s.imatrix.resize(s.cols);
      for (float& w : s.imatrix) w = std::max(w, 1e-8f);  // a column never seen still counts a little
    } else {
      s.imatrix = synthetic_imatrix(s.cols, 100 + layer);
    }
    cols_seen = s.cols;
    d.slabs.push_back(std::move(s));
  }
  d.label = "real ffn_down, " + std::to_string(layers.size()) + " layers x " + std::to_string(rows_per_layer) +
            " rows x " + std::to_string(cols_seen) + (imatrix_path.empty() ? ", synthetic imatrix" : ", imatrix " + imatrix_path);
  return d;
}

// ggml's quantizer through dlopen.
struct Ggml {
  using QuantizeChunk = size_t (*)(int, const float*, void*, int64_t, int64_t, int64_t, const float*);
  using QuantizeInit = void (*)(int);
  using TypeName = const char* (*)(int);
  QuantizeChunk chunk = nullptr;
  QuantizeInit init = nullptr;
  TypeName type_name = nullptr;

  explicit Ggml(const std::string& path) {
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) throw smolq::Error("cannot load ggml: " + std::string(dlerror()) + " (set --ggml)");
    chunk = reinterpret_cast<QuantizeChunk>(dlsym(h, "ggml_quantize_chunk"));
    init = reinterpret_cast<QuantizeInit>(dlsym(h, "ggml_quantize_init"));
    type_name = reinterpret_cast<TypeName>(dlsym(h, "ggml_type_name"));
    if (!chunk || !init || !type_name) throw smolq::Error(path + ": missing ggml_quantize_chunk/init/type_name");
  }
  // True when ggml's library knows our id under the same name.
  bool knows(const QTypeInfo& q) const {
    const char* n = type_name(static_cast<int>(q.id()));
    return n && q.geo->ggml_name == n;
  }
};

struct Err {
  double rmse = 0, wrmse = 0;
};

Err measure(GgmlType t, const Dataset& d, const std::vector<std::vector<std::byte>>& out) {
  double se = 0, wse = 0, wsum = 0, n = 0;
  for (size_t k = 0; k < d.slabs.size(); ++k) {
    const Slab& s = d.slabs[k];
    std::vector<float> y(s.x.size());
    smolq::dequantize_rows(t, out[k], y);
    for (size_t i = 0; i < y.size(); ++i) {
      const double diff = static_cast<double>(y[i]) - s.x[i], w = s.imatrix[i % s.cols];
      se += diff * diff;
      wse += w * diff * diff;
      wsum += w;
    }
    n += static_cast<double>(y.size());
  }
  return {std::sqrt(se / n), std::sqrt(wse / wsum)};
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) v.push_back(item);
  return v;
}

struct Options {
  std::string model, imatrix, ggml = kDefaultGgml;
  std::vector<int> layers{0, 10, 20, 29};
  int64_t rows = 0;  // 0: per-set default
  int64_t cols = 2048;
  bool gaussian = false, ref = false;
  int repeat = 3;
  std::vector<std::string> types;
};

void run_set(const Dataset& d, const Options& o, const Ggml& g) {
  const double mw = d.weights() / 1e6;
  std::printf("\n== %s (%.2f M weights, best of %d, CPU time, 1 thread)\n", d.label.c_str(), mw, o.repeat);
  std::printf("%-8s %-5s | %9s %9s %7s%s | %10s %10s %6s | %10s %10s %6s\n", "type", "var", "ours Mw/s", "ggml Mw/s",
              "speed", o.ref ? "   ref Mw/s  ref==fast" : "", "rmse ours", "rmse ggml", "ratio", "wrmse ours",
              "wrmse ggml", "ratio");
  for (const QTypeInfo& q : smolq::all_qtypes()) {
    if (!q.can_quantize() || q.geo->is_float) continue;
    if (!o.types.empty() && std::find(o.types.begin(), o.types.end(), std::string(q.geo->name)) == o.types.end())
      continue;
    if (!g.knows(q)) {
      std::printf("%-8s (not in this ggml build)\n", std::string(q.geo->name).c_str());
      continue;
    }
    bool fits = true;
    for (const auto& s : d.slabs) fits = fits && s.cols % q.geo->block_elems == 0;
    if (!fits) continue;
    g.init(static_cast<int>(q.id()));
    for (bool imat : {false, true}) {
      if (!imat && q.geo->needs_imatrix) continue;
      std::vector<std::vector<std::byte>> ours, theirs, ref;
      for (const auto& s : d.slabs) {
        const size_t bytes = *smolq::row_bytes(q.id(), s.cols) * s.rows();
        ours.emplace_back(bytes);
        theirs.emplace_back(bytes);
        if (o.ref) ref.emplace_back(bytes);
      }
      auto run_ours = [&](bool use_ref) {
        for (size_t k = 0; k < d.slabs.size(); ++k) {
          const Slab& s = d.slabs[k];
          const std::span<const float> im = imat ? std::span<const float>(s.imatrix) : std::span<const float>();
          (use_ref ? q.quantize_ref : q.quantize)(s.x, use_ref ? ref[k] : ours[k], s.cols, im);
        }
      };
      auto run_ggml = [&] {
        for (size_t k = 0; k < d.slabs.size(); ++k) {
          const Slab& s = d.slabs[k];
          g.chunk(static_cast<int>(q.id()), s.x.data(), theirs[k].data(), 0, s.rows(), s.cols,
                  imat ? s.imatrix.data() : nullptr);
        }
      };
      double t_ours = 1e30, t_ggml = 1e30, t_ref = 1e30;
      for (int rep = 0; rep < o.repeat; ++rep) {
        double t0 = cpu_seconds();
        run_ggml();
        double t1 = cpu_seconds();
        run_ours(false);
        double t2 = cpu_seconds();
        t_ggml = std::min(t_ggml, t1 - t0);
        t_ours = std::min(t_ours, t2 - t1);
        if (o.ref) {
          run_ours(true);
          t_ref = std::min(t_ref, cpu_seconds() - t2);
        }
      }
      const Err eo = measure(q.id(), d, ours), eg = measure(q.id(), d, theirs);
      char refcol[40] = "";
      if (o.ref) std::snprintf(refcol, sizeof refcol, "   %9.2f  %9s", mw / t_ref, ref == ours ? "yes" : "NO");
      std::printf("%-8s %-5s | %9.2f %9.2f %6.2fx%s | %10.4e %10.4e %6.3f | %10.4e %10.4e %6.3f\n",
                  std::string(q.geo->name).c_str(), imat ? "imat" : "plain", mw / t_ours, mw / t_ggml, t_ggml / t_ours,
                  refcol, eo.rmse, eg.rmse, eo.rmse / eg.rmse, eo.wrmse, eg.wrmse, eo.wrmse / eg.wrmse);
      std::fflush(stdout);
    }
  }
}

int run(int argc, char** argv) {
  Options o;
  const char* usage =
      "usage: smolq_bench_kernels [--model F16.gguf] [--imatrix F] [--layers 0,10,20,29] [--rows N] [--gaussian]\n"
      "                           [--cols N] [--types A,B] [--repeat N] [--ref] [--ggml libggml-base.so]";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw smolq::UsageError(usage);
      return argv[++i];
    };
    if (a == "--model") o.model = next();
    else if (a == "--imatrix") o.imatrix = next();
    else if (a == "--ggml") o.ggml = next();
    else if (a == "--layers") {
      o.layers.clear();
      for (const auto& s : split(next())) o.layers.push_back(std::stoi(s));
    } else if (a == "--rows") o.rows = std::max<int64_t>(1, std::stoll(next()));
    else if (a == "--cols") o.cols = std::max<int64_t>(256, std::stoll(next()) / 256 * 256);
    else if (a == "--types") o.types = split(next());
    else if (a == "--repeat") o.repeat = std::max(1, std::stoi(next()));
    else if (a == "--gaussian") o.gaussian = true;
    else if (a == "--ref") o.ref = true;
    else throw smolq::UsageError(usage);
  }
  for (auto& t : o.types) {
    const QTypeInfo* q = smolq::find_qtype(t);
    if (!q) throw smolq::UsageError("unknown type " + t);
    t = std::string(q->geo->name);
  }
  const Ggml g(o.ggml);
  if (!o.model.empty()) run_set(real_set(o.model, o.imatrix, o.layers, o.rows ? o.rows : 96), o, g);
  else std::printf("(no --model: gaussian rows only; see bench/README.md for the real-weights run)\n");
  if (o.model.empty() || o.gaussian) run_set(gaussian_set(o.rows ? o.rows : 256, o.cols), o, g);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "smolq_bench_kernels: %s\n", e.what());
    return 1;
  }
}
