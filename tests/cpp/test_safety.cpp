// Data safety (issue 13) below the CLI: the output path policy (formats/output_path.h and
// AtomicFile), the non-finite scans (formats/finite_scan.h, quantize/tensor_quantizer.h) and
// the NaN-preserving exp of the forward kernels. The CLI-level table is
// tests/python/test_safety.py.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "formats/atomic_file.h"
#include "formats/error.h"
#include "formats/cpu_features.h"
#include "formats/finite_scan.h"
#include "formats/half.h"
#include "formats/output_path.h"
#include "quantize/registry.h"
#include "quantize/tensor_quantizer.h"
#include "eval/forward_kernels.h"
#include "temp_dir.h"

using namespace smolq;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("smolq-safety-") {}
};

std::string read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

mode_t mode_of(const std::string& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

size_t temp_count(const TempDir& d) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(d.path))
    if (e.path().filename().string().find(".smolq-tmp-") != std::string::npos) ++n;
  return n;
}

float nan_f() { return std::numeric_limits<float>::quiet_NaN(); }
float inf_f() { return std::numeric_limits<float>::infinity(); }

}  // namespace

TEST_SUITE("test_safety") {
  TEST_CASE("temporary file names carry the destination and the pid") {
    const std::string t = temp_path_for("/a/b/model.gguf");
    CHECK(t == "/a/b/.model.gguf.smolq-tmp-" + std::to_string(::getpid()));
    CHECK(temp_path_for("x.gguf", 3) == "./.x.gguf.smolq-tmp-" + std::to_string(::getpid()) + "-3");
    CHECK(temp_file_pid(".model.gguf.smolq-tmp-1234", "model.gguf") == 1234);
    CHECK(temp_file_pid(".model.gguf.smolq-tmp-1234-2", "model.gguf") == 1234);
    CHECK_FALSE(temp_file_pid(".model.gguf.smolq-tmp-", "model.gguf"));
    CHECK_FALSE(temp_file_pid(".model.gguf.smolq-tmp-12x", "model.gguf"));
    CHECK_FALSE(temp_file_pid(".other.gguf.smolq-tmp-1234", "model.gguf"));
    CHECK_FALSE(temp_file_pid(".model.gguf.smolq-tmp-0", "model.gguf"));
    CHECK_FALSE(temp_file_pid("model.gguf", "model.gguf"));
  }

  TEST_CASE("non-regular destinations are refused before anything is created") {
    TempDir d;
    fs::create_directory(d / "dir");
    REQUIRE(::mkfifo((d / "fifo").c_str(), 0644) == 0);
    const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string sock = d / "sock";
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
    REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    ::close(s);
    for (const char* name : {"dir", "fifo", "sock"}) {
      CAPTURE(name);
      CHECK_THROWS_AS(check_output_path(d / name), UsageError);
      CHECK_THROWS_AS(AtomicFile(d / name), UsageError);
    }
    CHECK_THROWS_AS(check_output_path("/dev/zero"), UsageError);
    CHECK_THROWS_AS(check_output_path(d / "new/"), UsageError);
    CHECK_THROWS_AS(check_output_path(d / "missing/x.gguf"), IoError);
    CHECK(temp_count(d) == 0);
  }

  TEST_CASE("a replaced file keeps its mode; a symlink is written through") {
    TempDir d;
    const std::string real = d / "real.gguf", link = d / "link.gguf";
    { std::ofstream(real) << "old"; }
    ::chmod(real.c_str(), 0600);
    fs::create_symlink("real.gguf", link);
    CHECK(check_output_path(link).empty());
    write_file_atomic(link, "new bytes");
    CHECK(fs::is_symlink(link));
    CHECK(read_all(real) == "new bytes");
    CHECK(mode_of(real) == 0600);
    CHECK(temp_count(d) == 0);
    // A symlink loop is an error naming the path, not a hang.
    fs::create_symlink("loop2", d / "loop1");
    fs::create_symlink("loop1", d / "loop2");
    CHECK_THROWS_AS(check_output_path(d / "loop1"), IoError);
  }

  TEST_CASE("an abandoned write leaves the old file and no temporary") {
    TempDir d;
    const std::string p = d / "out.bin";
    { std::ofstream(p) << "keep me"; }
    ::chmod(p.c_str(), 0640);
    {
      AtomicFile f(p);
      f.write("partial");
      CHECK(temp_count(d) == 1);
    }  // destroyed without commit
    CHECK(read_all(p) == "keep me");
    CHECK(mode_of(p) == 0640);
    CHECK(temp_count(d) == 0);
  }

  TEST_CASE("stale temporaries of dead processes are removed, live ones reported") {
    TempDir d;
    const std::string dead = d / ".m.gguf.smolq-tmp-4000000";  // no such pid (above pid_max's default)
    const std::string live = d / (".m.gguf.smolq-tmp-" + std::to_string(::getppid()));
    const std::string other = d / ".n.gguf.smolq-tmp-4000000";
    for (const auto& p : {dead, live, other}) std::ofstream(p) << "x";
    const auto notes = check_output_path(d / "m.gguf");
    CHECK_FALSE(fs::exists(dead));
    CHECK(fs::exists(live));
    CHECK(fs::exists(other));
    REQUIRE(notes.size() == 2);
    CHECK((notes[0].find("4000000") != std::string::npos || notes[1].find("4000000") != std::string::npos));
  }

  TEST_CASE("/dev/null is a stream, written directly") {
    OutputTarget t = resolve_output_path("/dev/null");
    CHECK(t.kind == OutputKind::kStream);
    AtomicFile f("/dev/null");
    f.write("discarded");
    f.commit();
    struct stat st {};
    REQUIRE(::stat("/dev/null", &st) == 0);
    CHECK(S_ISCHR(st.st_mode));
  }

  TEST_CASE("scans find the first NaN/Inf in every plain float type, at any position") {
    std::mt19937 rng(7);
    for (size_t n : {size_t(1), size_t(7), size_t(255), size_t(256), size_t(257), size_t(1000), size_t(4099)}) {
      std::vector<float> v(n);
      for (auto& x : v) x = std::uniform_real_distribution<float>(-1e4f, 1e4f)(rng);
      CHECK_FALSE(find_non_finite(v));
      for (float bad : {nan_f(), inf_f(), -inf_f()}) {
        const size_t at = rng() % n;
        auto w = v;
        w[at] = bad;
        if (at + 1 < n) w[n - 1] = nan_f();  // a later one must not win
        CAPTURE(n);
        CAPTURE(at);
        CHECK(find_non_finite(w) == at);
        std::vector<uint16_t> h(n), b(n);
        for (size_t i = 0; i < n; ++i) {
          h[i] = f32_to_f16(w[i]);
          b[i] = f32_to_bf16(w[i]);
        }
        CHECK(find_non_finite_f16(h) == at);
        CHECK(find_non_finite_bf16(b) == at);
      }
    }
    // Overflow to F16 Inf is found in the F16 data; the largest finite halves are not.
    std::vector<uint16_t> h = {0x7bff, 0xfbff, 0x0001, 0x7c00};
    CHECK(find_non_finite_f16(h) == 3);
    CHECK(float_text(nan_f()) == "nan");
    CHECK(float_text(-inf_f()) == "-inf");
    CHECK(element_position(1553, 96) == "row 16, column 17");
  }

  TEST_CASE("quantized tensors: a NaN scale is found after dequantisation") {
    const uint64_t ncols = 64, nrows = 3;
    std::vector<float> x(ncols * nrows);
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1f * static_cast<float>(i));
    TensorQuantizeJob job;
    job.type = GgmlType::Q8_0;
    job.nrows = nrows;
    job.ncols = ncols;
    job.source = [&](uint64_t r0, uint64_t n, std::span<float> out) {
      std::copy(x.begin() + r0 * ncols, x.begin() + (r0 + n) * ncols, out.begin());
    };
    std::vector<std::byte> q = quantize_tensor(job);
    CHECK_FALSE(find_non_finite_tensor(GgmlType::Q8_0, q, ncols));
    // Block 3 = row 1, columns 32..63: its f16 scale becomes NaN.
    const uint16_t nan16 = 0x7e00;
    std::memcpy(q.data() + 3 * 34, &nan16, 2);
    CHECK(find_non_finite_tensor(GgmlType::Q8_0, q, ncols) == 1 * ncols + 32);
  }

  TEST_CASE("quantize_tensor stops on a non-finite weight, naming the first one whatever the threads") {
    const uint64_t ncols = 256, nrows = 4096;  // several chunks
    for (int threads : {1, 2, 4}) {
      TensorQuantizeJob job;
      job.type = GgmlType::Q4_0;
      job.nrows = nrows;
      job.ncols = ncols;
      job.threads = threads;
      job.source = [&](uint64_t r0, uint64_t n, std::span<float> out) {
        for (uint64_t i = 0; i < n * ncols; ++i) out[i] = 0.5f;
        for (uint64_t r = r0; r < r0 + n; ++r)
          if (r == 1500 || r == 3000) out[(r - r0) * ncols + 9] = r == 1500 ? inf_f() : nan_f();
      };
      CAPTURE(threads);
      try {
        (void)quantize_tensor(job);
        FAIL("no error");
      } catch (const Error& e) {
        CHECK(std::string(e.what()).find("inf at row 1500, column 9") != std::string::npos);
      }
    }
  }

  TEST_CASE("the forward kernels keep NaN a NaN") {
    std::vector<float> logits(100, 1.0f);
    logits[42] = nan_f();
    const LogitStats s = logit_stats(logits.data(), static_cast<int64_t>(logits.size()));
    CHECK(std::isnan(s.log_norm()));
    std::vector<float> v(37, 0.5f);
    v[20] = nan_f();
    softmax_inplace(v.data(), static_cast<int64_t>(v.size()));
    CHECK(std::isnan(v[0]));
    if (cpu::has_avx2()) {
      // The vectorised exp clamps its input: NaN must pass the clamp (lanes and tail).
      for (size_t at : {size_t(3), size_t(42), size_t(97)}) {
        std::vector<float> l(100, 2.0f);
        l[at] = nan_f();
        CAPTURE(at);
        CHECK(std::isnan(detail::logit_stats_avx2(l.data(), 100).sum_exp));
        std::vector<float> g(100, 1.0f), u(100, 1.0f);
        g[at] = nan_f();
        detail::silu_mul_avx2(g.data(), u.data(), 100);
        CHECK(std::isnan(g[at]));
      }
    }
  }
}
