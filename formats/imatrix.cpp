#include "formats/imatrix.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/atomic_file.h"
#include "formats/error.h"
#include "formats/finite_scan.h"
#include "formats/gguf.h"
#include "formats/mapped_file.h"

namespace smolq {
namespace {

constexpr std::string_view kSumSuffix = ".in_sum2";
constexpr std::string_view kCountSuffix = ".counts";
constexpr char kGgufMagic[4] = {'G', 'G', 'U', 'F'};

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::vector<float> read_f32_tensor(const GgufReader& r, const GgufTensorInfo& t) {
  if (t.type != GgmlType::F32)
    throw FormatError(r.path(), t.offset + r.data_offset(), "tensor '" + t.name + "' must be F32");
  if (static_cast<int64_t>(t.n_elements) > ImatrixLimits::kMaxValues)
    throw FormatError(r.path(), t.offset + r.data_offset(), "tensor '" + t.name + "' is implausibly large");
  ByteView v = r.tensor_data(t);
  std::vector<float> out(t.n_elements);
  std::memcpy(out.data(), v.data(), out.size() * sizeof(float));
  return out;
}

ImatrixData read_gguf(const std::string& path) {
  auto r = GgufReader::open(path);
  const GgufMetadata& m = r->metadata();
  if (auto type = m.opt_string("general.type"); type && *type != "imatrix")
    throw FormatError(path, "general.type is '" + *type + "', not 'imatrix' (is this a model file?)");
  ImatrixData d;
  if (const GgufValue* ds = m.find("imatrix.datasets")) {
    if (ds->type != GgufType::ARRAY || ds->as_array().elem_type != GgufType::STRING)
      throw FormatError(path, "imatrix.datasets must be an array of strings");
    for (const auto& v : ds->as_array().items) d.datasets.push_back(v.as_string());
  }
  auto u32_key = [&](const char* key) -> int32_t {
    auto v = m.opt_u64(key);
    if (v && *v > INT32_MAX) throw FormatError(path, std::string(key) + " is out of range");
    return v ? static_cast<int32_t>(*v) : 0;
  };
  d.chunk_count = u32_key("imatrix.chunk_count");
  d.chunk_size = u32_key("imatrix.chunk_size");

  // Pair "<w>.in_sum2" with "<w>.counts".
  std::map<std::string, std::pair<const GgufTensorInfo*, const GgufTensorInfo*>> pairs;
  for (const auto& t : r->tensors()) {
    if (ends_with(t.name, kSumSuffix)) {
      pairs[t.name.substr(0, t.name.size() - kSumSuffix.size())].first = &t;
    } else if (ends_with(t.name, kCountSuffix)) {
      pairs[t.name.substr(0, t.name.size() - kCountSuffix.size())].second = &t;
    } else {
      throw FormatError(path, "unexpected tensor '" + t.name + "' (an imatrix holds only *.in_sum2 and *.counts)");
    }
  }
  if (pairs.empty()) throw FormatError(path, "no importance data (no *.in_sum2 tensors)");
  if (static_cast<int64_t>(pairs.size()) > ImatrixLimits::kMaxEntries) throw FormatError(path, "too many entries");
  for (const auto& [name, p] : pairs) {
    if (!p.first || !p.second) throw FormatError(path, "entry '" + name + "' lacks its " + (p.first ? "counts" : "in_sum2") + " tensor");
    ImatrixEntry e;
    e.sums = read_f32_tensor(*r, *p.first);
    const std::vector<float> counts = read_f32_tensor(*r, *p.second);
    if (counts.empty() || e.sums.empty() || e.sums.size() % counts.size() != 0)
      throw FormatError(path, "entry '" + name + "': " + std::to_string(e.sums.size()) + " sums do not split into " +
                                  std::to_string(counts.size()) + " matrices");
    for (float c : counts) {
      if (!std::isfinite(c) || c < 0 || c > 9e15f)
        throw FormatError(path, "entry '" + name + "' has an invalid count");
      e.counts.push_back(std::llround(c));
    }
    for (float s : e.sums)
      if (!std::isfinite(s)) throw FormatError(path, "entry '" + name + "' has a non-finite sum");
    d.entries.emplace(name, std::move(e));
  }
  return d;
}

ImatrixData read_dat(const std::string& path) {
  auto file = MappedFile::open(path);
  const ByteView v = file->view();
  ImatrixData d;
  d.legacy = true;
  uint64_t off = 0;
  auto i32 = [&](const char* what) {
    const int32_t x = v.read<int32_t>(off, what);
    off += 4;
    return x;
  };
  const int32_t n_entries = i32("entry count");
  if (n_entries < 1 || n_entries > ImatrixLimits::kMaxEntries)
    v.fail(0, "entry count " + std::to_string(n_entries) + " is not plausible (not an imatrix file?)");
  for (int32_t i = 0; i < n_entries; ++i) {
    const uint64_t at = off;
    const int32_t len = i32("name length");
    if (len < 1 || len > ImatrixLimits::kMaxNameBytes) v.fail(at, "entry " + std::to_string(i) + ": bad name length " + std::to_string(len));
    ByteView nb = v.slice(off, static_cast<uint64_t>(len), "entry name");
    std::string name(reinterpret_cast<const char*>(nb.data()), static_cast<size_t>(len));
    off += static_cast<uint64_t>(len);
    const int32_t ncall = i32("call count");
    const uint64_t nat = off;
    const int32_t nval = i32("value count");
    if (ncall < 0) v.fail(nat - 4, "entry '" + name + "': negative call count");
    if (nval < 1 || nval > ImatrixLimits::kMaxValues) v.fail(nat, "entry '" + name + "': bad value count " + std::to_string(nval));
    ByteView vals = v.slice(off, static_cast<uint64_t>(nval) * 4, "entry values");
    ImatrixEntry e;
    e.sums.resize(static_cast<size_t>(nval));
    std::memcpy(e.sums.data(), vals.data(), e.sums.size() * 4);
    for (float s : e.sums)
      if (!std::isfinite(s)) v.fail(off, "entry '" + name + "' has a non-finite value");
    off += static_cast<uint64_t>(nval) * 4;
    e.counts = {ncall};
    if (!d.entries.emplace(name, std::move(e)).second) v.fail(at, "entry '" + name + "' appears twice");
  }
  // Optional trailer: chunk count, then the dataset name.
  if (off < v.size()) {
    d.chunk_count = i32("chunk count");
    if (off < v.size()) {
      const uint64_t at = off;
      const int32_t len = i32("dataset name length");
      if (len < 0 || len > ImatrixLimits::kMaxDatasetBytes) v.fail(at, "bad dataset name length " + std::to_string(len));
      ByteView nb = v.slice(off, static_cast<uint64_t>(len), "dataset name");
      if (len > 0) d.datasets.emplace_back(reinterpret_cast<const char*>(nb.data()), static_cast<size_t>(len));
      off += static_cast<uint64_t>(len);
    }
    if (off != v.size()) v.fail(off, std::to_string(v.size() - off) + " unexpected bytes after the dataset name");
  }
  return d;
}

void append_i32(std::string& s, int32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }

}  // namespace

std::vector<float> ImatrixEntry::importance() const {
  std::vector<float> out(sums.size(), 1.0f);
  const size_t nc = n_cols();
  for (size_t m = 0; m < counts.size(); ++m) {
    if (counts[m] <= 0) continue;
    const float c = static_cast<float>(counts[m]);
    for (size_t i = 0; i < nc; ++i) out[m * nc + i] = sums[m * nc + i] / c;
  }
  return out;
}

const ImatrixEntry* ImatrixData::find(std::string_view weight_name) const {
  auto it = entries.find(std::string(weight_name));
  return it == entries.end() ? nullptr : &it->second;
}

ImatrixFormat detect_imatrix_format(const std::string& path) {
  auto file = MappedFile::open(path);
  const ByteView v = file->view();
  if (v.size() < 4) v.fail(0, "file too short to be an imatrix");
  return std::memcmp(v.data(), kGgufMagic, 4) == 0 ? ImatrixFormat::Gguf : ImatrixFormat::Dat;
}

// A NaN or Inf importance would weight every block of that tensor by garbage (and make the
// quantizer's scale search produce NaN scales): such data is refused when read or written.
static void check_finite(const ImatrixData& d, const std::string& path, const char* verb) {
  for (const auto& [name, e] : d.entries)
    if (auto bad = find_non_finite(e.sums))
      throw FormatError(path, std::string(verb) + "entry '" + name + "' holds a non-finite value (" +
                                  float_text(e.sums[*bad]) + " at value " + std::to_string(*bad) + ")");
}

ImatrixData read_imatrix(const std::string& path) {
  ImatrixData d = detect_imatrix_format(path) == ImatrixFormat::Gguf ? read_gguf(path) : read_dat(path);
  check_finite(d, path, "");
  return d;
}

void write_imatrix(const std::string& path, const ImatrixData& d, ImatrixFormat f) {
  check_finite(d, path, "not written: the model's activations are NaN/Inf (non-finite weights?): ");
  if (f == ImatrixFormat::Gguf) write_imatrix_gguf(path, d);
  else write_imatrix_dat(path, d);
}

void write_imatrix_gguf(const std::string& path, const ImatrixData& d) {
  if (d.legacy) throw Error("legacy imatrix data holds no raw sums; merge it into a raw collection first");
  if (d.entries.empty()) throw Error("no importance data to write");
  GgufWriter w(path);
  auto& m = w.metadata();
  m.set("general.type", GgufValue::str("imatrix"));
  m.set("imatrix.datasets", GgufValue::string_array(d.datasets));
  m.set("imatrix.chunk_count", GgufValue::u32(static_cast<uint32_t>(d.chunk_count)));
  m.set("imatrix.chunk_size", GgufValue::u32(static_cast<uint32_t>(d.chunk_size)));
  std::vector<std::vector<float>> blobs;
  for (const auto& [name, e] : d.entries) {  // std::map: sorted by name, like llama.cpp
    const uint64_t nmat = e.n_mat(), ncols = e.n_cols();
    // ggml drops trailing dimensions of 1 when it writes a tensor.
    w.add_tensor(name + std::string(kSumSuffix), nmat == 1 ? std::vector<uint64_t>{ncols} : std::vector<uint64_t>{ncols, nmat},
                 GgmlType::F32);
    w.add_tensor(name + std::string(kCountSuffix), nmat == 1 ? std::vector<uint64_t>{1} : std::vector<uint64_t>{1, nmat},
                 GgmlType::F32);
    blobs.push_back(e.sums);
    std::vector<float> c(e.counts.begin(), e.counts.end());
    blobs.push_back(std::move(c));
  }
  w.begin_data();
  size_t i = 0;
  for (const auto& [name, e] : d.entries) {
    for (const char* suffix : {".in_sum2", ".counts"}) {
      const auto& b = blobs[i++];
      w.write_tensor(name + suffix, std::as_bytes(std::span<const float>(b)));
    }
  }
  w.commit();
}

void write_imatrix_dat(const std::string& path, const ImatrixData& d) {
  if (d.entries.empty()) throw Error("no importance data to write");
  if (!d.legacy && d.chunk_size <= 0) throw Error("the legacy imatrix format needs the chunk size");
  // llama.cpp leaves out entries without a single counted token: the format cannot say "no
  // data" (a partial entry stores 1 for the matrices that have none, see below).
  auto has_data = [&](const ImatrixEntry& e) {
    return std::any_of(e.counts.begin(), e.counts.end(), [](int64_t c) { return c > 0; });
  };
  const auto n_stored = std::count_if(d.entries.begin(), d.entries.end(), [&](const auto& kv) { return has_data(kv.second); });
  if (n_stored == 0) throw Error("no importance data to write (every entry has a zero count)");
  std::string out;
  append_i32(out, static_cast<int32_t>(n_stored));
  for (const auto& [name, e] : d.entries) {
    if (!has_data(e)) continue;
    append_i32(out, static_cast<int32_t>(name.size()));
    out += name;
    std::vector<float> vals;
    int32_t ncall;
    if (d.legacy) {
      ncall = static_cast<int32_t>(e.counts.empty() ? 0 : e.counts[0]);
      vals = e.sums;
    } else {
      // llama.cpp: ncall = ceil(max count / chunk size); value = sum / count * ncall, and 1 *
      // ncall for a matrix that has no data.
      const int64_t max_count = *std::max_element(e.counts.begin(), e.counts.end());
      ncall = static_cast<int32_t>((max_count + d.chunk_size - 1) / d.chunk_size);
      vals.resize(e.sums.size());
      const size_t nc = e.n_cols();
      for (size_t j = 0; j < vals.size(); ++j) {
        const float count = static_cast<float>(e.counts[j / nc]);
        vals[j] = count == 0.0f ? static_cast<float>(ncall) : (e.sums[j] / count) * static_cast<float>(ncall);
      }
    }
    append_i32(out, ncall);
    append_i32(out, static_cast<int32_t>(vals.size()));
    out.append(reinterpret_cast<const char*>(vals.data()), vals.size() * 4);
  }
  append_i32(out, d.chunk_count);
  const std::string dataset = d.datasets.empty() ? std::string() : d.datasets.back();
  append_i32(out, static_cast<int32_t>(dataset.size()));
  out += dataset;
  write_file_atomic(path, out);
}

void merge_imatrix(ImatrixData& into, const ImatrixData& from, int32_t chunk_size) {
  if (into.legacy) throw Error("cannot merge into legacy imatrix data");
  if (from.legacy && chunk_size <= 0) throw Error("merging a legacy imatrix needs the chunk size");
  for (const auto& [name, src] : from.entries) {
    ImatrixEntry& dst = into.entries[name];
    if (dst.sums.empty()) {
      dst.sums.assign(src.sums.size(), 0.0f);
      dst.counts.assign(from.legacy ? 1 : src.counts.size(), 0);
    } else if (!from.legacy && dst.counts.size() == 1 && src.counts.size() > 1) {
      // A single count (legacy data, or a dense-layout file) stands for every matrix.
      dst.counts.assign(src.counts.size(), dst.counts[0]);
    }
    if (dst.sums.size() != src.sums.size() || (!from.legacy && dst.counts.size() != src.counts.size()))
      throw Error("imatrix entry '" + name + "' has " + std::to_string(src.sums.size()) + " values here and " +
                  std::to_string(dst.sums.size()) + " in the data it is merged into");
    if (from.legacy) {
      // Legacy values are mean * ncall: times chunk_size they are raw sums over ncall chunks.
      for (size_t j = 0; j < src.sums.size(); ++j) dst.sums[j] += src.sums[j] * static_cast<float>(chunk_size);
      for (auto& c : dst.counts) c += src.counts[0] * chunk_size;
    } else {
      for (size_t j = 0; j < src.sums.size(); ++j) dst.sums[j] += src.sums[j];
      for (size_t j = 0; j < src.counts.size(); ++j) dst.counts[j] += src.counts[j];
    }
  }
  into.datasets.insert(into.datasets.end(), from.datasets.begin(), from.datasets.end());
  if (chunk_size > 0) into.chunk_size = chunk_size;
  int64_t max_count = 0;
  for (const auto& [name, e] : into.entries)
    for (int64_t c : e.counts) max_count = std::max(max_count, c);
  if (into.chunk_size > 0) into.chunk_count = static_cast<int32_t>(max_count / into.chunk_size);
}

}  // namespace smolq
