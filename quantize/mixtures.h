// Whole-model file types ("mixtures": Q4_K_M, IQ2_M, ...) and the per-tensor type each one
// gives, reproducing llama.cpp's llama_tensor_get_type / tensor_type_fallback (the version
// whose choices are recorded in shared/golden/mixtures/*.schema).
//
// A file type names a default block type plus rules that give some tensors more (or fewer)
// bits: the LM head, the token embedding, attn_v and ffn_down in selected layers, expert
// tensors... The rules are data (mixture_rules.cpp: a table of rule groups interpreted by a
// small engine in mixtures.cpp), not an if-chain. See docs/mixtures.md for the rules in prose.
//
// Choosing a type for one tensor takes three steps, as in llama.cpp:
//   1. may the tensor be quantized at all? (2-D/3-D weights only, no norms, ...)
//   2. user overrides: --token-embedding-type / --output-tensor-type, then --tensor-type
//      REGEX=TYPE (first matching pattern wins), else (unless --pure) the mixture rules;
//   3. fallback: a row (ne[0]) that is not a multiple of the type's block takes the
//      registry's fallback type (e.g. Q4_K -> Q5_0), and F16 if even that does not fit.
// Some rules depend on the position of a tensor among its kind (the i-th attn_v of n), so a
// whole model is planned at once, in llama.cpp's tensor order (layer, then name).
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/ggml_types.h"
#include "quantize/tensor_roles.h"

namespace smolq {

// llama.cpp's enum llama_ftype (GGUF key general.file_type). Gaps are retired values.
enum class FileType : uint32_t {
  kAllF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 7, kQ5_0 = 8, kQ5_1 = 9,
  kQ2_K = 10, kQ3_K_S = 11, kQ3_K_M = 12, kQ3_K_L = 13, kQ4_K_S = 14, kQ4_K_M = 15,
  kQ5_K_S = 16, kQ5_K_M = 17, kQ6_K = 18, kIQ2_XXS = 19, kIQ2_XS = 20, kQ2_K_S = 21,
  kIQ3_XS = 22, kIQ3_XXS = 23, kIQ1_S = 24, kIQ4_NL = 25, kIQ3_S = 26, kIQ3_M = 27,
  kIQ2_S = 28, kIQ2_M = 29, kIQ4_XS = 30, kIQ1_M = 31, kBF16 = 32, kTQ1_0 = 36, kTQ2_0 = 37,
  kMXFP4_MOE = 38, kNVFP4 = 39, kQ1_0 = 40, kQ2_0 = 41,
};

struct FileTypeInfo {
  FileType id;
  std::string_view name;   // as llama-quantize spells it: "Q4_K_M", "IQ2_XXS", "F16"
  GgmlType default_type;   // the type of every tensor no rule singles out
  // llama.cpp refuses to quantize the default type of this file type without an imatrix.
  // Other tensors can need one too (IQ3_XS puts IQ3_XXS on attn_q): MixturePlan says exactly.
  bool requires_imatrix;
  std::string_view summary;
};

std::span<const FileTypeInfo> all_file_types();
const FileTypeInfo& file_type_info(FileType t);
// By name (case-insensitive; llama-quantize's aliases Q3_K, Q4_K, Q5_K mean the _M mix) or
// by llama_ftype number; nullptr when unknown.
const FileTypeInfo* find_file_type(std::string_view name_or_number);
// As find_file_type, but throws UsageError listing the valid names.
FileType parse_file_type(std::string_view name_or_number);

// The model facts the rules read (llama.cpp's hparams of layer 0).
struct ModelFacts {
  std::string arch = "llama";  // GGUF general.architecture
  uint32_t n_layer = 0, n_head = 0, n_head_kv = 0, n_expert = 0;

