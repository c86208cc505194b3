// safetensors reader (single file or sharded). Validation follows the format's own rules:
// the JSON header must fit inside the file (and under a cap), every tensor's byte range
// must lie inside the data section, ranges are contiguous without overlap or gaps, and
// each tensor's byte length equals dtype size x element count.
#include "formats/safetensors.h"

#include <simdjson.h>
#include <sys/stat.h>

#include <algorithm>
#include <cassert>
#include <set>

#include "formats/checked.h"
#include "formats/error.h"
#include "formats/half.h"

namespace smolq {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // HF's own reader caps headers at 100 MB
constexpr size_t kMaxDims = 8;

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
std::string dir_of(const std::string& p) {
  auto pos = p.find_last_of('/');
  return pos == std::string::npos ? "." : p.substr(0, pos);
}
bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
}  // namespace

std::string_view st_dtype_name(StDtype t) {
  switch (t) {
    case StDtype::F32: return "F32";
    case StDtype::F16: return "F16";
    case StDtype::BF16: return "BF16";
  }
  return "?";
}
uint32_t st_dtype_size(StDtype t) { return t == StDtype::F32 ? 4 : 2; }

uint64_t StTensor::rows() const {
  uint64_t r = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
  return r;
}

std::unique_ptr<SafetensorsCheckpoint> SafetensorsCheckpoint::open(const std::string& path_in) {
  auto ck = std::unique_ptr<SafetensorsCheckpoint>(new SafetensorsCheckpoint());
  std::string path = path_in;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (is_dir(path)) {
    if (file_exists(path + "/model.safetensors.index.json")) {
      path += "/model.safetensors.index.json";
    } else if (file_exists(path + "/model.safetensors")) {
      path += "/model.safetensors";
    } else {
      throw FormatError(path, "no model.safetensors or model.safetensors.index.json in this folder");
    }
  }
  ck->source_ = path;
  if (ends_with(path, ".json")) {
    // Sharded: {"metadata": {...}, "weight_map": {"tensor": "shard file", ...}}
    const std::string text = read_text_file(path, 64u << 20);
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (auto err = parser.parse(text).get(root))
      throw FormatError(path, std::string("invalid JSON: ") + simdjson::error_message(err));
    simdjson::dom::object wm;
    if (root["weight_map"].get(wm) != simdjson::SUCCESS) throw FormatError(path, "missing 'weight_map' object");
    std::map<std::string, std::vector<std::string>> by_file;
    for (auto [k, v] : wm) {
      std::string_view f;
      if (v.get(f) != simdjson::SUCCESS) throw FormatError(path, "weight_map['" + std::string(k) + "'] is not a string");
      std::string fs(f);
      if (fs.find('/') != std::string::npos || fs == ".." || fs.empty())
        throw FormatError(path, "weight_map names shard '" + fs + "' outside the checkpoint folder");
      by_file[fs].push_back(std::string(k));
    }
    if (by_file.empty()) throw FormatError(path, "weight_map is empty");
    for (const auto& [f, names] : by_file)
      if (!file_exists(dir_of(path) + "/" + f))
        throw FormatError(path, "shard '" + f + "' listed in weight_map does not exist");
    for (auto& [f, names] : by_file) {
      std::sort(names.begin(), names.end());
      ck->add_file(dir_of(path) + "/" + f, &names);
    }
  } else {
    ck->add_file(path, nullptr);
  }
  std::sort(ck->tensors_.begin(), ck->tensors_.end(), [](const StTensor& a, const StTensor& b) { return a.name < b.name; });
  for (size_t i = 0; i < ck->tensors_.size(); ++i) {
    if (!ck->index_.emplace(ck->tensors_[i].name, i).second)
      throw FormatError(ck->tensors_[i].file, "tensor '" + ck->tensors_[i].name + "' appears in more than one shard");
  }
  return ck;
}

