// A tolerant GGUF header scanner for `smolq inspect`.
//
// formats/gguf.h's GgufReader is strict: the first problem throws a FormatError, which is
// right for anything that goes on to use the tensors. Inspect has the opposite job: show a
// user everything that can be read from a damaged or odd file and list every problem found,
// so this scanner never throws on file content. It reads the same layout (see gguf.h):
//   "GGUF" u32 version  u64 n_tensors  u64 n_kv
//   n_kv x { string key, u32 value_type, value }
//   n_tensors x { string name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset }
//   padding to general.alignment, tensor data
// and stops only where the layout itself becomes unreadable (a truncated field, an unknown
// value type whose size cannot be known). Everything read up to that point is kept.
// Only the header is touched: scanning a multi-gigabyte file reads a few megabytes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "formats/gguf.h"

namespace smolq {

enum class Severity { kInfo, kWarning, kError };
std::string_view severity_name(Severity s);

// One integrity observation. `offset` is an absolute file offset or FormatError::kNoOffset.
struct Finding {
  Severity severity = Severity::kWarning;
  uint64_t offset = UINT64_MAX;
  std::string message;
};

// A tensor info as found in the file. When the ggml type id is unknown, `info.type` is
// meaningless, `type_known` is false and sizes are unknown (0).
struct ScannedTensor {
  GgufTensorInfo info;
  uint32_t raw_type = 0;       // ggml type id as stored
  bool type_known = true;
  bool size_known = true;      // false for unknown types and rows that break the block size
  bool in_file = true;         // its data lies wholly inside the file
  uint64_t info_offset = 0;    // where its tensor-info record starts
};

struct GgufScan {
  std::string path;
  uint64_t file_size = 0;
  bool is_gguf = false;              // the magic matched
  uint32_t version = 0;
  uint64_t declared_tensors = 0;     // counts from the header
  uint64_t declared_kv = 0;
  uint32_t alignment = 32;
  uint64_t header_end = 0;           // end of the tensor infos (0 when not reached)
  uint64_t data_offset = 0;          // aligned start of tensor data (0 when not reached)
  bool header_complete = false;      // every key/value and tensor info was read
  GgufMetadata metadata;             // the key/values read (in file order)
  std::vector<ScannedTensor> tensors;
  std::vector<Finding> findings;

  bool has_errors() const;
  size_t count(Severity s) const;
};

// Scan `path`. Throws only when the file cannot be opened at all (IoError / FormatError for
// a non-regular file); every problem with its content becomes a Finding.
GgufScan scan_gguf(const std::string& path);

// Whether `key` is one llama.cpp or the GGUF spec defines (for `<arch>.*` keys: one of the
// per-architecture hyperparameter names). Unknown keys are reported as information only:
// GGUF allows any key, but a misspelt one is silently ignored by llama.cpp.
bool is_known_gguf_key(std::string_view key, std::string_view arch);

}  // namespace smolq
