// GGUF serialisation: header layout planning (shared with size estimates) and the streaming
// writer on top of AtomicFile.
#include <cstdint>
#include <cstring>

#include "formats/atomic_file.h"
#include "formats/checked.h"
#include "formats/error.h"
#include "formats/gguf.h"

namespace smolq {
namespace {

template <class T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.append(s);
}

void put_value(std::string& out, const GgufValue& v) {
  switch (v.type) {
    case GgufType::UINT8: put<uint8_t>(out, static_cast<uint8_t>(v.as_u64())); break;
    case GgufType::INT8: put<int8_t>(out, static_cast<int8_t>(v.as_i64())); break;
    case GgufType::UINT16: put<uint16_t>(out, static_cast<uint16_t>(v.as_u64())); break;
    case GgufType::INT16: put<int16_t>(out, static_cast<int16_t>(v.as_i64())); break;
    case GgufType::UINT32: put<uint32_t>(out, static_cast<uint32_t>(v.as_u64())); break;
    case GgufType::INT32: put<int32_t>(out, static_cast<int32_t>(v.as_i64())); break;
    case GgufType::FLOAT32: put<float>(out, static_cast<float>(v.as_f64())); break;
    case GgufType::UINT64: put<uint64_t>(out, v.as_u64()); break;
    case GgufType::INT64: put<int64_t>(out, v.as_i64()); break;
    case GgufType::FLOAT64: put<double>(out, v.as_f64()); break;
    case GgufType::BOOL: put<uint8_t>(out, v.as_bool() ? 1 : 0); break;
    case GgufType::STRING: put_string(out, v.as_string()); break;
    case GgufType::ARRAY: {
      const auto& a = v.as_array();
      put<uint32_t>(out, static_cast<uint32_t>(a.elem_type));
      put<uint64_t>(out, a.items.size());
      for (const auto& item : a.items) {
        if (item.type != a.elem_type) throw Error("GGUF array element type mismatch");
        put_value(out, item);
      }
      break;
    }
  }
}

// The header bytes up to (not including) the padding before tensor data.
std::string serialize_header(const GgufMetadata& meta, const std::vector<GgufPlannedTensor>& tensors,
                             const std::vector<uint64_t>& offsets) {
  std::string out;
  put<uint32_t>(out, 0x46554747);  // "GGUF"
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors.size());
  put<uint64_t>(out, meta.size());
  for (const auto& [k, v] : meta.entries()) {
    put_string(out, k);
    put<uint32_t>(out, static_cast<uint32_t>(v.type));
    put_value(out, v);
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.shape.size()));
    for (uint64_t d : t.shape) put<uint64_t>(out, d);
    put<uint32_t>(out, static_cast<uint32_t>(t.type));
    put<uint64_t>(out, offsets.empty() ? 0 : offsets[i]);
  }
  return out;
}

uint64_t align_or_throw(uint64_t v, uint64_t a) {
  auto r = checked_align_up(v, a);
  if (!r) throw Error("GGUF layout overflows");
  return *r;
}

}  // namespace

GgufLayout plan_gguf_layout(const GgufMetadata& meta, const std::vector<GgufPlannedTensor>& tensors,
                            uint32_t alignment) {
  GgufLayout L;
  uint64_t off = 0;
  for (const auto& t : tensors) {
    uint64_t nb = tensor_nbytes(t.type, t.shape, "tensor '" + t.name + "'");
    L.offsets.push_back(off);
    L.n_bytes.push_back(nb);
    off = align_or_throw(off + nb, alignment);  // every tensor is padded, the last one too
  }
  // Offsets are fixed-width fields, so the header size does not depend on their values.
  L.header_bytes = serialize_header(meta, tensors, {}).size();
  L.data_offset = align_or_throw(L.header_bytes, alignment);
  L.file_size = L.data_offset + off;
  return L;
}

GgufWriter::GgufWriter(std::string dest, uint32_t alignment) : dest_(std::move(dest)), alignment_(alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) throw UsageError("GGUF alignment must be a power of two");
}

