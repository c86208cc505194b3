#include "verify/sweep_cache.h"

#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "formats/atomic_file.h"
#include "formats/error.h"
#include "formats/mapped_file.h"
#include "text/unicode.h"

namespace smolq {
namespace fs = std::filesystem;

// ---- binary records ----------------------------------------------------------------------
namespace {

// Common header of the binary records (little-endian):
//   char magic[4]; u32 version; u64 key; i64 chunk; u64 count (positions or floats)
struct RecordHeader {
  char magic[4];
  uint32_t version;
  uint64_t key;
  int64_t chunk;
  uint64_t count;
};
static_assert(sizeof(RecordHeader) == 32);

constexpr char kChunkMagic[4] = {'S', 'Q', 'K', 'C'};   // per-position comparisons
constexpr char kLogitsMagic[4] = {'S', 'Q', 'B', 'L'};  // baseline logits
// One position: nll_base, nll_q, kld, p_diff, sum_sq_logit_diff, max_abs_logit_diff,
// same_top (0/1) as f64 — exact, so a replay gives the same statistics to the last bit.
constexpr size_t kPositionDoubles = 7;

RecordHeader make_header(const char* magic, uint64_t key, int64_t chunk, uint64_t count) {
  RecordHeader h{};
  std::memcpy(h.magic, magic, 4);
  h.version = static_cast<uint32_t>(kSweepCacheVersion);
  h.key = key;
  h.chunk = chunk;
  h.count = count;
  return h;
}

bool header_ok(const RecordHeader& h, const char* magic, uint64_t key, int64_t chunk) {
  return std::memcmp(h.magic, magic, 4) == 0 && h.version == kSweepCacheVersion && h.key == key && h.chunk == chunk;
}

}  // namespace

void write_chunk_record(const std::string& path, uint64_t key, int64_t chunk, const ChunkRecord& r) {
  std::vector<double> body;
  body.reserve(r.positions.size() * kPositionDoubles + 1);
  body.push_back(r.seconds);
  for (const auto& p : r.positions) {
    body.insert(body.end(), {p.nll_base, p.nll_q, p.kld, p.p_diff, p.sum_sq_logit_diff, p.max_abs_logit_diff,
                             p.same_top ? 1.0 : 0.0});
  }
  const RecordHeader h = make_header(kChunkMagic, key, chunk, r.positions.size());
  AtomicFile f(path);
  f.write(&h, sizeof h);
  f.write(body.data(), body.size() * sizeof(double));
  f.commit();
}

std::optional<ChunkRecord> read_chunk_record(const std::string& path, uint64_t key, int64_t chunk) {
  if (!file_exists(path)) return std::nullopt;
  auto f = MappedFile::open(path);
  const ByteView v = f->view();
  if (v.size() < sizeof(RecordHeader)) return std::nullopt;
  RecordHeader h;
  std::memcpy(&h, v.data(), sizeof h);
  if (!header_ok(h, kChunkMagic, key, chunk)) return std::nullopt;
  if (h.count > (1ull << 32) || v.size() != sizeof h + (1 + h.count * kPositionDoubles) * sizeof(double)) return std::nullopt;
  std::vector<double> body(1 + h.count * kPositionDoubles);
  std::memcpy(body.data(), v.data() + sizeof h, body.size() * sizeof(double));
  ChunkRecord r;
  r.seconds = body[0];
  r.positions.resize(h.count);
  for (uint64_t i = 0; i < h.count; ++i) {
    const double* d = body.data() + 1 + i * kPositionDoubles;
    PositionComparison& p = r.positions[i];
    p.nll_base = d[0];
    p.nll_q = d[1];
    p.kld = d[2];
    p.p_diff = d[3];
    p.sum_sq_logit_diff = d[4];
    p.max_abs_logit_diff = d[5];
    p.same_top = d[6] != 0;
  }
  return r;
}

void write_logits_record(const std::string& path, uint64_t key, int64_t chunk, std::span<const float> logits) {
  const size_t n = logits.size();
  std::vector<uint8_t> planes(n * sizeof(float));
  const auto* src = reinterpret_cast<const uint8_t*>(logits.data());
  for (size_t i = 0; i < n; ++i)
    for (size_t b = 0; b < sizeof(float); ++b) planes[b * n + i] = src[i * sizeof(float) + b];
  std::vector<uint8_t> packed(ZSTD_compressBound(planes.size()));
  // Level 3: zstd's default, ~10x faster than the high levels for a few percent of size.
  const size_t z = ZSTD_compress(packed.data(), packed.size(), planes.data(), planes.size(), 3);
  if (ZSTD_isError(z)) throw Error(std::string("zstd: ") + ZSTD_getErrorName(z));
  const RecordHeader h = make_header(kLogitsMagic, key, chunk, n);
  AtomicFile f(path);
  f.write(&h, sizeof h);
  f.write(packed.data(), z);
  f.commit();
}

bool read_logits_record(const std::string& path, uint64_t key, int64_t chunk, std::span<float> out) {
  if (!file_exists(path)) return false;
  auto f = MappedFile::open(path);
  const ByteView v = f->view();
  if (v.size() < sizeof(RecordHeader)) return false;
  RecordHeader h;
  std::memcpy(&h, v.data(), sizeof h);
  if (!header_ok(h, kLogitsMagic, key, chunk) || h.count != out.size()) return false;
  const size_t n = out.size();
  std::vector<uint8_t> planes(n * sizeof(float));
  const size_t got = ZSTD_decompress(planes.data(), planes.size(), v.data() + sizeof h, v.size() - sizeof h);
  if (ZSTD_isError(got) || got != planes.size()) return false;
  auto* dst = reinterpret_cast<uint8_t*>(out.data());
  for (size_t i = 0; i < n; ++i)
    for (size_t b = 0; b < sizeof(float); ++b) dst[i * sizeof(float) + b] = planes[b * n + i];
  return true;
}

}  // namespace smolq
