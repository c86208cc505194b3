// Writes a whole model GGUF: metadata plus tensors produced row by row from any source
// (safetensors for `convert`, a dequantised GGUF for `quantize`), each quantized to its
// planned type on all threads. Output is atomic (temporary file + rename) and its bytes do
// not depend on the thread count.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "quantize/tensor_quantizer.h"

namespace smolq {

struct OutputTensor {
  std::string name;
  std::vector<uint64_t> shape;  // ggml order (shape[0] = row length)
  GgmlType type = GgmlType::F32;
  RowSource source;             // rows of shape[0] floats
  std::vector<float> imatrix;   // empty or shape[0] importance weights
  // Already-encoded bytes to copy verbatim instead of quantizing (e.g. an unchanged tensor
  // when requantizing); when non-empty, `source` is unused.
  std::span<const std::byte> passthrough;
};

struct WriteProgress {
  size_t tensor_index = 0, n_tensors = 0;
  const OutputTensor* tensor = nullptr;
  uint64_t elements_done = 0, elements_total = 0;  // over the whole model
};

struct TypeTally {
  uint64_t tensors = 0, elements = 0, bytes = 0;
};

struct WriteResult {
  uint64_t file_size = 0;
  uint64_t elements = 0;        // weights written
  uint64_t tensor_bytes = 0;    // bytes of tensor data (without padding / header)
  std::map<GgmlType, TypeTally> by_type;
  double bits_per_weight() const { return elements ? 8.0 * tensor_bytes / elements : 0.0; }
};

WriteResult write_gguf_model(const std::string& path, const GgufMetadata& meta, const std::vector<OutputTensor>& tensors,
                             int threads, const std::function<void(const WriteProgress&)>& on_progress = {});

// One file of write_gguf_models.
struct ModelFileOutput {
  std::string path;
  const GgufMetadata* metadata = nullptr;
  const std::vector<OutputTensor>* tensors = nullptr;
  // The file already opened by open_gguf_model (same path, metadata and tensors), some of its
  // tensors maybe placed: the pass writes the others into it and commits it. Null: opened here.
  GgufWriter* opened = nullptr;
};

// A model file opened before its tensors are made, for a producer that makes some of them long
// before the ones ahead of them in the file (`--optimize` rounds tensors layer by layer during
// its calibration pass, mix/optimize.h). place_tensor writes such a tensor at its final offset
// at once (checked for non-finite weights like a passthrough), so the file's bytes are never
// held in memory; write_gguf_models (ModelFileOutput::opened) then writes the rest and commits.
// The bytes are those of writing everything in order, and the output stays atomic: nothing
// appears at `path` before the commit, and the temporary file goes on error or interruption.
// Placing needs a regular-file destination (GgufWriter::can_place(): not a stream).
std::unique_ptr<GgufWriter> open_gguf_model(const std::string& path, const GgufMetadata& meta,
                                            const std::vector<OutputTensor>& tensors);
void place_tensor(GgufWriter& w, const OutputTensor& t, std::span<const std::byte> bytes);

// Several files of the same model in one pass (`convert --outtype f16 --also Q4_K_M=...`): every
// file lists the same tensor names in the same order, and tensor i of every file is quantized
// before tensor i + 1 of any, so a tensor's source is read once, while it is hot, for all the
// files, and only the tensors in flight (their outputs in every file) are held in memory. Each
// file is written and committed atomically; its bytes are those write_gguf_model writes alone.
// Progress reports tensor i of files[0] with elements summed over all files.
std::vector<WriteResult> write_gguf_models(const std::vector<ModelFileOutput>& files, int threads,
                                           const std::function<void(const WriteProgress&)>& on_progress = {});

// Tally of types and sizes of a list of tensors without writing anything (for plans).
WriteResult tally_tensors(const std::vector<OutputTensor>& tensors);

}  // namespace smolq
