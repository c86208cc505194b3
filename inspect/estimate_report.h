// `smolq estimate`: for every candidate quant type of one model, the exact file size (from
// the same layout function the GGUF writer uses), the memory llama.cpp will allocate at each
// context, which devices it fits and the memory-bound decode speed. This layer only does the
// arithmetic and the rendering; the caller (cli/cmd_estimate.cpp) supplies each candidate's
// tensor list with the types the quantizer's mixture rules choose, and the metadata the
// writer will write.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "inspect/devices.h"
#include "inspect/memory_model.h"

namespace smolq {

// One quant type as it would be written.
struct QuantCandidate {
  std::string name;                        // "Q4_K_M", "F16"
  GgufMetadata metadata;                   // exactly what the writer would write
  std::vector<GgufPlannedTensor> tensors;  // names, shapes, chosen types, in file order
  uint32_t alignment = 32;
  bool requires_imatrix = false;           // llama.cpp/smolq need --imatrix for this type
  int n_fallback = 0;                      // tensors whose wanted type did not fit their rows
};

struct QuantSize {
  uint64_t file_size = 0;     // bytes of the whole file
  uint64_t header_bytes = 0;  // header + metadata + tensor infos (before padding)
  uint64_t tensor_bytes = 0;  // tensor data without padding
  uint64_t n_params = 0;
  std::map<std::string, uint64_t> tensors_by_type;  // type name -> tensor count
  double effective_bpw() const;  // tensor bytes x 8 / parameters (llama.cpp's "BPW")
  double file_bpw() const;       // file bytes x 8 / parameters
};
QuantSize size_of(const QuantCandidate& c);

struct EstimateRequest {
  std::string model;                 // shown in the title
  MemoryModelShape shape;
  std::vector<QuantCandidate> candidates;
  std::vector<uint64_t> contexts;    // n_ctx values
  RunParams run;                     // n_ctx is replaced by each context
  std::vector<const Device*> devices;
  bool device_detail = false;        // one device chosen with --device: per-type table
  bool metadata_exact = true;        // false: metadata approximated (note printed)
  std::string metadata_note;
  std::vector<std::string> skipped;  // "TYPE: why this type cannot be made for this model"
};

struct DeviceFit {
  bool fits = false;
  double tokens_per_s = 0;
};

struct CandidateResult {
  std::string name;
  QuantSize size;
  bool requires_imatrix = false;
  int n_fallback = 0;
  std::vector<MemoryEstimate> memory;          // per context
  std::vector<uint64_t> bytes_per_token;       // per context
  std::vector<std::vector<DeviceFit>> fits;    // [device][context]
};

struct EstimateResult {
  EstimateRequest request;
  std::vector<CandidateResult> rows;
};

EstimateResult run_estimate(const EstimateRequest& req);
std::string render_estimate_markdown(const EstimateResult& r);
std::string render_estimate_json(const EstimateResult& r);

}  // namespace smolq
