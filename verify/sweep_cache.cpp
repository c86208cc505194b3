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
#include "verify/unicode.h"

namespace smolq {
namespace fs = std::filesystem;

// ---- hashing -----------------------------------------------------------------------------

CacheHasher::CacheHasher() : state_(XXH3_createState()) {
  if (!state_) throw Error("out of memory (xxHash state)");
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_));
}
CacheHasher::~CacheHasher() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

CacheHasher& CacheHasher::add_bytes(const void* p, size_t n) {
  const uint64_t len = n;
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), &len, sizeof len);
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), p, n);
  return *this;
}
CacheHasher& CacheHasher::add(std::string_view s) { return add_bytes(s.data(), s.size()); }
CacheHasher& CacheHasher::add(uint64_t v) { return add_bytes(&v, sizeof v); }
uint64_t CacheHasher::digest() const { return XXH3_64bits_digest(static_cast<XXH3_state_t*>(state_)); }

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
  CacheHasher h;
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

// ---- JSON --------------------------------------------------------------------------------

std::string json_quote(std::string_view raw) {
  const std::string s = unicode::is_valid_utf8(raw) ? std::string(raw) : unicode::replace_invalid_utf8(raw);
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += static_cast<char>(c);
        }
    }
  }
  return o + "\"";
}

void JsonBuilder::before_value() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (first_.empty()) return;
  if (!first_.back()) out_ += ',';
  first_.back() = false;
  if (pretty_) {
    out_ += '\n';
    out_.append(first_.size() * 2, ' ');
  }
}

JsonBuilder& JsonBuilder::begin_object() {
  before_value();
  out_ += '{';
  first_.push_back(true);
  return *this;
}
JsonBuilder& JsonBuilder::begin_array() {
  before_value();
  out_ += '[';
  first_.push_back(true);
  return *this;
}
JsonBuilder& JsonBuilder::end_object() {
  const bool empty = first_.back();
  first_.pop_back();
  if (pretty_ && !empty) {
    out_ += '\n';
    out_.append(first_.size() * 2, ' ');
  }
  out_ += '}';
  return *this;
}
JsonBuilder& JsonBuilder::end_array() {
  const bool empty = first_.back();
  first_.pop_back();
  if (pretty_ && !empty) {
    out_ += '\n';
    out_.append(first_.size() * 2, ' ');
  }
  out_ += ']';
  return *this;
}
JsonBuilder& JsonBuilder::key(std::string_view k) {
  before_value();
  out_ += json_quote(k);
  out_ += pretty_ ? ": " : ":";
  after_key_ = true;
  return *this;
}
JsonBuilder& JsonBuilder::value(std::string_view s) {
  before_value();
  out_ += json_quote(s);
  return *this;
}
JsonBuilder& JsonBuilder::value(double v) {
  before_value();
  if (!std::isfinite(v)) {
    out_ += "null";
  } else {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*g", digits_, v);
    out_ += buf;
  }
  return *this;
}
JsonBuilder& JsonBuilder::value(int64_t v) {
  before_value();
  out_ += std::to_string(v);
  return *this;
}
JsonBuilder& JsonBuilder::value(uint64_t v) {
  before_value();
  out_ += std::to_string(v);
  return *this;
}
JsonBuilder& JsonBuilder::value(bool v) {
  before_value();
  out_ += v ? "true" : "false";
  return *this;
}
JsonBuilder& JsonBuilder::null() {
  before_value();
  out_ += "null";
  return *this;
}
JsonBuilder& JsonBuilder::raw(std::string_view json) {
  before_value();
  out_ += json;
  return *this;
}

}  // namespace smolq
