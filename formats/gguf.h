// GGUF v3: metadata values, tensor infos, a validating mmap reader and a streaming writer.
//
// File layout (all little-endian):
//   "GGUF" u32 version  u64 n_tensors  u64 n_kv
//   n_kv x { string key, u32 value_type, value }        string = u64 length + bytes
//   n_tensors x { string name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset }
//   padding to `general.alignment` (default 32)
//   tensor data; each tensor's offset (relative to the data section) is aligned.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "formats/ggml_types.h"
#include "formats/mapped_file.h"

namespace smolq {

class AtomicFile;

enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
std::string_view gguf_type_name(GgufType t);

struct GgufValue;
struct GgufArray {
  GgufType elem_type = GgufType::UINT8;
  std::vector<GgufValue> items;
};

// One metadata value. Integers are held widened (u64 / i64), floats as double, but `type`
// remembers the exact on-disk type so files round-trip byte for byte.
struct GgufValue {
  GgufType type = GgufType::UINT8;
  std::variant<uint64_t, int64_t, double, bool, std::string, GgufArray> data;

  static GgufValue u8(uint8_t v) { return {GgufType::UINT8, uint64_t{v}}; }
  static GgufValue i8(int8_t v) { return {GgufType::INT8, int64_t{v}}; }
  static GgufValue u16(uint16_t v) { return {GgufType::UINT16, uint64_t{v}}; }
  static GgufValue i16(int16_t v) { return {GgufType::INT16, int64_t{v}}; }
  static GgufValue u32(uint32_t v) { return {GgufType::UINT32, uint64_t{v}}; }
  static GgufValue i32(int32_t v) { return {GgufType::INT32, int64_t{v}}; }
  static GgufValue u64(uint64_t v) { return {GgufType::UINT64, v}; }
  static GgufValue i64(int64_t v) { return {GgufType::INT64, v}; }
  static GgufValue f32(float v) { return {GgufType::FLOAT32, double{v}}; }
  static GgufValue f64(double v) { return {GgufType::FLOAT64, v}; }
  static GgufValue boolean(bool v) { return {GgufType::BOOL, v}; }
  static GgufValue str(std::string v) { return {GgufType::STRING, std::move(v)}; }
  static GgufValue array(GgufType elem, std::vector<GgufValue> items) {
    return {GgufType::ARRAY, GgufArray{elem, std::move(items)}};
  }
  static GgufValue string_array(const std::vector<std::string>& v);
  static GgufValue f32_array(const std::vector<float>& v);
  static GgufValue i32_array(const std::vector<int32_t>& v);

  bool is_integer() const;
  bool is_float() const { return type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }
  // Typed accessors; they throw Error on a type mismatch (callers add the key name).
  uint64_t as_u64() const;
  int64_t as_i64() const;
  double as_f64() const;
  bool as_bool() const;
  const std::string& as_string() const;
  const GgufArray& as_array() const;
  // Short human-readable rendering ("[49152 strings: "<|endoftext|>", ...]").
  std::string to_display(size_t max_items = 8) const;
};

// Ordered key/value store (order is preserved on write).
class GgufMetadata {
 public:
  void set(std::string key, GgufValue v);
  bool erase(std::string_view key);
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  const std::vector<std::pair<std::string, GgufValue>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