void SafetensorsCheckpoint::add_file(const std::string& path, const std::vector<std::string>* expected) {
  auto map = MappedFile::open(path);
  ByteView v = map->view();
  if (v.size() < 8) throw FormatError(path, 0, "file too short for a safetensors header (" + std::to_string(v.size()) + " bytes)");
  const uint64_t hlen = v.read<uint64_t>(0, "header length");
  if (hlen > kMaxHeaderBytes)
    throw FormatError(path, 0, "header length " + std::to_string(hlen) + " exceeds the 100 MB limit");
  if (hlen > v.size() - 8)
    throw FormatError(path, 0, "header length " + std::to_string(hlen) + " runs past end of file (" +
                                   std::to_string(v.size()) + " bytes)");
  ByteView hdr = v.slice(8, hlen, "header");
  const uint64_t data_start = 8 + hlen;
  ByteView data = v.slice(data_start, v.size() - data_start, "data");

  simdjson::padded_string json(reinterpret_cast<const char*>(hdr.data()), hlen);
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto err = parser.parse(json).get(root))
    throw FormatError(path, 8, std::string("header is not valid JSON: ") + simdjson::error_message(err));
  simdjson::dom::object obj;
  if (root.get(obj) != simdjson::SUCCESS) throw FormatError(path, 8, "header is not a JSON object");

  struct Range {
    uint64_t begin, end;
    size_t idx;
  };
  std::vector<Range> ranges;
  std::set<std::string> seen;
  for (auto [key, val] : obj) {
    const std::string name(key);
    if (name == "__metadata__") continue;
    auto fail = [&](const std::string& m) -> void { throw FormatError(path, 8, "tensor '" + name + "': " + m); };
    simdjson::dom::object t;
    if (val.get(t) != simdjson::SUCCESS) fail("entry is not an object");
    std::string_view dt;
    if (t["dtype"].get(dt) != simdjson::SUCCESS) fail("missing dtype");
    StTensor st;
    st.name = name;
    st.file = path;
    if (dt == "F32") st.dtype = StDtype::F32;
    else if (dt == "F16") st.dtype = StDtype::F16;
    else if (dt == "BF16") st.dtype = StDtype::BF16;
    else fail("unsupported dtype " + std::string(dt) + " (supported: F32, F16, BF16)");
    simdjson::dom::array shape, offs;
    if (t["shape"].get(shape) != simdjson::SUCCESS) fail("missing shape");
    if (t["data_offsets"].get(offs) != simdjson::SUCCESS) fail("missing data_offsets");
    uint64_t nel = 1;
    for (auto d : shape) {
      uint64_t dim;
      if (d.get(dim) != simdjson::SUCCESS) fail("shape entries must be non-negative integers");
      if (st.shape.size() >= kMaxDims) fail("too many dimensions");
      auto m = checked_mul(nel, dim);
      if (!m) fail("element count overflows");
      nel = *m;
      st.shape.push_back(dim);
    }
    st.n_elements = nel;
    std::vector<uint64_t> o;
    for (auto x : offs) {
      uint64_t u;
      if (x.get(u) != simdjson::SUCCESS) fail("data_offsets entries must be non-negative integers");
      o.push_back(u);
    }
    if (o.size() != 2 || o[0] > o[1]) fail("data_offsets must be [begin, end] with begin <= end");
    auto nbytes = checked_mul(nel, st_dtype_size(st.dtype));
    if (!nbytes || *nbytes != o[1] - o[0])
      fail("byte length " + std::to_string(o[1] - o[0]) + " does not match dtype " + std::string(dt) + " x shape (" +
           (nbytes ? std::to_string(*nbytes) : std::string("overflow")) + " bytes)");
    if (o[1] > data.size())
      throw FormatError(path, data_start + o[0],
                        "tensor '" + name + "': data [" + std::to_string(o[0]) + ", " + std::to_string(o[1]) +
                            ") runs past end of file (data section has " + std::to_string(data.size()) + " bytes)");
    st.data = data.slice(o[0], o[1] - o[0], "tensor data");
    if (expected && !std::binary_search(expected->begin(), expected->end(), name))
      throw FormatError(path, "tensor '" + name + "' is in this shard but the index maps it elsewhere");
    seen.insert(name);
    ranges.push_back({o[0], o[1], tensors_.size()});
    tensors_.push_back(std::move(st));
  }
  // Contiguity: sorted by offset, each range starts where the previous one ended.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (const auto& r : ranges) {
    const std::string& nm = tensors_[r.idx].name;
    if (r.begin < pos)
      throw FormatError(path, data_start + r.begin, "tensor '" + nm + "' overlaps the previous tensor's data");
    if (r.begin > pos)
      throw FormatError(path, data_start + pos,
                        "gap of " + std::to_string(r.begin - pos) + " bytes before tensor '" + nm + "'");
    pos = r.end;
  }
  if (pos != data.size())
    throw FormatError(path, data_start + pos,
                      std::to_string(data.size() - pos) + " trailing bytes after the last tensor");
  if (expected) {
    for (const auto& n : *expected)
      if (!seen.count(n)) throw FormatError(path, "tensor '" + n + "' listed in the index is missing from this shard");
  }
  maps_.push_back(std::move(map));
}

const StTensor* SafetensorsCheckpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const StTensor& SafetensorsCheckpoint::get(const std::string& name) const {
  const StTensor* t = find(name);
  if (!t) throw FormatError(source_, "missing tensor '" + name + "'");
  return *t;
}

std::vector<std::string> SafetensorsCheckpoint::files() const {
  std::vector<std::string> out;
  for (const auto& m : maps_) out.push_back(m->path());
  return out;
}

uint64_t SafetensorsCheckpoint::total_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors_) n += t.data.size();
  return n;
}

void SafetensorsCheckpoint::read_f32(const StTensor& t, uint64_t begin, std::span<float> out) {
  const uint32_t es = st_dtype_size(t.dtype);
  ByteView v = t.data.slice(begin * es, out.size() * es, "tensor elements");
  const std::byte* p = v.data();
  switch (t.dtype) {
    case StDtype::F32:
      std::memcpy(out.data(), p, out.size() * 4);
      break;
    case StDtype::F16:
      for (size_t i = 0; i < out.size(); ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = f16_to_f32(h);
      }
      break;
    case StDtype::BF16:
      for (size_t i = 0; i < out.size(); ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = bf16_to_f32(h);
      }
      break;
  }
}

void SafetensorsCheckpoint::drop(const StTensor& t) const {
  for (const auto& m : maps_)
    if (m->path() == t.file) m->drop_pages(t.data.file_offset(), t.data.size());
}

void SafetensorsCheckpoint::drop_elements(const StTensor& t, uint64_t begin, uint64_t n) const {
  const uint64_t es = st_dtype_size(t.dtype);
  assert(begin + n <= t.n_elements);
  for (const auto& m : maps_)
    if (m->path() == t.file) m->drop_pages(t.data.file_offset() + begin * es, n * es);
}

}  // namespace smolq
