// Content hashing: what identifies an input (a model, a text, an importance matrix, a set of
// settings) to the caches that reuse work: the verify sweep's records, sensitivity profiles,
// measured-mixed-precision plans. XXH3-64 (xxHash): fast, and 64 bits are plenty to tell
// inputs apart (it guards against stale caches, not against adversaries).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace smolq {

// Incremental XXH3-64 over typed fields (each prefixed by its length, so field boundaries
// are part of the hash).
class ContentHasher {
 public:
  ContentHasher();
  ~ContentHasher();
  ContentHasher(const ContentHasher&) = delete;
  ContentHasher& operator=(const ContentHasher&) = delete;
  ContentHasher& add(std::string_view s);
  ContentHasher& add(uint64_t v);
  ContentHasher& add_bytes(const void* p, size_t n);
  uint64_t digest() const;

 private:
  void* state_;  // XXH3_state_t
};

// 16 lowercase hex digits.
std::string hex64(uint64_t v);

// Content hash of a model: a GGUF file, or an HF folder's *.json and *.safetensors files
// (names and bytes, in name order).
uint64_t fingerprint_model(const std::string& path);
// Content hash of any file.
uint64_t fingerprint_file(const std::string& path);

}  // namespace smolq
