// Importance-matrix files, both formats llama.cpp reads and writes (tools/imatrix):
//
// GGUF (current; `general.type` = "imatrix"):
//   metadata  imatrix.datasets     [string]  the calibration texts, in merge order
//             imatrix.chunk_count  u32       chunks the sums were collected over
//             imatrix.chunk_size   u32       tokens per chunk
//   tensors   "<weight>.in_sum2"   F32 {n_cols, n_mat}  sum over tokens of x^2 per input column
//             "<weight>.counts"    F32 {1, n_mat}       tokens summed (per expert matrix)
//   (trailing dimensions of 1 are dropped on disk, as ggml does: a dense weight stores
//    in_sum2 as {n_cols} and counts as {1}). Entries are sorted by weight name.
//
// Legacy .dat (all little-endian):
//   i32 n_entries
//   n_entries x { i32 name_len, name bytes, i32 ncall, i32 n_values, f32 values[n_values] }
//   optional trailer: i32 chunk_count, i32 dataset_len, dataset bytes
//   where values = mean(x^2) * ncall and ncall = ceil(tokens / chunk_size): the raw sums and
//   counts are not stored, only their ratio scaled by the chunk count.
//
// ImatrixData keeps what the file says in both cases (sums and counts; for a legacy file the
// sums are mean * ncall and counts = {ncall}), so importance() = sums / counts is the
// per-column mean squared activation either way — the weight a quantizer should use.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace smolq {

struct ImatrixEntry {
  std::vector<float> sums;      // n_mat * n_cols
  std::vector<int64_t> counts;  // n_mat (1 for a dense weight)

  size_t n_mat() const { return counts.size(); }
  size_t n_cols() const { return counts.empty() ? 0 : sums.size() / counts.size(); }
  // Per-column importance: sums / count of each matrix; 1 where a matrix has no data
  // (llama-quantize's rule for experts that calibration never reached).
  std::vector<float> importance() const;
};

struct ImatrixData {
  std::map<std::string, ImatrixEntry> entries;  // keyed by GGUF weight name ("blk.0.attn_q.weight")
  std::vector<std::string> datasets;
  int32_t chunk_count = 0;
  int32_t chunk_size = 0;  // 0 when unknown (legacy files do not record it)
  bool legacy = false;     // read from a .dat file: sums are mean * ncall (see above)

  const ImatrixEntry* find(std::string_view weight_name) const;
};

enum class ImatrixFormat { Gguf, Dat };

// Hard caps on what a file may declare, checked before anything is allocated.
struct ImatrixLimits {
  static constexpr int64_t kMaxEntries = 1 << 16;        // weights (a 3B model has ~250)
  static constexpr int64_t kMaxValues = 1 << 26;         // floats in one entry
  static constexpr int64_t kMaxNameBytes = 1 << 12;
  static constexpr int64_t kMaxDatasetBytes = 1 << 16;
};

// Reads either format (detected from the first bytes); malformed files throw FormatError.
ImatrixData read_imatrix(const std::string& path);
ImatrixFormat detect_imatrix_format(const std::string& path);

// Write atomically (temporary file + rename). The GGUF writer needs raw sums (not legacy
// data); the .dat writer turns raw sums into mean * ncall using chunk_size (> 0), or writes
// legacy data as it was read.
void write_imatrix(const std::string& path, const ImatrixData& d, ImatrixFormat f);
void write_imatrix_gguf(const std::string& path, const ImatrixData& d);
void write_imatrix_dat(const std::string& path, const ImatrixData& d);

// Add `from` into `into` as llama-imatrix --in-file does: GGUF sums and counts add up; legacy
// entries are first turned back into raw form (values and ncall times chunk_size). Datasets
// are appended; chunk_count becomes max count / chunk_size. Mismatched sizes throw Error.
void merge_imatrix(ImatrixData& into, const ImatrixData& from, int32_t chunk_size);

}  // namespace smolq
