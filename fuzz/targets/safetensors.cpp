// Fuzz targets over safetensors: one file's header and data, and a sharded index.
#include "formats/error.h"
#include "formats/safetensors.h"
#include "fuzz/targets/fuzz_support.h"
#include "fuzz/targets/fuzz_targets.h"

#include <cstring>

namespace smolq::fuzz {
namespace {

// Reads the first and last element of each tensor as f32, and checks the invariants the
// converter relies on (sizes agree, data inside the file).
void exercise(const SafetensorsCheckpoint& ck) {
  float buf[1];
  for (const StTensor& t : ck.tensors()) {
    uint64_t n = 1;
    for (uint64_t d : t.shape) n *= d;  // cannot overflow: the reader checked the product
    if (n != t.n_elements) fuzz_fail("tensor '" + t.name + "' n_elements differs from its shape");
    if (t.data.size() != t.n_elements * st_dtype_size(t.dtype)) fuzz_fail("tensor '" + t.name + "' byte size");
    if (t.n_elements == 0) continue;
    (void)t.rows();
    (void)t.cols();
    SafetensorsCheckpoint::read_f32(t, 0, buf);
    SafetensorsCheckpoint::read_f32(t, t.n_elements - 1, buf);
  }
  (void)ck.total_bytes();
}

// Two valid shards the index may refer to: a 2x2 F32 "a.w" and a 3-element BF16 "b.w".
std::string shard(const std::string& name, const std::string& dtype, const std::string& shape, size_t nbytes) {
  std::string hdr = "{\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
                    ",\"data_offsets\":[0," + std::to_string(nbytes) + "]}}";
  std::string out(8, '\0');
  const uint64_t len = hdr.size();
  std::memcpy(out.data(), &len, 8);
  return out + hdr + std::string(nbytes, '\x3f');
}

}  // namespace

int fuzz_safetensors(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("model.safetensors", {reinterpret_cast<const char*>(data), size});
  try {
    exercise(*SafetensorsCheckpoint::open(path));
  } catch (const Error&) {
  }
  return 0;
}

int fuzz_safetensors_index(const uint8_t* data, size_t size) {
  static const bool shards_written = [] {
    write_scratch("index/model-00001-of-00002.safetensors", shard("a.w", "F32", "[2,2]", 16));
    write_scratch("index/model-00002-of-00002.safetensors", shard("b.w", "BF16", "[3]", 6));
    return true;
  }();
  (void)shards_written;
  const std::string path = write_scratch("index/model.safetensors.index.json", {reinterpret_cast<const char*>(data), size});
  try {
    exercise(*SafetensorsCheckpoint::open(path));
  } catch (const Error&) {
  }
  return 0;
}

}  // namespace smolq::fuzz
