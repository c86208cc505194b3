// Validating GGUF reader. Every count and length from the file is checked against the
// bytes that remain and against hard caps before anything is allocated; every error names
// the file and the byte offset where the problem was found.
#include <algorithm>
#include <cstring>

#include "formats/checked.h"
#include "formats/error.h"
#include "formats/gguf.h"

namespace smolq {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
// Smallest possible tensor info: u64 name length, a 1-byte name, u32 n_dims, one u64 dim,
// u32 ggml type, u64 offset.
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;

// Sequential cursor over a ByteView.
class Cursor {
 public:
  explicit Cursor(ByteView v) : v_(v) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return v_.size() - pos_; }
  template <class T>
  T get(const char* what) {
    T t = v_.read<T>(pos_, what);
    pos_ += sizeof(T);
    return t;
  }
  std::string get_string(const char* what) {
    const uint64_t at = pos_;
    uint64_t n = get<uint64_t>(what);
    if (n > GgufLimits::kMaxStringBytes)
      v_.fail(at, std::string(what) + " length " + std::to_string(n) + " exceeds the " +
                      std::to_string(GgufLimits::kMaxStringBytes) + "-byte limit");
    if (n > remaining()) v_.fail(at, std::string(what) + " length " + std::to_string(n) + " runs past end of file");
    ByteView s = v_.slice(pos_, n, what);
    pos_ += n;
    return std::string(reinterpret_cast<const char*>(s.data()), n);
  }
  [[noreturn]] void fail(uint64_t at, const std::string& msg) const { v_.fail(at, msg); }

 private:
  ByteView v_;
  uint64_t pos_ = 0;
};

// Smallest number of bytes one element of type t occupies (to bound array counts).
uint64_t min_elem_bytes(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::STRING: return 8;
    case GgufType::ARRAY: return 12;
    default: return 8;
  }
}

GgufValue read_value(Cursor& c, GgufType t, uint32_t depth, const std::string& key) {
  switch (t) {
    case GgufType::UINT8: return GgufValue::u8(c.get<uint8_t>("u8 value"));
    case GgufType::INT8: return GgufValue::i8(c.get<int8_t>("i8 value"));
    case GgufType::UINT16: return GgufValue::u16(c.get<uint16_t>("u16 value"));
    case GgufType::INT16: return GgufValue::i16(c.get<int16_t>("i16 value"));
    case GgufType::UINT32: return GgufValue::u32(c.get<uint32_t>("u32 value"));
    case GgufType::INT32: return GgufValue::i32(c.get<int32_t>("i32 value"));
    case GgufType::FLOAT32: return GgufValue::f32(c.get<float>("f32 value"));
    case GgufType::UINT64: return GgufValue::u64(c.get<uint64_t>("u64 value"));
    case GgufType::INT64: return GgufValue::i64(c.get<int64_t>("i64 value"));
    case GgufType::FLOAT64: return GgufValue::f64(c.get<double>("f64 value"));
    case GgufType::BOOL: {
      const uint64_t at = c.pos();
      uint8_t b = c.get<uint8_t>("bool value");
      if (b > 1) c.fail(at, "key '" + key + "': bool value " + std::to_string(b) + " is neither 0 nor 1");
      return GgufValue::boolean(b != 0);
    }
    case GgufType::STRING: return GgufValue::str(c.get_string("string value"));
    case GgufType::ARRAY: {
      const uint64_t at = c.pos();
      if (depth >= GgufLimits::kMaxArrayDepth) c.fail(at, "key '" + key + "': arrays nested too deeply");
      uint32_t et = c.get<uint32_t>("array element type");
      if (et > static_cast<uint32_t>(GgufType::FLOAT64))
        c.fail(at, "key '" + key + "': unknown array element type " + std::to_string(et));
      const uint64_t cnt_at = c.pos();
      uint64_t n = c.get<uint64_t>("array length");
      if (n > GgufLimits::kMaxArrayItems)
        c.fail(cnt_at, "key '" + key + "': array of " + std::to_string(n) + " items exceeds the limit of " +
                           std::to_string(GgufLimits::kMaxArrayItems));
      auto need = checked_mul(n, min_elem_bytes(static_cast<GgufType>(et)));
      if (!need || *need > c.remaining())
        c.fail(cnt_at, "key '" + key + "': array of " + std::to_string(n) + " items runs past end of file");
      std::vector<GgufValue> items;
      items.reserve(n);
      for (uint64_t i = 0; i < n; ++i) items.push_back(read_value(c, static_cast<GgufType>(et), depth + 1, key));
      return GgufValue::array(static_cast<GgufType>(et), std::move(items));
    }
  }
  c.fail(c.pos(), "key '" + key + "': unknown value type " + std::to_string(static_cast<uint32_t>(t)));
}

}  // namespace