  // Query heads per key/value head (llama.cpp's n_gqa(): 0 when n_head_kv is 0).
  uint32_t n_gqa() const { return n_head_kv == 0 ? 0 : n_head / n_head_kv; }
  // llama.cpp's LLM_TYPE_70B: an 80-layer llama with grouped-query attention.
  bool is_llama_70b() const { return arch == "llama" && n_layer == 80 && n_head != n_head_kv; }
};

// --tensor-type REGEX=TYPE: tensors whose name the (ECMAScript) regex finds get TYPE.
struct TensorTypeOverride {
  std::string pattern;  // lower-cased, as llama-quantize stores it
  GgmlType type;
};
// Parses "REGEX=TYPE" (splits at the first '='); throws UsageError.
TensorTypeOverride parse_tensor_type_override(std::string_view spec);

struct MixtureOptions {
  bool has_imatrix = false;          // some rules change when importance data is available
  bool pure = false;                 // --pure: no mixture rules, default type everywhere
  bool leave_output_tensor = false;  // --leave-output-tensor: output.weight is not requantized
  std::optional<GgmlType> output_tensor_type;    // --output-tensor-type
  std::optional<GgmlType> token_embedding_type;  // --token-embedding-type
  std::vector<TensorTypeOverride> tensor_types;  // --tensor-type, in command-line order
};

struct TensorChoice {
  GgmlType type = GgmlType::F32;  // what the tensor is written as
  bool quantized = false;         // false: copied in its source type
  // Set when the chosen type did not fit the row and `type` is its fallback.
  std::optional<GgmlType> wanted;
  bool requires_imatrix = false;  // llama.cpp will not write this tensor without an imatrix
  std::string reason;             // one line for --dry-run plans
};

// Chooses types tensor by tensor. Rules that depend on a tensor's rank among its kind keep
// counters, so call choose() once per tensor in llama.cpp's order (see tensor_order_less);
// plan_mixture does that for you.
class MixtureChooser {
 public:
  // `all_tensors`: every tensor of the model (for the attn_v count and to detect tied
  // embeddings: no "output.weight" means token_embd is also the output layer).
  MixtureChooser(FileType ftype, ModelFacts facts, MixtureOptions options,
                 std::span<const TensorShape> all_tensors);
  TensorChoice choose(const TensorShape& t);

  bool tied_embeddings() const { return tied_; }

 private:
  struct Counters {
    int attn_v = 0, ffn_down = 0, ffn_gate = 0, ffn_up = 0;
  };
  GgmlType apply_rules(const TensorShape& t, TensorRole role, GgmlType type, std::string& why);

  FileType ftype_;
  ModelFacts facts_;
  MixtureOptions options_;
  bool tied_ = true;
  int n_attn_v_ = 0;
  Counters seen_;
};

// llama.cpp's tensor order (llama_model_loader's weight_name_comparer): by the layer of a
// "blk.N." prefix (none = -1, first), then by name.
bool tensor_order_less(std::string_view a, std::string_view b);

struct PlannedTensor {
  TensorShape tensor;
  TensorChoice choice;
  uint64_t bytes = 0;  // on-disk size in the chosen type (no alignment padding)
};

struct MixturePlan {
  FileType ftype = FileType::kF16;
  std::vector<PlannedTensor> tensors;  // in the order given to plan_mixture
  uint64_t total_bytes = 0;            // sum of tensor bytes
  uint64_t total_elements = 0;         // every tensor's elements, norms included
  uint64_t source_bytes = 0;           // the same tensors in their source types
  int n_fallback = 0;                  // tensors whose chosen type did not fit their rows
  bool requires_imatrix = false;       // some tensor needs an imatrix (see TensorChoice)

