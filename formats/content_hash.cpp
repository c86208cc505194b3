// XXH3-64 content hashes of fields, files and models (see content_hash.h).
#include "formats/content_hash.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "formats/error.h"
#include "formats/mapped_file.h"

namespace smolq {
namespace fs = std::filesystem;

ContentHasher::ContentHasher() : state_(XXH3_createState()) {
  if (!state_) throw Error("out of memory (xxHash state)");
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_));
}
ContentHasher::~ContentHasher() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

ContentHasher& ContentHasher::add_bytes(const void* p, size_t n) {
  const uint64_t len = n;
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), &len, sizeof len);
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), p, n);
  return *this;
}
ContentHasher& ContentHasher::add(std::string_view s) { return add_bytes(s.data(), s.size()); }
ContentHasher& ContentHasher::add(uint64_t v) { return add_bytes(&v, sizeof v); }
uint64_t ContentHasher::digest() const { return XXH3_64bits_digest(static_cast<XXH3_state_t*>(state_)); }

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

uint64_t fingerprint_file(const std::string& path) {
  auto f = MappedFile::open(path);
  const ByteView v = f->view();
  // Hash in slices and let the kernel drop pages behind us: a model can be larger than RAM.
  constexpr uint64_t kSlice = 64ull << 20;
  XXH3_state_t* st = XXH3_createState();
  if (!st) throw Error("out of memory (xxHash state)");
  XXH3_64bits_reset(st);
  for (uint64_t off = 0; off < v.size(); off += kSlice) {
    const uint64_t n = std::min(kSlice, v.size() - off);
    XXH3_64bits_update(st, v.data() + off, static_cast<size_t>(n));
    f->drop_pages(off, n);
  }
  const uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}

uint64_t fingerprint_model(const std::string& path) {
  ContentHasher h;
  if (!fs::is_directory(path)) {
    h.add("file").add(fingerprint_file(path));
    return h.digest();
  }
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(path)) {
    const std::string ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".json" || ext == ".safetensors")) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  h.add("folder");
  for (const auto& f : files) h.add(f.filename().string()).add(fingerprint_file(f.string()));
  return h.digest();
}

}  // namespace smolq
