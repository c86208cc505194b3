// The sweep's on-disk cache (under <out>/cache). Keys are content hashes
// (formats/content_hash.h); JSON records are written with formats/json_writer.h.
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

#include "eval/metrics.h"
#include "formats/content_hash.h"
#include "formats/json_writer.h"

namespace smolq {

// Bump when a record's meaning or layout changes: every key changes with it.
inline constexpr uint64_t kSweepCacheVersion = 1;

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

}  // namespace smolq