  // Effective bits per weight, as llama-quantize reports it: all tensor bytes over all
  // elements, the unquantized norms included.
  double bits_per_weight() const {
    return total_elements ? 8.0 * static_cast<double>(total_bytes) / static_cast<double>(total_elements) : 0.0;
  }
};

MixturePlan plan_mixture(FileType ftype, std::span<const TensorShape> tensors, const ModelFacts& facts,
                         const MixtureOptions& options = {});

// The plan as a text table (one tensor per line, then totals), for --dry-run.
std::string format_plan(const MixturePlan& plan);

// ---------------------------------------------------------------------------------------
// The rule tables (mixture_rules.cpp). Public so docs and tests can list them.
namespace mixture {

// Conditions a rule can require; all of a rule's conditions must hold. Layer conditions
// read the tensor's position (i of n) described at Position.
enum class Cond : uint8_t {
  kAlways = 0,
  kGqa4,               // n_head / n_head_kv >= 4
  kGqa4OrExperts4,     // ... or n_expert >= 4
  kEightExperts,       // n_expert == 8 (Mixtral-style)
  kFalcon,             // arch == "falcon"
  kNotFalcon,
  kLlama70B,           // ModelFacts::is_llama_70b
  kNoImatrix,
  kHasImatrix,
  kFirstEighth,        // i < n/8
  kFirstSixteenth,     // i < n/16
  kMoreBits,           // "use_more_bits": i < n/8, i >= 7n/8, or (i - n/8) % 3 == 2
  kMiddle,             // n/8 <= i < 7n/8
  kFirstTwo,           // i < 2
  kFirstFour,          // i < 4
  kExpertStack,        // ne[2] > 1: a 3-D stack of expert matrices
  kRowNotBlockMultiple,// ne[0] is not a multiple of the current type's block
  kCurrentNotQ8_0,     // the type chosen so far is not Q8_0
  kCurrentQ3KOrQ4K,    // the type chosen so far is Q3_K or Q4_K
};

using FtypeMask = uint64_t;  // bit = llama_ftype number; 0 = any file type
using RoleMask = uint16_t;   // bit = TensorRole; 0 = any role

constexpr FtypeMask ftypes(std::initializer_list<FileType> l) {
  FtypeMask m = 0;
  for (FileType f : l) m |= FtypeMask{1} << static_cast<uint32_t>(f);
  return m;
}
constexpr RoleMask roles(std::initializer_list<TensorRole> l) {
  RoleMask m = 0;
  for (TensorRole r : l) m = static_cast<RoleMask>(m | (1u << static_cast<uint32_t>(r)));
  return m;
}

struct Rule {
  RoleMask roles;                 // 0 = any role the group accepts
  FtypeMask file_types;           // 0 = any file type the group accepts
  std::array<Cond, 3> when;       // all must hold (kAlways fills unused slots)
  std::optional<GgmlType> to;     // nullopt: keep the current type (and stop)
  std::string_view why;
};

// Where a tensor stands among its kind, for the layer conditions:
//  - attn_v-like tensors (attn_v, attn_qkv, attn_kv_b): i = how many came before, n = how
//    many the model has;
//  - ffn_down/gate/up: n = n_layer and i = how many of that role came before (kCount), or,
//    with kLayer in a model with experts, the layer number read from the name.
enum class Position : uint8_t { kCount, kLayer };

// Option that short-circuits a group's rules when the user set it.
enum class Honours : uint8_t { kNothing, kOutputTensorType, kTokenEmbeddingType };

// The first group whose roles and file types accept a tensor decides its type: its first
// matching rule, then every matching `adjust` rule in order. A tied token_embd is seen as
// the output layer. Counters advance for the roles in `counts`.
struct RuleGroup {
  std::string_view name;
  RoleMask roles;
  FtypeMask file_types;
  Position position;
  RoleMask counts;
  Honours honours;
  std::span<const Rule> rules;
  std::span<const Rule> adjust;
};

std::span<const RuleGroup> rule_groups();

// Types llama.cpp will not write without an importance matrix (tensor_requires_imatrix;
// token_embd and output are exempt, and Q2_K only counts in a Q2_K_S file).
bool type_requires_imatrix(GgmlType t, FileType ftype);

}  // namespace mixture
}  // namespace smolq
