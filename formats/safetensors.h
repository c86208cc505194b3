// safetensors reader: a single file or a sharded checkpoint (model.safetensors.index.json).
//
// File layout: u64 header_len (LE) | header_len bytes of JSON | tensor bytes.
// JSON maps tensor name -> {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}
// (offsets relative to the byte after the header), plus an optional "__metadata__" object.
// We validate: header length within the file and capped, offsets in range, tensors sorted
// without overlap or gaps, byte length == dtype size x element count.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "formats/mapped_file.h"

namespace smolq {

enum class StDtype { F32, F16, BF16 };
std::string_view st_dtype_name(StDtype t);
uint32_t st_dtype_size(StDtype t);

struct StTensor {
  std::string name;
  StDtype dtype;
  std::vector<uint64_t> shape;  // as stored: row-major, shape.back() is contiguous (HF order)
  uint64_t n_elements = 0;
  ByteView data;                // bounds-checked bytes inside the shard's mapping
  std::string file;             // shard path (for error messages)
  uint64_t rows() const;        // product of all but the last dim (1 for 1-D)
  uint64_t cols() const { return shape.empty() ? 1 : shape.back(); }
};

class SafetensorsCheckpoint {
 public:
  // `path` is a .safetensors file, a model.safetensors.index.json, or a folder holding either.
  static std::unique_ptr<SafetensorsCheckpoint> open(const std::string& path);

  const std::vector<StTensor>& tensors() const { return tensors_; }  // sorted by name
  const StTensor* find(const std::string& name) const;
  const StTensor& get(const std::string& name) const;  // FormatError when missing
  std::vector<std::string> files() const;
  uint64_t total_bytes() const;
  // Convert a tensor's elements [begin, begin+out.size()) to f32.
  static void read_f32(const StTensor& t, uint64_t begin, std::span<float> out);
  std::string source() const { return source_; }
  // Release page cache of a tensor after it has been consumed (keeps RSS low).
  void drop(const StTensor& t) const;
  // The same for elements [begin, begin + n) of `t` once read: only pages wholly inside them
  // are released, so rows that share a page with their neighbours stay readable without a
  // second fault. Safe at any time (a released page of a read-only mapping is read again).
  void drop_elements(const StTensor& t, uint64_t begin, uint64_t n) const;

 private:
  void add_file(const std::string& path, const std::vector<std::string>* expected);
  std::vector<std::shared_ptr<MappedFile>> maps_;
  std::vector<StTensor> tensors_;
  std::map<std::string, size_t> index_;
  std::string source_;
};

}  // namespace smolq
