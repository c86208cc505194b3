// The model-level quantization driver (quantize/quantize_model.h, quantize/model_writer.h):
// the policies llama-quantize applies around the kernels — requantization, importance data
// that does or does not fit the model, --include/--exclude-weights, file types that need an
// imatrix, the metadata it stamps — and the writer's guarantees: bytes independent of the
// thread count, nothing left behind by a failed write. The end-to-end checks against
// llama.cpp itself are in tests/python/test_quantize_*.py.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "formats/error.h"
#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "quantize/model_writer.h"
#include "quantize/quantize_model.h"
#include "quantize/registry.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using namespace smolq;

namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("smolq-test-qdriver-") {}
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Deterministic gaussian-ish rows: the value depends only on (seed, row, column), so any
// split of the rows across threads reads the same numbers.
RowSource gaussian_rows(uint64_t ncols, uint32_t seed) {
  return [ncols, seed](uint64_t r0, uint64_t n, std::span<float> out) {
    for (uint64_t r = 0; r < n; ++r) {
      std::mt19937 rng(seed * 1000003u + static_cast<uint32_t>(r0 + r));
      std::normal_distribution<float> g(0.0f, 0.02f);
      for (uint64_t c = 0; c < ncols; ++c) out[r * ncols + c] = g(rng);
    }
  };
}

SourceTensor f32_source(const std::string& name, std::initializer_list<uint64_t> ne, uint32_t seed) {
  SourceTensor s;
  s.shape = make_tensor(name, ne, GgmlType::F32);
  s.rows = gaussian_rows(s.shape.ne[0], seed);
  return s;
}

// A small llama with 256-wide rows (every K-quant and IQ type fits natively), untied.
struct TinyModel {
  std::vector<SourceTensor> sources;
  ModelFacts facts;
  TinyModel(int n_layer = 2, uint64_t vocab = 512) {
    facts.arch = "llama";
    facts.n_layer = static_cast<uint32_t>(n_layer);
    facts.n_head = 4;
    facts.n_head_kv = 2;
    uint32_t seed = 1;
    sources.push_back(f32_source("token_embd.weight", {256, vocab}, seed++));
    for (int l = 0; l < n_layer; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      sources.push_back(f32_source(p + "attn_norm.weight", {256}, seed++));
      sources.push_back(f32_source(p + "attn_q.weight", {256, 256}, seed++));
      sources.push_back(f32_source(p + "attn_k.weight", {256, 128}, seed++));
      sources.push_back(f32_source(p + "attn_v.weight", {256, 128}, seed++));
      sources.push_back(f32_source(p + "attn_output.weight", {256, 256}, seed++));
      sources.push_back(f32_source(p + "ffn_norm.weight", {256}, seed++));
      sources.push_back(f32_source(p + "ffn_gate.weight", {256, 512}, seed++));
      sources.push_back(f32_source(p + "ffn_up.weight", {256, 512}, seed++));
      sources.push_back(f32_source(p + "ffn_down.weight", {512, 256}, seed++));
    }
    sources.push_back(f32_source("output_norm.weight", {256}, seed++));
    sources.push_back(f32_source("output.weight", {256, vocab}, seed++));
  }
};

// An imatrix with an entry for every 2-D weight except token_embd (llama-imatrix never
// collects it: the embedding is read with get_rows, not a matrix product).
ImatrixData imatrix_for(const TinyModel& m) {
  ImatrixData d;
  d.chunk_size = 512;
  d.chunk_count = 4;
  d.datasets = {"calibration.txt"};
  for (const auto& s : m.sources) {
    if (s.shape.n_dims() < 2 || s.shape.name == "token_embd.weight") continue;
    ImatrixEntry e;
    e.counts = {2048};
    for (uint64_t c = 0; c < s.shape.ne[0]; ++c) e.sums.push_back(2048.0f * (1.0f + static_cast<float>(c % 7)));
    d.entries[s.shape.name] = e;
  }
  return d;
}

const OutputTensor& output(const QuantizePlanResult& r, const std::string& name) {
  for (const auto& o : r.outputs)
    if (o.name == name) return o;
  FAIL("no output tensor " << name);
  return r.outputs.front();
}

