// The sweep's on-disk cache (under <out>/cache) and the small JSON builder its records and
// the reports share.
//
// Keys: every record is named and stamped with a 64-bit XXH3 hash of everything that
// determines its content — a cache-format version, the fingerprint (content hash) of the
// models involved, the file type, the importance matrix, the evaluation tokens and the
// protocol settings. A record whose stamped key differs from the expected one is ignored and
// recomputed, so a stale cache can cost time but never change a result. All records are
// written atomically (formats/atomic_file.h): a killed run leaves whole records or none.
//
// Layout:
//   cache/imatrix-<key>.gguf                 automatic importance matrix (llama.cpp format)
//   cache/build-<label>-<key>.json           a built quant: path, sizes, types, build time
//   cache/errors-<label>-<key>.json          per-tensor quantization error
//   cache/eval-<label>-<key>/chunk-NNNNN.bin per-position comparisons of one chunk (binary)
//   cache/base-<key>/chunk-NNNNN.bin         the baseline's scored logits of one chunk (zstd)
//   cache/gen-<label>-<key>.json             greedy generations
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "verify/metrics.h"

namespace smolq {

// Bump when a record's meaning or layout changes: every key changes with it.
inline constexpr uint64_t kSweepCacheVersion = 1;

// Incremental XXH3-64 over typed fields (each prefixed by its length, so field boundaries
// are part of the hash).
class CacheHasher {
 public:
  CacheHasher();
  ~CacheHasher();
  CacheHasher(const CacheHasher&) = delete;
  CacheHasher& operator=(const CacheHasher&) = delete;
  CacheHasher& add(std::string_view s);
  CacheHasher& add(uint64_t v);
  CacheHasher& add_bytes(const void* p, size_t n);
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

// ---- per-chunk comparison records ---------------------------------------------------------
struct ChunkRecord {
  std::vector<PositionComparison> positions;
  double seconds = 0;  // forward time of the quantized model on this chunk
};
void write_chunk_record(const std::string& path, uint64_t key, int64_t chunk, const ChunkRecord& r);
// nullopt when missing, stamped with another key or chunk, or malformed.
std::optional<ChunkRecord> read_chunk_record(const std::string& path, uint64_t key, int64_t chunk);

// ---- baseline logits ---------------------------------------------------------------------
// f32 logits of one chunk, stored as zstd over byte planes (all first bytes, then all second
// bytes, ...): exponent bytes of nearby logits repeat, which plain zstd of floats misses.
void write_logits_record(const std::string& path, uint64_t key, int64_t chunk, std::span<const float> logits);
// True and fills `out` (its size must match) when a valid record exists.
bool read_logits_record(const std::string& path, uint64_t key, int64_t chunk, std::span<float> out);

// ---- JSON --------------------------------------------------------------------------------
// A minimal streaming JSON writer: commas and indentation are handled; keys are written with
// key() before a value or a container. Doubles are printed with `digits` significant digits
// (17 round-trips exactly, for cache records); non-finite numbers become null.
class JsonBuilder {
 public:
  explicit JsonBuilder(bool pretty = true, int digits = 10) : pretty_(pretty), digits_(digits) {}
  JsonBuilder& begin_object();
  JsonBuilder& end_object();
  JsonBuilder& begin_array();
  JsonBuilder& end_array();
  JsonBuilder& key(std::string_view k);
  JsonBuilder& value(std::string_view s);
  JsonBuilder& value(const char* s) { return value(std::string_view(s)); }
  JsonBuilder& value(const std::string& s) { return value(std::string_view(s)); }
  JsonBuilder& value(double v);
  JsonBuilder& value(int64_t v);
  JsonBuilder& value(uint64_t v);
  JsonBuilder& value(int v) { return value(static_cast<int64_t>(v)); }
  JsonBuilder& value(bool v);
  JsonBuilder& null();
  // Insert already-formatted JSON (e.g. kld_report_json) as a value.
  JsonBuilder& raw(std::string_view json);
  const std::string& str() const { return out_; }

 private:
  void before_value();
  std::string out_;
  std::vector<bool> first_;  // per open container: nothing written in it yet
  bool pretty_, after_key_ = false;
  int digits_;
};

// `s` as a JSON string literal (quotes included; control characters escaped; invalid UTF-8
// replaced by U+FFFD so the output is always valid JSON).
std::string json_quote(std::string_view s);

}  // namespace smolq
