// From a size or bits-per-weight target to per-tensor types (issue 9): turns the tensors of
// the file to be written and the predicted cost of every candidate type (a sensitivity
// profile, measured in verify/) into the knapsack of quantize/allocate.h, solves it, and
// describes the result (plan table, GGUF metadata).
//
// Targets, precisely:
//   --target-size S  the whole output file — header, metadata, tensor data and the alignment
//                    padding after every tensor — is at most S bytes (GGUF pads each tensor to
//                    general.alignment, so a tensor costs align_up(bytes, alignment));
//   --target-bpw B   8 x (bytes of all tensor data, unpadded) / (elements of all tensors) <= B,
//                    norms included: the "bits per weight" llama-quantize prints and
//                    MixturePlan::bits_per_weight computes. The file is then B/8 bytes per
//                    weight plus header and padding.
// Tensors without candidates (norms) keep their planned type and count as fixed bytes.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "quantize/allocate.h"
#include "quantize/mixtures.h"

namespace smolq {

struct MixTarget {
  bool by_size = false;
  double bpw = 0;          // by_size == false
  uint64_t file_size = 0;  // by_size == true
  std::string text;        // as recorded: "4.5 bpw" or "94371840 bytes"
};
// "4.5" (bits per weight, 1 to 32). Throws UsageError.
MixTarget parse_target_bpw(const std::string& s);
// "94371840", "90MiB", "90M" (= MiB), "94.4MB", "1.5GiB", "512KiB": K/M/G with or without
// "iB" are binary; "KB"/"MB"/"GB" are decimal. Throws UsageError.
MixTarget parse_target_size(const std::string& s);

// Predicted cost of each candidate type of one tensor.
struct MixCosts {
  std::vector<GgmlType> types;
  std::vector<double> cost;  // predicted ΔKLD, nats
};

struct MixInput {
  std::vector<GgufPlannedTensor> tensors;   // every tensor of the file, in file order, with its planned type
  std::map<std::string, MixCosts> costs;    // the tensors the allocator chooses for (by name)
  uint64_t data_offset = 0;                 // header + metadata, aligned (plan_gguf_layout)
  uint32_t alignment = 32;
};

struct MixRow {
  std::string name;
  uint64_t elements = 0;
  GgmlType type = GgmlType::F32;
  uint64_t bytes = 0;       // unpadded
  double predicted = 0;     // predicted ΔKLD of this tensor at `type`
  size_t n_candidates = 0;
};

struct MixPlan {
  std::map<std::string, GgmlType> types;  // for QuantizeOptions::assigned_types
  std::vector<MixRow> rows;               // the allocated tensors, in file order
  uint64_t budget = 0;                    // bytes the allocated tensors could use
  uint64_t tensor_bytes = 0;              // all tensors, unpadded
  uint64_t elements = 0;                  // all tensors
  uint64_t file_size = 0;                 // exact, for the metadata the layout was planned with
  double predicted_kld = 0;               // Σ predicted ΔKLD
  AllocStats stats;
  FileType label = FileType::kQ8_0;       // general.file_type: the mixture named by the commonest type

  double bits_per_weight() const { return elements ? 8.0 * static_cast<double>(tensor_bytes) / elements : 0.0; }
};

// Throws UsageError when the target cannot be met (the message says the smallest possible)
// and Error when a tensor named in `costs` is not in `tensors`.
MixPlan plan_mix(const MixInput& in, const MixTarget& target);

// The GGUF keys a target-made file carries, as --override-kv specs (so `quantize` and
// `convert` stamp them the same way; strings and f32 values, whose sizes do not depend on the
// result, so the header planned before solving is the header written):
//   smolq.mix.target         str  "size 94371840 bytes" / "bpw 4.5"
//   smolq.mix.predicted_kld  f32  Σ predicted ΔKLD (nats) on the calibration text
//   smolq.mix.bpw            f32  achieved bits per weight (definition above)
//   smolq.mix.profile        str  16 hex digits: the sensitivity profile's key
//   smolq.mix.calibration    str  what the profile was measured on
std::vector<std::string> mix_metadata_kv(const MixTarget& t, const std::string& profile_id, const std::string& calib,
                                         double predicted_kld, double bpw);

// The --dry-run table: one line per allocated tensor, then the totals.
std::string format_mix_plan(const MixPlan& p, const MixTarget& t);

}  // namespace smolq
