// The data of the type mixtures: file types and the rules of llama.cpp's
// llama_tensor_get_type_impl, transcribed as tables (facts of llama.cpp's format choices).
// The engine that reads them is in mixtures.cpp; docs/mixtures.md says the same in prose.
//
// Reading a group: the first group whose roles and file types accept a tensor owns it; the
// first rule of that group whose roles, file types and conditions all match sets the type
// (nullopt = keep the current one); then every matching `adjust` rule applies in order.
// Groups and rules are in llama.cpp's order, which matters: earlier ones pre-empt later ones.
#include <array>

#include "quantize/mixtures.h"

namespace smolq {
namespace {

using F = FileType;
using G = GgmlType;
using R = TensorRole;
using C = mixture::Cond;
using mixture::ftypes;
using mixture::roles;
using mixture::Rule;
using mixture::RuleGroup;

// ---------------------------------------------------------------------------------------
// File types. Defaults are llama_ftype_get_default_type's; note IQ2_S -> iq2_xs,
// IQ2_M -> iq2_s, IQ3_XS and IQ3_M -> iq3_s, MXFP4_MOE -> mxfp4.
constexpr std::array<FileTypeInfo, 36> kFileTypes{{
    {F::kAllF32, "F32", G::F32, false, "32-bit floats, nothing quantized"},
    {F::kF16, "F16", G::F16, false, "16-bit floats"},
    {F::kQ4_0, "Q4_0", G::Q4_0, false, "4.5 bpw, 32-weight blocks; LM head q6_K"},
    {F::kQ4_1, "Q4_1", G::Q4_1, false, "5.0 bpw, 32-weight blocks; LM head q6_K"},
    {F::kQ8_0, "Q8_0", G::Q8_0, false, "8.5 bpw, 32-weight blocks"},
    {F::kQ5_0, "Q5_0", G::Q5_0, false, "5.5 bpw, 32-weight blocks; LM head q6_K"},
    {F::kQ5_1, "Q5_1", G::Q5_1, false, "6.0 bpw, 32-weight blocks; LM head q6_K"},
    {F::kQ2_K, "Q2_K", G::Q2_K, false, "q2_K mix: attn_v/attn_output/ffn_down get q3_K or more"},
    {F::kQ3_K_S, "Q3_K_S", G::Q3_K, false, "q3_K everywhere but the LM head"},
    {F::kQ3_K_M, "Q3_K_M", G::Q3_K, false, "q3_K mix: attn_v q4_K-q5_K, ffn_down q4_K-q5_K"},
    {F::kQ3_K_L, "Q3_K_L", G::Q3_K, false, "q3_K mix: attn_v, attn_output, ffn_down q5_K"},
    {F::kQ4_K_S, "Q4_K_S", G::Q4_K, false, "q4_K mix: first attn_v / ffn_down layers q5_K"},
    {F::kQ4_K_M, "Q4_K_M", G::Q4_K, false, "q4_K mix: half of attn_v and ffn_down q6_K"},
    {F::kQ5_K_S, "Q5_K_S", G::Q5_K, false, "q5_K everywhere but the LM head"},
    {F::kQ5_K_M, "Q5_K_M", G::Q5_K, false, "q5_K mix: half of attn_v and ffn_down q6_K"},
    {F::kQ6_K, "Q6_K", G::Q6_K, false, "q6_K everywhere"},
    {F::kIQ2_XXS, "IQ2_XXS", G::IQ2_XXS, true, "2.06 bpw mix; needs an imatrix"},
    {F::kIQ2_XS, "IQ2_XS", G::IQ2_XS, true, "2.31 bpw mix; needs an imatrix"},
    {F::kQ2_K_S, "Q2_K_S", G::Q2_K, true, "q2_K with fewer upgrades; needs an imatrix"},
    {F::kIQ3_XS, "IQ3_XS", G::IQ3_S, false, "iq3_s mix with iq3_xxs attn_q/attn_k and middle FFN"},
    {F::kIQ3_XXS, "IQ3_XXS", G::IQ3_XXS, true, "3.06 bpw mix; needs an imatrix"},
    {F::kIQ1_S, "IQ1_S", G::IQ1_S, true, "1.56 bpw mix; needs an imatrix"},
    {F::kIQ4_NL, "IQ4_NL", G::IQ4_NL, false, "4.5 bpw non-linear, 32-weight blocks"},
    {F::kIQ3_S, "IQ3_S", G::IQ3_S, false, "3.44 bpw"},
    {F::kIQ3_M, "IQ3_M", G::IQ3_S, false, "iq3_s mix: attn_v, attn_output, early ffn_down q4_K"},
    {F::kIQ2_S, "IQ2_S", G::IQ2_XS, true, "iq2_xs mix with iq3_s upgrades; needs an imatrix"},
    {F::kIQ2_M, "IQ2_M", G::IQ2_S, true, "iq2_s mix with iq3_s upgrades; needs an imatrix"},
    {F::kIQ4_XS, "IQ4_XS", G::IQ4_XS, false, "4.25 bpw non-linear"},
    {F::kIQ1_M, "IQ1_M", G::IQ1_M, true, "1.75 bpw mix; needs an imatrix"},
    {F::kBF16, "BF16", G::BF16, false, "bfloat16"},
    {F::kTQ1_0, "TQ1_0", G::TQ1_0, false, "1.69 bpw ternary (for ternary-trained models)"},
    {F::kTQ2_0, "TQ2_0", G::TQ2_0, false, "2.06 bpw ternary (for ternary-trained models)"},
    {F::kMXFP4_MOE, "MXFP4_MOE", G::MXFP4, false, "mxfp4 experts, q8_0 for everything else"},
    {F::kNVFP4, "NVFP4", G::NVFP4, false, "nvfp4 (recent; no snapshot coverage)"},
    {F::kQ1_0, "Q1_0", G::Q1_0, false, "1.125 bpw (recent; no snapshot coverage)"},
    {F::kQ2_0, "Q2_0", G::Q2_0, false, "2.25 bpw (recent; no snapshot coverage)"},
}};

// ---------------------------------------------------------------------------------------
// Frequently used sets.

// The very-low-bit family that shares one block of rules (llama.cpp tests these six
// together; IQ3_XXS joins them for the output layer only).
constexpr auto kIq2Family = ftypes({F::kIQ2_XXS, F::kIQ2_XS, F::kIQ1_S, F::kIQ2_S, F::kIQ2_M, F::kIQ1_M});
constexpr auto kIq2SM = ftypes({F::kIQ2_S, F::kIQ2_M});
// attn_v and the tensors that play its part: a fused QKV, and MLA's key/value expansion.
constexpr auto kAttnVLike = roles({R::kAttnV, R::kAttnQkv, R::kAttnKvB});
constexpr auto kFfn = roles({R::kFfnDown, R::kFfnGate, R::kFfnUp});

// ---------------------------------------------------------------------------------------
// Output layer, and the token embedding when it doubles as the output layer (tied).
constexpr std::array<Rule, 5> kOutputRules{{
    {0, ftypes({F::kMXFP4_MOE}), {}, G::Q8_0, "MXFP4_MOE keeps non-expert tensors at q8_0"},
    {0, 0, {C::kFalcon}, G::Q8_0, "Falcon's output layer is q8_0"},
    {0, 0, {C::kRowNotBlockMultiple}, G::Q8_0, "row length not a multiple of the default type's block: q8_0"},
    {0, ftypes({F::kIQ2_XXS, F::kIQ2_XS, F::kIQ3_XXS, F::kIQ1_S, F::kIQ2_S, F::kIQ2_M, F::kIQ1_M}), {}, G::Q5_K,
     "very-low-bit file: output layer q5_K"},
    {0, 0, {C::kCurrentNotQ8_0}, G::Q6_K, "output layer q6_K"},
}};

// MXFP4_MOE: experts (3-D stacks) mxfp4, everything else q8_0.
constexpr std::array<Rule, 2> kMxfp4MoeRules{{
    {0, 0, {C::kExpertStack}, G::MXFP4, "expert stack: mxfp4"},
    {0, 0, {}, G::Q8_0, "not an expert stack: q8_0"},
}};

// Token embedding of a model with a separate output layer.
constexpr std::array<Rule, 4> kTokenEmbdRules{{
    {0, ftypes({F::kIQ2_XXS, F::kIQ2_XS, F::kIQ1_S, F::kIQ1_M}), {}, G::Q2_K, "token embedding q2_K"},
    {0, kIq2SM, {}, G::IQ3_S, "token embedding iq3_s"},
    {0, ftypes({F::kIQ3_XXS}), {}, G::IQ3_S, "token embedding iq3_s"},
    {0, ftypes({F::kTQ1_0, F::kTQ2_0, F::kQ2_0}), {}, G::Q4_K, "ternary file: token embedding q4_K"},
}};

// The IQ1/IQ2 family: every other tensor. ffn_down positions here are plain counts.
constexpr std::array<Rule, 9> kIq2Rules{{
    {kAttnVLike, 0, {C::kGqa4OrExperts4}, G::Q4_K, "attn_v with GQA >= 4 or >= 4 experts: q4_K"},
    {kAttnVLike, kIq2SM, {}, G::IQ3_S, "attn_v iq3_s"},
    {kAttnVLike, 0, {}, G::Q2_K, "attn_v q2_K"},
    {roles({R::kAttnK}), 0, {C::kEightExperts}, G::Q4_K, "8-expert model: attn_k q4_K"},
    {roles({R::kFfnDown}), kIq2SM, {C::kFirstEighth}, G::IQ3_S, "first eighth of ffn_down: iq3_s"},
    {roles({R::kFfnDown}), 0, {C::kFirstEighth}, G::Q2_K, "first eighth of ffn_down: q2_K"},
    {roles({R::kAttnOutput}), 0, {C::kEightExperts}, G::Q5_K, "8-expert model: attn_output q5_K"},
    {roles({R::kAttnOutput}), ftypes({F::kIQ1_S, F::kIQ1_M}), {}, G::IQ2_XXS, "attn_output iq2_xxs"},
    {roles({R::kAttnOutput}), kIq2SM, {}, G::IQ3_S, "attn_output iq3_s"},
}};

// attn_v-like tensors in every other quantized file type.
constexpr std::array<Rule, 14> kAttnVRules{{
    {0, ftypes({F::kQ2_K}), {C::kGqa4}, G::Q4_K, "attn_v with GQA >= 4: q4_K"},
    {0, ftypes({F::kQ2_K}), {}, G::Q3_K, "attn_v q3_K"},
    {0, ftypes({F::kQ2_K_S}), {C::kGqa4}, G::Q4_K, "attn_v with GQA >= 4: q4_K"},
    {0, ftypes({F::kIQ3_XXS}), {C::kGqa4}, G::Q4_K, "attn_v with GQA >= 4: q4_K"},
    {0, ftypes({F::kIQ3_XXS}), {C::kNoImatrix}, G::IQ3_S, "attn_v without imatrix: iq3_s"},
    {0, ftypes({F::kIQ3_XXS}), {}, G::IQ3_XXS, "attn_v with imatrix: iq3_xxs"},
    {0, ftypes({F::kIQ3_XS, F::kIQ3_S}), {C::kGqa4}, G::Q4_K, "attn_v with GQA >= 4: q4_K"},
    {0, ftypes({F::kIQ3_M}), {}, G::Q4_K, "attn_v q4_K"},
    {0, ftypes({F::kQ3_K_M}), {C::kFirstTwo}, G::Q5_K, "first two attn_v: q5_K"},
    {0, ftypes({F::kQ3_K_M}), {}, G::Q4_K, "attn_v q4_K"},
    {0, ftypes({F::kQ3_K_L}), {}, G::Q5_K, "attn_v q5_K"},
    {0, ftypes({F::kIQ4_NL, F::kIQ4_XS}), {C::kGqa4}, G::Q5_K, "attn_v with GQA >= 4: q5_K"},
    {0, ftypes({F::kQ4_K_M, F::kQ5_K_M}), {C::kMoreBits}, G::Q6_K,
     "attn_v in a more-bits layer (first/last eighth, every third between): q6_K"},
    {0, ftypes({F::kQ4_K_S}), {C::kFirstFour}, G::Q5_K, "first four attn_v: q5_K"},
}};
constexpr std::array<Rule, 2> kAttnVAdjust{{
    // 8 query heads share each attn_v row in Llama-70B, so attn_v is 1/8 of attn_q's size:
    // more bits there cost little.
    {0, 0, {C::kLlama70B, C::kCurrentQ3KOrQ4K}, G::Q5_K, "Llama-70B: attn_v raised to q5_K"},
    {0, 0, {C::kEightExperts}, G::Q8_0, "8-expert model: attn_v q8_0"},
}};

constexpr std::array<Rule, 3> kAttnKRules{{
    {0, 0, {C::kEightExperts}, G::Q8_0, "8-expert model: attn_k q8_0"},
    {0, ftypes({F::kIQ3_XS}), {}, G::IQ3_XXS, "attn_k iq3_xxs"},
    {0, ftypes({F::kIQ3_XXS}), {}, G::IQ2_S, "attn_k iq2_s"},
}};

constexpr std::array<Rule, 2> kAttnQRules{{
    {0, ftypes({F::kIQ3_XS}), {}, G::IQ3_XXS, "attn_q iq3_xxs"},
    {0, ftypes({F::kIQ3_XXS}), {}, G::IQ2_S, "attn_q iq2_s"},
}};

// ffn_down; positions are layers (read from the name in expert models).
constexpr std::array<Rule, 21> kFfnDownRules{{
    {0, ftypes({F::kQ2_K}), {}, G::Q3_K, "ffn_down q3_K"},
    {0, ftypes({F::kQ2_K_S}), {C::kFirstEighth}, G::Q4_K, "first eighth of ffn_down: q4_K"},
    {0, ftypes({F::kIQ3_XXS}), {C::kNoImatrix, C::kFirstEighth}, G::Q4_K,
     "first eighth of ffn_down, no imatrix: q4_K"},
    {0, ftypes({F::kIQ3_XXS}), {C::kNoImatrix}, G::Q3_K, "ffn_down without imatrix: q3_K"},
    {0, ftypes({F::kQ3_K_M}), {C::kFirstSixteenth}, G::Q5_K, "first sixteenth of ffn_down: q5_K"},
    {0, ftypes({F::kQ3_K_M}), {C::kNotFalcon}, G::Q4_K, "ffn_down q4_K"},
    {0, ftypes({F::kQ3_K_M}), {C::kMoreBits}, G::Q4_K, "Falcon ffn_down in a more-bits layer: q4_K"},
    {0, ftypes({F::kQ3_K_M}), {}, G::Q3_K, "Falcon ffn_down q3_K"},
    {0, ftypes({F::kIQ3_M}), {C::kFirstEighth}, G::Q4_K, "first eighth of ffn_down: q4_K"},
    {0, ftypes({F::kIQ3_M}), {C::kEightExperts, C::kMoreBits}, G::Q4_K,
     "8-expert model, ffn_down in a more-bits layer: q4_K"},
    {0, ftypes({F::kQ3_K_L}), {C::kFalcon}, G::Q4_K, "Falcon ffn_down q4_K"},
    {0, ftypes({F::kQ3_K_L}), {}, G::Q5_K, "ffn_down q5_K"},
    {0, ftypes({F::kQ4_K_M}), {C::kFalcon, C::kFirstSixteenth}, G::Q6_K, "Falcon: first sixteenth of ffn_down q6_K"},
    {0, ftypes({F::kQ4_K_M}), {C::kFalcon, C::kMoreBits}, G::Q5_K, "Falcon: more-bits ffn_down q5_K"},
    {0, ftypes({F::kQ4_K_M}), {C::kFalcon}, G::Q4_K, "Falcon ffn_down q4_K"},
    {0, ftypes({F::kQ4_K_M}), {C::kMoreBits}, G::Q6_K,
     "ffn_down in a more-bits layer (first/last eighth, every third between): q6_K"},
    {0, ftypes({F::kIQ4_NL, F::kIQ4_XS}), {C::kFirstEighth, C::kNoImatrix}, G::Q5_K,
     "first eighth of ffn_down, no imatrix: q5_K"},
    {0, ftypes({F::kQ5_K_M}), {C::kMoreBits}, G::Q6_K,
     "ffn_down in a more-bits layer (first/last eighth, every third between): q6_K"},
    {0, ftypes({F::kQ4_K_S}), {C::kNotFalcon, C::kFirstEighth}, G::Q5_K, "first eighth of ffn_down: q5_K"},
    // Only with an imatrix, so that a file made without one is what it always was; Q4_1 and
    // Q5_1 themselves misbehave on ffn_down without an imatrix.
    {0, ftypes({F::kQ4_0}), {C::kHasImatrix, C::kFirstEighth}, G::Q4_1, "first eighth of ffn_down with imatrix: q4_1"},
    {0, ftypes({F::kQ5_0}), {C::kHasImatrix, C::kFirstEighth}, G::Q5_1, "first eighth of ffn_down with imatrix: q5_1"},
}};

constexpr std::array<Rule, 8> kAttnOutputRules{{
    {0, ftypes({F::kQ3_K_L}), {C::kFalcon}, G::Q4_K, "Falcon attn_output q4_K"},
    {0, 0, {C::kFalcon}, std::nullopt, "Falcon attn_output keeps the default"},
    {0,
     ftypes({F::kQ2_K, F::kIQ3_XS, F::kIQ3_XXS, F::kQ3_K_S, F::kQ3_K_M, F::kIQ4_NL, F::kQ4_K_S, F::kQ4_K_M,
             F::kIQ3_S, F::kIQ3_M, F::kIQ4_XS}),
     {C::kEightExperts}, G::Q5_K, "8-expert model: attn_output q5_K"},
    {0, 0, {C::kEightExperts}, std::nullopt, "8-expert model: attn_output keeps the default"},
    {0, ftypes({F::kQ2_K}), {}, G::Q3_K, "attn_output q3_K"},
    {0, ftypes({F::kIQ3_XXS}), {}, G::IQ3_S, "attn_output iq3_s"},
    {0, ftypes({F::kQ3_K_M, F::kIQ3_M}), {}, G::Q4_K, "attn_output q4_K"},
    {0, ftypes({F::kQ3_K_L}), {}, G::Q5_K, "attn_output q5_K"},
}};
// llama.cpp also has attn_qkv rules here (Q3_K_M/L, IQ3_M -> q4_K, Q4_K_M -> q5_K, Q5_K_M ->
// q6_K), but attn_qkv is attn_v-like and the attn_v group takes it first: they never fire.

constexpr std::array<Rule, 1> kFfnGateUpRules{{
    {0, ftypes({F::kIQ3_XS}), {C::kMiddle}, G::IQ3_XXS, "ffn_gate/up outside the first and last eighth: iq3_xxs"},
}};

constexpr std::array<RuleGroup, 10> kGroups{{
    {"output", roles({R::kOutput}), 0, mixture::Position::kCount, 0, mixture::Honours::kOutputTensorType,
     kOutputRules, {}},
    {"mxfp4_moe", 0, ftypes({F::kMXFP4_MOE}), mixture::Position::kCount, 0, mixture::Honours::kNothing,
     kMxfp4MoeRules, {}},
    {"token_embd", roles({R::kTokenEmbd}), 0, mixture::Position::kCount, 0, mixture::Honours::kTokenEmbeddingType,
     kTokenEmbdRules, {}},
    {"iq1/iq2", 0, kIq2Family, mixture::Position::kCount, static_cast<mixture::RoleMask>(kAttnVLike | roles({R::kFfnDown})),
     mixture::Honours::kNothing, kIq2Rules, {}},
    {"attn_v", kAttnVLike, 0, mixture::Position::kCount, kAttnVLike, mixture::Honours::kNothing, kAttnVRules,
     kAttnVAdjust},
    {"attn_k", roles({R::kAttnK}), 0, mixture::Position::kCount, 0, mixture::Honours::kNothing, kAttnKRules, {}},
    {"attn_q", roles({R::kAttnQ}), 0, mixture::Position::kCount, 0, mixture::Honours::kNothing, kAttnQRules, {}},
    {"ffn_down", roles({R::kFfnDown}), 0, mixture::Position::kLayer, roles({R::kFfnDown}), mixture::Honours::kNothing,
     kFfnDownRules, {}},
    {"attn_output", roles({R::kAttnOutput}), 0, mixture::Position::kCount, 0, mixture::Honours::kNothing,
     kAttnOutputRules, {}},
    {"ffn_gate/up", roles({R::kFfnGate, R::kFfnUp}), 0, mixture::Position::kLayer,
     roles({R::kFfnGate, R::kFfnUp}), mixture::Honours::kNothing, kFfnGateUpRules, {}},
}};

// tensor_requires_imatrix: the types whose quantizers give garbage without importance data.
constexpr std::array<G, 6> kImatrixTypes{G::IQ3_XXS, G::IQ2_XXS, G::IQ2_XS, G::IQ2_S, G::IQ1_M, G::IQ1_S};

}  // namespace

std::span<const FileTypeInfo> all_file_types() { return kFileTypes; }

namespace mixture {

std::span<const RuleGroup> rule_groups() { return kGroups; }

bool type_requires_imatrix(GgmlType t, FileType ftype) {
  for (G x : kImatrixTypes)
    if (x == t) return true;
  // Q2_K is fine without an imatrix except as the bulk of a Q2_K_S file.
  return t == G::Q2_K && ftype == F::kQ2_K_S;
}

}  // namespace mixture
}  // namespace smolq
