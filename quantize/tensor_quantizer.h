// Threaded whole-tensor quantization, shared by `convert` (rows come from safetensors) and
// `quantize` (rows come from a dequantised GGUF tensor). Rows are split into fixed chunks
// whose results land at fixed offsets, so the output bytes never depend on thread count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "formats/ggml_types.h"

namespace smolq {

// Fills `out` (nrows * ncols floats) with rows [row_begin, row_begin + nrows) of the source.
// Must be thread-safe for disjoint row ranges.
using RowSource = std::function<void(uint64_t row_begin, uint64_t nrows, std::span<float> out)>;

struct TensorQuantizeJob {
  GgmlType type;
  uint64_t nrows = 0, ncols = 0;
  RowSource source;
  std::span<const float> imatrix;   // empty, or ncols importance weights
  int threads = 1;
  // Called (from the calling thread only) with rows done so far; may throw to abort
  // (e.g. on interruption).
  std::function<void(uint64_t rows_done)> on_progress;
  // For error messages of quantize_tensors_in_order ("tensor 'NAME': ..."); may be empty.
  std::string_view label;
};

// Quantize the whole tensor; returns nrows * row_bytes bytes.
std::vector<std::byte> quantize_tensor(const TensorQuantizeJob& job);

// Quantizes every job (nullptr entries: nothing to compute) on one team of `threads` threads
// that takes fixed row chunks of all tensors in order, so a small tensor never leaves a
// thread idle and threads never wait between tensors (a parallel region per tensor made the
// idle thread spin at every tensor boundary, half the CPU time of a Q8_0 run on a loaded
// machine). `write(i, bytes)` receives each job's bytes (empty for nullptr) in index order,
// called by whichever thread completes the next tensor, never concurrently; only tensors
// still in flight are held in memory (a few, as chunks are handed out in order). An Error
// from a kernel (not a FormatError or an interruption) gains the job's label.
// `on_progress(i, elements_done)` (elements over all jobs) runs on one thread only and may
// throw to abort; the first exception of any thread is rethrown after all threads stop.
// Bytes are those of quantize_tensor (chunk boundaries are fixed, thread count is irrelevant);
// the jobs' own `threads` and `on_progress` fields are not used.
void quantize_tensors_in_order(const std::vector<const TensorQuantizeJob*>& jobs, int threads,
                               const std::function<void(size_t, std::span<const std::byte>)>& write,
                               const std::function<void(size_t, uint64_t)>& on_progress);

// Dequantize rows [row_begin, row_begin + nrows) of a tensor of `type` with `ncols` columns
// stored at `data` (all rows) into `out`.
void dequantize_tensor_rows(GgmlType type, std::span<const std::byte> data, uint64_t ncols, uint64_t row_begin,
                            uint64_t nrows, std::span<float> out);

// Index of the first non-finite value of a whole tensor of `type` stored at `data` (rows of
// `ncols`), dequantising quantized types block by block; nullopt when every value is finite
// (or the type cannot be read).
std::optional<uint64_t> find_non_finite_tensor(GgmlType type, std::span<const std::byte> data, uint64_t ncols);

}  // namespace smolq