bool any_warning_contains(const QuantizePlanResult& r, const std::string& text) {
  for (const auto& w : r.warnings)
    if (w.find(text) != std::string::npos) return true;
  return false;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_SUITE("test_quantize_driver") {
  TEST_CASE("requantizing: refused without --allow-requantize, warned with it, unchanged tensors copied") {
    TinyModel m(1);
    // blk.0.attn_q arrives as Q4_0 (encoded bytes, as a GGUF source gives them).
    SourceTensor& q = m.sources[2];
    REQUIRE(q.shape.name == "blk.0.attn_q.weight");
    std::vector<float> rows(256 * 256);
    q.rows(0, 256, rows);
    std::vector<std::byte> encoded(*row_bytes(GgmlType::Q4_0, 256) * 256);
    quantize_rows(GgmlType::Q4_0, rows, encoded, 256);
    q.shape.source_type = GgmlType::Q4_0;
    q.encoded = encoded;
    q.rows = [&encoded](uint64_t r0, uint64_t n, std::span<float> out) {
      const uint64_t rb = *row_bytes(GgmlType::Q4_0, 256);
      dequantize_rows(GgmlType::Q4_0, std::span<const std::byte>(encoded).subspan(r0 * rb, n * rb), out);
    };

    QuantizeOptions opt;
    opt.ftype = FileType::kQ8_0;
    const std::string err = error_of([&] { plan_quantization(m.sources, m.facts, opt); });
    CHECK(err.find("--allow-requantize") != std::string::npos);
    CHECK(err.find("Q4_0 -> Q8_0") != std::string::npos);
    CHECK_THROWS_AS(plan_quantization(m.sources, m.facts, opt), UsageError);

    opt.allow_requantize = true;
    QuantizePlanResult r = plan_quantization(m.sources, m.facts, opt);
    CHECK(any_warning_contains(r, "requantizing 1 tensor(s)"));
    CHECK(output(r, "blk.0.attn_q.weight").type == GgmlType::Q8_0);
    CHECK(output(r, "blk.0.attn_q.weight").passthrough.empty());

    // A dry run shows the plan instead of failing.
    opt.allow_requantize = false;
    opt.dry_run = true;
    CHECK(any_warning_contains(plan_quantization(m.sources, m.facts, opt), "requantizing"));

    // Q4_0 into a Q4_0 file: the tensor is already what the plan wants, so its bytes are
    // copied and no permission is needed (llama.cpp: "nothing to do").
    QuantizeOptions same;
    same.ftype = FileType::kQ4_0;
    r = plan_quantization(m.sources, m.facts, same);
    const OutputTensor& o = output(r, "blk.0.attn_q.weight");
    CHECK(o.type == GgmlType::Q4_0);
    CHECK(o.passthrough.data() == encoded.data());
    CHECK_FALSE(any_warning_contains(r, "requantizing"));
  }

  TEST_CASE("an imatrix from another model is an error that names the tensor") {
    TinyModel m(2);
    ImatrixData other = imatrix_for(m);
    other.entries["blk.1.ffn_up.weight"].sums.resize(576);  // e.g. SmolLM2-135M's width
    QuantizeOptions opt;
    opt.ftype = FileType::kQ4_K_M;
    opt.imatrix = &other;
    const std::string err = error_of([&] { plan_quantization(m.sources, m.facts, opt); });
    CHECK(err.find("'blk.1.ffn_up.weight'") != std::string::npos);
    CHECK(err.find("576") != std::string::npos);
    CHECK(err.find("256") != std::string::npos);

    // llama.cpp tolerates a mismatched token_embd entry (it ignores it with a message).
    ImatrixData with_embd = imatrix_for(m);
    with_embd.entries["token_embd.weight"] = ImatrixEntry{std::vector<float>(100, 1.0f), {1}};
    opt.imatrix = &with_embd;
    QuantizePlanResult r = plan_quantization(m.sources, m.facts, opt);
    CHECK(any_warning_contains(r, "token_embd.weight"));
    CHECK(output(r, "token_embd.weight").imatrix.empty());
  }

  TEST_CASE("imatrix attachment: importance = sums / counts; coverage gaps warned, token_embd not") {
    TinyModel m(2);
    ImatrixData d = imatrix_for(m);
    d.entries.erase("blk.1.attn_k.weight");
    QuantizeOptions opt;
    opt.ftype = FileType::kQ4_K_M;
    opt.imatrix = &d;
    QuantizePlanResult r = plan_quantization(m.sources, m.facts, opt);
    const OutputTensor& q = output(r, "blk.0.attn_q.weight");
    REQUIRE(q.imatrix.size() == 256);
    CHECK(q.imatrix[0] == doctest::Approx(1.0f));
    CHECK(q.imatrix[3] == doctest::Approx(4.0f));
    CHECK(output(r, "blk.1.attn_k.weight").imatrix.empty());
    CHECK(any_warning_contains(r, "no importance data for blk.1.attn_k.weight"));
    CHECK_FALSE(any_warning_contains(r, "token_embd"));
    // Norms are not quantized and take no importance data.
    CHECK(output(r, "blk.0.attn_norm.weight").imatrix.empty());
    CHECK(r.imatrix_entries == static_cast<int>(d.entries.size()));
    CHECK(r.imatrix_used == static_cast<int>(d.entries.size()));
  }

  TEST_CASE("--include-weights / --exclude-weights match substrings, as llama-quantize does") {
    TinyModel m(12);  // layers 1 and 10..11: "blk.1." must not select blk.10 / blk.11
    ImatrixData d = imatrix_for(m);
    QuantizeOptions opt;
    opt.ftype = FileType::kQ4_K_M;
    opt.imatrix = &d;
    opt.include_weights = {"blk.1."};
    QuantizePlanResult r = plan_quantization(m.sources, m.facts, opt);
    CHECK_FALSE(output(r, "blk.1.attn_q.weight").imatrix.empty());
    CHECK(output(r, "blk.10.attn_q.weight").imatrix.empty());
    CHECK(output(r, "blk.0.attn_q.weight").imatrix.empty());
    CHECK(r.imatrix_entries == 7);  // blk.1's seven matrices
    CHECK(r.imatrix_used == 7);
    // Filtered-out tensors are not "missing" data: no coverage warning for them.
    CHECK_FALSE(any_warning_contains(r, "no importance data"));

    opt.include_weights.clear();
    opt.exclude_weights = {"ffn_down", "output"};
    r = plan_quantization(m.sources, m.facts, opt);
    CHECK(output(r, "blk.3.ffn_down.weight").imatrix.empty());
    CHECK(output(r, "output.weight").imatrix.empty());
    CHECK_FALSE(output(r, "blk.3.ffn_up.weight").imatrix.empty());
    // "output" is a substring of attn_output too: 12 ffn_down + 12 attn_output + output.
    CHECK(output(r, "blk.5.attn_output.weight").imatrix.empty());
    CHECK(r.imatrix_entries == static_cast<int>(d.entries.size()) - 25);
  }

  TEST_CASE("--include-weights with --exclude-weights is refused") {
    TinyModel m(1);
    ImatrixData d = imatrix_for(m);
    QuantizeOptions opt;
    opt.imatrix = &d;
    opt.include_weights = {"attn"};
    opt.exclude_weights = {"ffn"};
    CHECK_THROWS_AS(plan_quantization(m.sources, m.facts, opt), UsageError);
  }

  TEST_CASE("file types whose tensors need an imatrix refuse to run without one") {
    TinyModel m(2);
    for (FileType ft : {FileType::kQ2_K_S, FileType::kIQ2_XXS, FileType::kIQ1_S}) {
      CAPTURE(file_type_info(ft).name);
      QuantizeOptions opt;
      opt.ftype = ft;
      const std::string err = error_of([&] { plan_quantization(m.sources, m.facts, opt); });
      CHECK(err.find("importance matrix") != std::string::npos);
      CHECK(err.find("blk.0.") != std::string::npos);
      CHECK_THROWS_AS(plan_quantization(m.sources, m.facts, opt), UsageError);
      opt.dry_run = true;
      CHECK(any_warning_contains(plan_quantization(m.sources, m.facts, opt), "importance matrix"));
      // With the data they plan fine.
      ImatrixData d = imatrix_for(m);
      opt.dry_run = false;
      opt.imatrix = &d;
      CHECK(plan_quantization(m.sources, m.facts, opt).imatrix_used > 0);
      // Excluding a tensor's data brings the error back for that tensor.
      opt.exclude_weights = {"blk.1.ffn_up"};
      const std::string err2 = error_of([&] { plan_quantization(m.sources, m.facts, opt); });
      CHECK(err2.find("blk.1.ffn_up.weight") != std::string::npos);
      CHECK(err2.find("blk.0.") == std::string::npos);
    }
    // Q2_K itself does not need one (only the _S mix counts it as very low-bit).
    QuantizeOptions q2k;
    q2k.ftype = FileType::kQ2_K;
    CHECK_NOTHROW(plan_quantization(m.sources, m.facts, q2k));
  }

  TEST_CASE("--override-kv values take llama-quantize's GGUF types") {
    auto [k1, v1] = parse_override_kv("llama.context_length=int:4096");
    CHECK(k1 == "llama.context_length");
    CHECK(v1.type == GgufType::UINT32);
    CHECK(v1.as_u64() == 4096);
    auto [k2, v2] = parse_override_kv("x.neg=int:-7");  // llama.cpp stores |value|
    CHECK(v2.type == GgufType::UINT32);
    CHECK(v2.as_u64() == 7);
    auto [k3, v3] = parse_override_kv("x.f=float:0.25");
    CHECK(v3.type == GgufType::FLOAT32);
    CHECK(v3.as_f64() == 0.25);
    auto [k4, v4] = parse_override_kv("tokenizer.ggml.add_bos_token=bool:false");
    CHECK(v4.type == GgufType::BOOL);
    CHECK_FALSE(v4.as_bool());
    auto [k5, v5] = parse_override_kv("general.name=str:a=b:c");  // value keeps its ':' and '='
    CHECK(k5 == "general.name");
    CHECK(v5.as_string() == "a=b:c");
    for (const char* bad : {"novalue", "=int:1", "k=int", "k=int:12x", "k=int:99999999999", "k=float:", "k=bool:yes",
                            "k=u8:1"}) {
      CAPTURE(bad);
      CHECK_THROWS_AS(parse_override_kv(bad), UsageError);
    }
  }

  TEST_CASE("metadata stamped as llama-quantize stamps it") {
    TinyModel m(1);
    ImatrixData d = imatrix_for(m);
    QuantizeOptions opt;
    opt.ftype = FileType::kQ5_K_M;
    opt.imatrix = &d;
    opt.imatrix_path = "imatrix.gguf";
    opt.exclude_weights = {"attn_q"};
    opt.override_kv = {"general.name=str:renamed", "llama.context_length=int:1024"};
    QuantizePlanResult r = plan_quantization(m.sources, m.facts, opt);
    GgufMetadata meta;
    meta.set("general.name", GgufValue::str("orig"));
    meta.set("general.file_type", GgufValue::u32(1));
    meta.set("split.no", GgufValue::u16(0));
    meta.set("split.count", GgufValue::u16(2));
    stamp_quantize_metadata(meta, opt, r);
    CHECK(meta.get_u64("general.file_type") == 17);
    CHECK(meta.find("general.quantization_version")->type == GgufType::UINT32);
    CHECK(meta.get_u64("general.quantization_version") == 2);
    CHECK_FALSE(meta.has("split.no"));
    CHECK_FALSE(meta.has("split.count"));
    CHECK(meta.get_string("quantize.imatrix.file") == "imatrix.gguf");
    CHECK(meta.get_string("quantize.imatrix.dataset") == "calibration.txt");
    CHECK(meta.find("quantize.imatrix.entries_count")->type == GgufType::UINT32);
    CHECK(meta.get_u64("quantize.imatrix.entries_count") == d.entries.size() - 1);  // attn_q filtered out
    CHECK(meta.find("quantize.imatrix.chunks_count")->type == GgufType::UINT32);
    CHECK(meta.get_u64("quantize.imatrix.chunks_count") == 4);
    CHECK(meta.get_string("general.name") == "renamed");
    CHECK(meta.get_u64("llama.context_length") == 1024);
    CHECK(meta.get_string("general.quantized_by").rfind("smolq ", 0) == 0);

    // No chunk count known (0): llama-quantize leaves the key out. No entries left after
    // filtering: no quantize.imatrix.* at all.
    d.chunk_count = 0;
    GgufMetadata meta2;
    stamp_quantize_metadata(meta2, opt, r);
    CHECK_FALSE(meta2.has("quantize.imatrix.chunks_count"));
    opt.exclude_weights = {"weight"};
    QuantizePlanResult none = plan_quantization(m.sources, m.facts, opt);
    CHECK(none.imatrix_entries == 0);
    GgufMetadata meta3;
    stamp_quantize_metadata(meta3, opt, none);
    CHECK_FALSE(meta3.has("quantize.imatrix.file"));
  }

  TEST_CASE("written bytes do not depend on the thread count") {
    // 3072 rows of 256: the writer cuts 1024-row chunks (2^18 floats), so threads interleave.
    std::vector<OutputTensor> tensors;
    std::vector<float> imat(256);
    for (size_t c = 0; c < imat.size(); ++c) imat[c] = 0.5f + static_cast<float>((c * 37) % 11);
    uint32_t seed = 100;
    for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K,
                       GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS, GgmlType::IQ2_XXS, GgmlType::IQ3_S,
                       GgmlType::F16, GgmlType::BF16}) {
      if (!qtype(t).can_quantize()) continue;
      OutputTensor o;
      o.name = std::string("t.").append(type_info(t).name).append(".weight");
      o.shape = {256, 3072};
      o.type = t;
      o.source = gaussian_rows(256, seed++);
      if (t != GgmlType::F16 && t != GgmlType::BF16) o.imatrix = imat;
      tensors.push_back(std::move(o));
    }
    REQUIRE(tensors.size() >= 10);
    GgufMetadata meta;
    meta.set("general.architecture", GgufValue::str("llama"));
    TempDir dir;
    std::string first;
    for (int threads : {1, 2, 3}) {
      CAPTURE(threads);
      const std::string path = dir.file(std::to_string(threads) + "-threads.gguf");
      WriteResult w = write_gguf_model(path, meta, tensors, threads);
      CHECK(w.file_size == fs::file_size(path));
      const std::string bytes = read_bytes(path);
      if (first.empty()) first = bytes;
      else CHECK(bytes == first);
    }
    // And the same bytes on a second run (no state carried between runs).
    write_gguf_model(dir.file("again.gguf"), meta, tensors, 3);
    CHECK(read_bytes(dir.file("again.gguf")) == first);
  }

  TEST_CASE("a failed write leaves no file behind") {
    TempDir dir;
    std::vector<OutputTensor> tensors(2);
    tensors[0].name = "a.weight";
    tensors[0].shape = {256, 64};
    tensors[0].type = GgmlType::Q4_K;
    tensors[0].source = gaussian_rows(256, 7);
    tensors[1].name = "b.weight";
    tensors[1].shape = {256, 4096};
    tensors[1].type = GgmlType::Q4_K;
    tensors[1].source = [](uint64_t r0, uint64_t n, std::span<float> out) {
      if (r0 >= 2048) throw Error("source went away");
      std::fill(out.begin(), out.end(), 0.01f);
    };
    GgufMetadata meta;
    const std::string path = dir.file("out.gguf");
    const std::string err = error_of([&] { write_gguf_model(path, meta, tensors, 2); });
    CHECK(err.find("b.weight") != std::string::npos);
    CHECK(err.find("source went away") != std::string::npos);
    CHECK_FALSE(fs::exists(path));
    CHECK(dir.entries() == 0);  // no temporary file either
  }
}