uint64_t tensor_nbytes(GgmlType type, const std::vector<uint64_t>& shape, const std::string& context) {
  const TypeGeometry& g = type_info(type);
  if (shape.empty()) throw FormatError(context, "tensor has no dimensions");
  if (shape[0] % g.block_elems != 0)
    throw FormatError(context, "row length " + std::to_string(shape[0]) + " is not a multiple of " +
                                   std::string(g.name) + "'s block of " + std::to_string(g.block_elems));
  uint64_t rows = 1;
  for (size_t i = 1; i < shape.size(); ++i) {
    auto r = checked_mul(rows, shape[i]);
    if (!r) throw FormatError(context, "tensor size overflows");
    rows = *r;
  }
  auto b = checked_mul(shape[0] / g.block_elems, g.block_bytes);
  if (!b) throw FormatError(context, "tensor size overflows");
  auto total = checked_mul(*b, rows);
  if (!total) throw FormatError(context, "tensor size overflows");
  return *total;
}

std::unique_ptr<GgufReader> GgufReader::open(const std::string& path) {
  auto r = std::unique_ptr<GgufReader>(new GgufReader());
  r->file_ = MappedFile::open(path);
  r->meta_.set_source(path);
  ByteView v = r->file_->view();
  Cursor c(v);
  if (v.size() < 4 || v.read<uint32_t>(0, "magic") != kMagic)
    v.fail(0, "not a GGUF file (bad magic)");
  c.get<uint32_t>("magic");
  r->version_ = c.get<uint32_t>("version");
  if (r->version_ != 2 && r->version_ != 3)
    v.fail(4, "unsupported GGUF version " + std::to_string(r->version_) + " (supported: 2, 3)");
  const uint64_t n_tensors = c.get<uint64_t>("tensor count");
  const uint64_t n_kv = c.get<uint64_t>("metadata count");
  if (n_tensors > GgufLimits::kMaxTensors)
    v.fail(8, "tensor count " + std::to_string(n_tensors) + " exceeds the limit of " +
                  std::to_string(GgufLimits::kMaxTensors));
  if (n_kv > GgufLimits::kMaxKv)
    v.fail(16, "metadata count " + std::to_string(n_kv) + " exceeds the limit of " + std::to_string(GgufLimits::kMaxKv));

  for (uint64_t i = 0; i < n_kv; ++i) {
    const uint64_t at = c.pos();
    std::string key = c.get_string("metadata key");
    if (key.empty()) c.fail(at, "empty metadata key");
    if (r->meta_.has(key)) c.fail(at, "duplicate metadata key '" + key + "'");
    const uint64_t tat = c.pos();
    uint32_t t = c.get<uint32_t>("value type");
    if (t > static_cast<uint32_t>(GgufType::FLOAT64))
      c.fail(tat, "key '" + key + "': unknown value type " + std::to_string(t));
    GgufValue val = read_value(c, static_cast<GgufType>(t), 0, key);
    r->meta_.set(std::move(key), std::move(val));
  }

  if (const GgufValue* a = r->meta_.find("general.alignment")) {
    if (a->type != GgufType::UINT32) v.fail(0, "general.alignment must be u32");
    uint64_t al = a->as_u64();
    if (al == 0 || (al & (al - 1)) != 0 || al > (1u << 20))
      v.fail(0, "general.alignment " + std::to_string(al) + " is not a power of two up to 1 MiB");
    r->alignment_ = static_cast<uint32_t>(al);
  }

  // A tensor info takes at least kMinTensorInfoBytes, so a count the remaining bytes cannot
  // hold is rejected here, before reserve() sizes a vector by it (2^20 infos are ~90 MB).
  if (auto need = checked_mul(n_tensors, kMinTensorInfoBytes); !need || *need > c.remaining())
    v.fail(8, "tensor count " + std::to_string(n_tensors) + " cannot fit in the " + std::to_string(c.remaining()) +
                  " bytes left after the metadata");
  r->tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const uint64_t at = c.pos();
    GgufTensorInfo ti;
    ti.name = c.get_string("tensor name");
    if (ti.name.empty()) c.fail(at, "empty tensor name");
    if (r->index_.count(ti.name)) c.fail(at, "duplicate tensor '" + ti.name + "'");
    const uint64_t dat = c.pos();
    uint32_t nd = c.get<uint32_t>("dimension count");
    if (nd == 0 || nd > GgufLimits::kMaxDims)
      c.fail(dat, "tensor '" + ti.name + "': " + std::to_string(nd) + " dimensions (1 to 4 allowed)");
    uint64_t nel = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      uint64_t dim = c.get<uint64_t>("dimension");
      if (dim == 0) c.fail(dat, "tensor '" + ti.name + "': zero-sized dimension");
      auto m = checked_mul(nel, dim);
      if (!m || *m > (1ull << 60)) c.fail(dat, "tensor '" + ti.name + "': element count overflows");
      nel = *m;
      ti.shape.push_back(dim);
    }
    ti.n_elements = nel;
    const uint64_t tat = c.pos();
    uint32_t type = c.get<uint32_t>("tensor type");
    const TypeGeometry* g = find_type(type);
    if (!g) c.fail(tat, "tensor '" + ti.name + "': unknown ggml type " + std::to_string(type));
    ti.type = g->id;
    try {
      ti.n_bytes = tensor_nbytes(ti.type, ti.shape, path);
    } catch (const FormatError& e) {
      c.fail(dat, "tensor '" + ti.name + "': " + e.message());
    }
    const uint64_t oat = c.pos();
    ti.offset = c.get<uint64_t>("tensor offset");
    if (ti.offset % r->alignment_ != 0)
      c.fail(oat, "tensor '" + ti.name + "': data offset " + std::to_string(ti.offset) + " is not aligned to " +
                      std::to_string(r->alignment_));
    r->index_.emplace(ti.name, r->tensors_.size());
    r->tensors_.push_back(std::move(ti));
  }

  auto data_off = checked_align_up(c.pos(), r->alignment_);
  if (!data_off) v.fail(c.pos(), "data offset overflows");
  r->data_offset_ = *data_off;
  if (r->data_offset_ > v.size() && !r->tensors_.empty())
    v.fail(c.pos(), "tensor data section starts past end of file");

  // Tensor extents: inside the file, and no two overlapping.
  std::vector<size_t> order(r->tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return r->tensors_[a].offset < r->tensors_[b].offset; });
  uint64_t prev_end = 0;
  std::string prev_name;
  for (size_t idx : order) {
    const auto& t = r->tensors_[idx];
    auto start = checked_add(r->data_offset_, t.offset);
    auto end = start ? checked_add(*start, t.n_bytes) : std::nullopt;
    if (!end || *end > v.size())
      v.fail(start ? *start : r->data_offset_,
             "tensor '" + t.name + "' (" + std::to_string(t.n_bytes) + " bytes) ends beyond end of file (" +
                 hex_offset(v.size()) + ")");
    if (t.offset < prev_end)
      v.fail(*start, "tensor '" + t.name + "' overlaps tensor '" + prev_name + "'");
    prev_end = t.offset + t.n_bytes;
    prev_name = t.name;
  }
  return r;
}

const GgufTensorInfo* GgufReader::find_tensor(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufReader::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (!t) throw FormatError(path(), "missing tensor '" + std::string(name) + "'");
  return *t;
}

ByteView GgufReader::tensor_data(const GgufTensorInfo& t) const {
  return file_->view().slice(data_offset_ + t.offset, t.n_bytes, "tensor data");
}

}  // namespace smolq
