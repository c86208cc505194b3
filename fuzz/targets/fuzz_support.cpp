// Scratch files and input splitting for the fuzz targets (see fuzz_support.h).
#include "fuzz/targets/fuzz_support.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "fuzz/targets/fuzz_targets.h"

namespace smolq::fuzz {
namespace {

void remove_scratch_dir();

std::string make_scratch_dir() {
  std::string base;
  if (const char* env = std::getenv("SMOLQ_FUZZ_TMP"); env && *env) base = env;
  else if (std::filesystem::is_directory("/dev/shm")) base = "/dev/shm";  // RAM: no disk writes per run
  else base = std::filesystem::temp_directory_path().string();
  std::string templ = base + "/smolq-fuzz-XXXXXX";
  if (!::mkdtemp(templ.data())) fuzz_fail("cannot create a scratch folder under " + base);
  std::atexit(remove_scratch_dir);
  return templ;
}

void remove_scratch_dir() {
  std::error_code ec;
  std::filesystem::remove_all(scratch_dir(), ec);
}

}  // namespace

const std::string& scratch_dir() {
  // Never destroyed: the atexit handler that removes the folder runs after static
  // destructors registered later, and needs the name.
  static const std::string* dir = new std::string(make_scratch_dir());
  return *dir;
}

std::string write_scratch(const std::string& name, std::string_view bytes) {
  const std::string path = scratch_dir() + "/" + name;
  if (const size_t slash = name.rfind('/'); slash != std::string::npos) {
    std::error_code ec;
    std::filesystem::create_directories(scratch_dir() + "/" + name.substr(0, slash), ec);
  }
  // O_TRUNC rewrite in place: cheaper than a new file per run, and a mapping from the previous
  // run is gone (every reader unmaps before returning).
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) fuzz_fail("cannot write scratch file " + path);
  const char* p = bytes.data();
  size_t n = bytes.size();
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fuzz_fail("write to scratch file " + path + " failed");
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  ::close(fd);
  return path;
}

void remove_scratch(const std::string& name) { ::unlink((scratch_dir() + "/" + name).c_str()); }

std::vector<std::string_view> split_parts(const uint8_t* data, size_t size, size_t n, std::vector<bool>* present) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  if (present) present->assign(n, false);
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) {
      const size_t at = rest.find(kPartSeparator);
      if (at == std::string_view::npos) break;
      // The previous part ends at the separator; this one starts after it.
      parts.back() = parts.back().substr(0, at);
      rest = rest.substr(at + kPartSeparator.size());
    }
    parts.push_back(rest);
    if (present) (*present)[i] = true;
  }
  // The last part found keeps everything after it (later separators included).
  parts.resize(n);
  return parts;
}

void fuzz_fail(const std::string& what) {
  std::fprintf(stderr, "smolq fuzz invariant broken: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

std::string shared_assets_dir() { return std::string(SMOLQ_SHARED_DIR) + "/assets"; }
std::string source_dir() { return SMOLQ_SOURCE_DIR; }

std::span<const Target> all_targets() {
  static constexpr Target kTargets[] = {
      {"gguf", fuzz_gguf},
      {"gguf_scan", fuzz_gguf_scan},
      {"safetensors", fuzz_safetensors},
      {"safetensors_index", fuzz_safetensors_index},
      {"hf_config", fuzz_hf_config},
      {"tokenizer_json", fuzz_tokenizer_json},
      {"tokenizer_meta", fuzz_tokenizer_meta},
      {"imatrix", fuzz_imatrix},
      {"eval_set", fuzz_eval_set},
      {"tokenizer_encode", fuzz_tokenizer_encode},
      {"chat_template", fuzz_chat_template},
      {"model_card", fuzz_model_card},
      {"inspect_gate", fuzz_inspect_gate},
  };
  return kTargets;
}

}  // namespace smolq::fuzz