  // Typed getters: throw FormatError(path_for_errors) when missing or of the wrong type.
  uint64_t get_u64(std::string_view key) const;
  double get_f64(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  std::optional<uint64_t> opt_u64(std::string_view key) const;
  std::optional<double> opt_f64(std::string_view key) const;
  std::optional<std::string> opt_string(std::string_view key) const;
  std::optional<bool> opt_bool(std::string_view key) const;
  void set_source(std::string path) { source_ = std::move(path); }

 private:
  std::vector<std::pair<std::string, GgufValue>> entries_;
  std::unordered_map<std::string, size_t> index_;
  std::string source_ = "<metadata>";
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> shape;  // ggml order: shape[0] is the row length (contiguous)
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;          // relative to the start of the data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  uint64_t rows() const { return shape.empty() ? 0 : n_elements / shape[0]; }
};

// Hard caps on header fields, checked before anything is allocated.
struct GgufLimits {
  static constexpr uint64_t kMaxStringBytes = 64ull << 20;  // one key or value string
  static constexpr uint64_t kMaxArrayItems = 1ull << 26;    // items in one array
  static constexpr uint64_t kMaxTensors = 1ull << 20;
  static constexpr uint64_t kMaxKv = 1ull << 20;
  static constexpr uint32_t kMaxDims = 4;                   // GGML_MAX_DIMS
  static constexpr uint32_t kMaxArrayDepth = 8;
};

// A parsed GGUF file; tensor data stays in the mapping.
class GgufReader {
 public:
  static std::unique_ptr<GgufReader> open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return file_->size(); }
  const GgufMetadata& metadata() const { return meta_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  const GgufTensorInfo& tensor(std::string_view name) const;  // throws FormatError if absent
  ByteView tensor_data(const GgufTensorInfo& t) const;
  const MappedFile& file() const { return *file_; }
  // Non-fatal oddities found while reading (unknown keys are not errors; see inspect).
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  GgufMetadata meta_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<std::string> warnings_;
};

// Where everything goes in a GGUF file, computed without writing it; the writer uses the
// same function, so a size predicted here is the size written.
struct GgufPlannedTensor {
  std::string name;
  std::vector<uint64_t> shape;
  GgmlType type;
};
struct GgufLayout {
  uint64_t header_bytes = 0;        // through the tensor infos, before padding
  uint64_t data_offset = 0;         // aligned start of tensor data
  std::vector<uint64_t> offsets;    // per tensor, relative to data_offset
  std::vector<uint64_t> n_bytes;    // per tensor
  uint64_t file_size = 0;
};
GgufLayout plan_gguf_layout(const GgufMetadata& meta, const std::vector<GgufPlannedTensor>& tensors,
                            uint32_t alignment);
// Bytes of a tensor of `type` and `shape`; throws FormatError(context) when the row is not a
// multiple of the block or the size overflows.
uint64_t tensor_nbytes(GgmlType type, const std::vector<uint64_t>& shape, const std::string& context);

// Streaming GGUF writer. Everything goes to a temporary file beside `dest`; commit() renames
// it into place. Destroying an uncommitted writer deletes the temporary file, so a failed or
// interrupted run leaves `dest` untouched.
class GgufWriter {
 public:
  explicit GgufWriter(std::string dest, uint32_t alignment = 32);
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  GgufMetadata& metadata() { return meta_; }
  void add_tensor(std::string name, std::vector<uint64_t> shape, GgmlType type);
  // Writes header and tensor infos. After this, tensors are written in the order added.
  void begin_data();
  void write_tensor(std::string_view name, std::span<const std::byte> bytes);
  // Out of order, after begin_data(): writes tensor `name` (not yet written) and its padding at
  // its final offset now; write_tensor() then goes past it, and the file's bytes are those of
  // writing every tensor in order. For a producer that makes some tensors long before the ones
  // ahead of them (`quantize --optimize`, quantize/model_writer.h place_tensor). Only when
  // can_place(): not for a stream destination.
  bool can_place() const;
  void place_tensor(std::string_view name, std::span<const std::byte> bytes);
  bool placed(size_t index) const { return index < placed_.size() && placed_[index]; }
  // Flush, fsync, rename over `dest`. Returns the file size.
  uint64_t commit();
  const GgufLayout& layout() const { return layout_; }

 private:
  std::string dest_;
  uint32_t alignment_;
  std::unique_ptr<AtomicFile> file_;
  GgufMetadata meta_;
  std::vector<GgufPlannedTensor> planned_;
  GgufLayout layout_;
  size_t next_tensor_ = 0;
  std::vector<bool> placed_;  // by tensor index: written by place_tensor
  void write_padding(uint64_t n_bytes, uint64_t at);  // at == UINT64_MAX: sequentially
  void skip_placed();
};

}  // namespace smolq
