// The sensitivity profile of a model for measured mixed precision (issue 9,
// docs/mixed-precision.md): for every 2-D weight t and every candidate type k
// (quantize/allocate.h), the predicted growth of the model's KL divergence from its
// full-precision self, on a calibration text, when t alone is quantized to k.
//
// Measuring all (tensor, type) pairs directly costs one forward pass each (211 tensors x ~7
// types on SmolLM2-135M: too slow on 2 cores), so most of the profile is a predictor:
//
//   ΔKLD(t, k) ≈ g(t) x E(t, k)
//   E(t, k) = Σ_i Σ_j a_j (dq_ij - w_ij)^2      activation-weighted squared quantization error
//                                               (estimated on up to 512 evenly spaced rows)
//                                               (a_j: mean square of input column j over the
//                                               calibration tokens, collected on the base pass;
//                                               1 where a tensor is no matmul input)
//   g(t)    = measured ΔKLD of t's group quantized at its reference types / Σ_{t in group} E(t, ref)
//
// This is the second-order picture: KL(P || P + dP) ≈ ½ dθᵀ F dθ, with the Fisher F of a
// linear layer's weights roughly (input second moments) x (output-side gain). E carries the
// input side exactly; g is the output side, measured. Groups are (role, band of layers): with
// band = 1 every tensor gets its own measured gain; larger models use bands so the number of
// forward passes stays under ProfileSettings::max_group_passes. The embedding matrices
// (token_embd, and output when untied; tied token_embd is the LM head too, 21% of
// SmolLM-135M) are measured directly at every candidate type.
//
// The profile checks itself and records how well it predicts: single tensors measured directly
// at a non-reference type (correlation of log predicted vs log measured, median ratio), and
// whole models with every tensor quantized (is Σ ΔKLD additive?).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "formats/ggml_types.h"
#include "formats/imatrix.h"
#include "eval/model.h"

namespace smolq {

struct ProfileSettings {
  int64_t n_ctx = 256;          // calibration tokens per chunk (every position is scored)
  int64_t n_chunks = 1;         // chunks of the calibration text
  // Gain measurements at most (layers are banded to fit): SmolLM2-135M's 30 layers x 7 roles
  // become bands of 6 layers (35 groups). Fewer, larger groups cost fewer forward passes but
  // share one gain across more layers; docs/mixed-precision.md has the measurements.
  int max_group_passes = 40;
  int n_validate = 6;           // single-tensor direct checks at a non-reference type
};

struct ProfileTensor {
  std::string name;             // GGUF name
  uint64_t rows = 0, cols = 0;
  std::vector<GgmlType> types;  // candidates, increasing bits per weight
  std::vector<double> error;    // E(t, k) per candidate
  std::vector<double> measured; // ΔKLD measured directly per candidate; < 0: not measured
  size_t ref = 0;               // index of the reference type in `types`
  int group = -1;               // index into SensitivityProfile::groups
  double gain = 0;              // g(t)
};

struct ProfileGroup {
  std::string label;            // "attn_q L0-2", "token_embd"
  std::vector<size_t> tensors;  // indices into SensitivityProfile::tensors
  double dkld = 0;              // measured ΔKLD with all members at their reference types
};

// A prediction checked against a direct measurement.
struct ProfileCheck {
  std::string what;
  double predicted = 0, measured = 0;
};

struct SensitivityProfile {
  static constexpr int kVersion = 1;  // bump when the meaning of any field changes
  uint64_t model_fp = 0;        // content hash of the model (verify/sweep_cache.h fingerprint_model)
  uint64_t calib_fp = 0;        // hash of the calibration token ids and BOS policy
  uint64_t imatrix_fp = 0;      // hash of the importance matrix used to quantize (0: none)
  uint64_t settings_fp = 0;     // hash of ProfileSettings, kVersion and the candidate rules
  std::string model_desc, calib_desc;
  ProfileSettings settings;
  bool has_imatrix = false;
  int64_t calib_positions = 0;  // scored positions per pass
  std::vector<ProfileTensor> tensors;
  std::vector<ProfileGroup> groups;
  std::vector<ProfileCheck> single_checks;
  std::vector<ProfileCheck> model_checks;
  double log_correlation = 0;   // Pearson r of log predicted vs log measured (single checks)
  double median_ratio = 0;      // median measured / predicted (single checks)
  int forward_passes = 0;
  double seconds = 0;           // wall time to build
  int threads = 0;

  // Predicted ΔKLD of tensor t at candidate k: the direct measurement when there is one.
  double predict(size_t t, size_t k) const;
  const ProfileTensor* find(const std::string& name) const;
};

struct ProfileInputs {
  std::span<const int32_t> calib_tokens;  // tokenized calibration text
  bool add_bos = false;                   // replace each chunk's first token with bos_id
  int32_t bos_id = 1;
  std::string calib_desc;
  const ImatrixData* imatrix = nullptr;   // used to quantize (as the final file will be)
  uint64_t imatrix_fp = 0;
  uint64_t model_fp = 0;
  int n_threads = 1;
};

// The settings hash a profile must carry to be reused (depends on the imatrix presence too,
// which changes the candidate list).
uint64_t profile_settings_fp(const ProfileSettings& s, bool has_imatrix);
uint64_t calib_fingerprint(std::span<const int32_t> tokens, bool add_bos, int32_t bos_id, const ProfileSettings& s);

// Measures the profile. `model` is modified temporarily (substitute_weight) and restored.
// Throws Error when the calibration text has fewer than n_ctx * n_chunks tokens.
SensitivityProfile build_profile(Model& model, const ProfileInputs& in, const ProfileSettings& s,
                                 const std::function<void(const std::string&)>& log = {});

}  // namespace smolq