GgufWriter::~GgufWriter() = default;

void GgufWriter::add_tensor(std::string name, std::vector<uint64_t> shape, GgmlType type) {
  if (file_) throw Error("GgufWriter: tensors must be added before begin_data()");
  planned_.push_back({std::move(name), std::move(shape), type});
}

void GgufWriter::begin_data() {
  // general.alignment must describe the layout actually written.
  if (alignment_ != 32 || meta_.has("general.alignment")) meta_.set("general.alignment", GgufValue::u32(alignment_));
  layout_ = plan_gguf_layout(meta_, planned_, alignment_);
  std::string header = serialize_header(meta_, planned_, layout_.offsets);
  header.resize(layout_.data_offset, '\0');
  file_ = std::make_unique<AtomicFile>(dest_);
  file_->write(header);
}

void GgufWriter::write_padding(uint64_t n_bytes, uint64_t at) {
  static const char zeros[64] = {};
  for (uint64_t left = align_or_throw(n_bytes, alignment_) - n_bytes; left > 0;) {
    const uint64_t n = left < sizeof zeros ? left : sizeof zeros;
    if (at == UINT64_MAX) {
      file_->write(zeros, n);
    } else {
      file_->write_at(at, zeros, n);
      at += n;
    }
    left -= n;
  }
}

// Past the tensors at the sequential position that place_tensor already wrote.
void GgufWriter::skip_placed() {
  for (; next_tensor_ < planned_.size() && placed(next_tensor_); ++next_tensor_)
    file_->skip(align_or_throw(layout_.n_bytes[next_tensor_], alignment_));
}

void GgufWriter::write_tensor(std::string_view name, std::span<const std::byte> bytes) {
  if (!file_) throw Error("GgufWriter: begin_data() not called");
  skip_placed();
  if (next_tensor_ >= planned_.size() || planned_[next_tensor_].name != name)
    throw Error("GgufWriter: tensor '" + std::string(name) + "' written out of order");
  if (bytes.size() != layout_.n_bytes[next_tensor_])
    throw Error("GgufWriter: tensor '" + std::string(name) + "' has " + std::to_string(bytes.size()) +
                " bytes, expected " + std::to_string(layout_.n_bytes[next_tensor_]));
  file_->write(bytes.data(), bytes.size());
  write_padding(bytes.size(), UINT64_MAX);
  ++next_tensor_;
}

bool GgufWriter::can_place() const { return file_ && file_->seekable(); }

void GgufWriter::place_tensor(std::string_view name, std::span<const std::byte> bytes) {
  if (!can_place()) throw Error("GgufWriter: tensors can be placed only after begin_data(), in a regular file");
  size_t i = next_tensor_;
  while (i < planned_.size() && planned_[i].name != name) ++i;
  if (i >= planned_.size() || placed(i))
    throw Error("GgufWriter: tensor '" + std::string(name) + "' placed twice, after its turn or not planned");
  if (bytes.size() != layout_.n_bytes[i])
    throw Error("GgufWriter: tensor '" + std::string(name) + "' has " + std::to_string(bytes.size()) +
                " bytes, expected " + std::to_string(layout_.n_bytes[i]));
  const uint64_t at = layout_.data_offset + layout_.offsets[i];
  file_->write_at(at, bytes.data(), bytes.size());
  write_padding(bytes.size(), at + bytes.size());  // the file reaches its full size even when i is last
  placed_.resize(planned_.size(), false);
  placed_[i] = true;
}

uint64_t GgufWriter::commit() {
  if (!file_) begin_data();
  skip_placed();
  if (next_tensor_ != planned_.size())
    throw Error("GgufWriter: only " + std::to_string(next_tensor_) + " of " + std::to_string(planned_.size()) +
                " tensors were written");
  const uint64_t size = file_->bytes_written();
  if (size != layout_.file_size) throw Error("GgufWriter: size differs from the planned layout");
  file_->commit();
  return size;
}

}  // namespace smolq
