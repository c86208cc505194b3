// estimate: the memory model's terms against hand arithmetic and against the buffer sizes
// llama.cpp printed for SmolLM2-135M, predicted file sizes against files actually written,
// decode speed, and the device table.
#include <doctest/doctest.h>
#include <simdjson.h>

#include <filesystem>
#include <random>

#include "formats/gguf.h"
#include "formats/model_config.h"
#include "inspect/devices.h"
#include "inspect/estimate_report.h"
#include "inspect/memory_model.h"

using namespace smolq;
namespace fs = std::filesystem;

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

MemoryModelShape shape(uint64_t vocab, uint64_t embd, uint64_t layers, uint64_t heads, uint64_t kv_heads,
                       uint64_t head_dim, uint64_t ff) {
  return {vocab, embd, layers, heads, kv_heads, head_dim, ff, 0};
}
// models.md shapes
const MemoryModelShape k135M = shape(49152, 576, 30, 9, 3, 64, 1536);
const MemoryModelShape k360M = shape(49152, 960, 32, 15, 5, 64, 2560);
const MemoryModelShape k1_7B = shape(49152, 2048, 24, 32, 32, 64, 8192);
const MemoryModelShape k3B = shape(128256, 2048, 36, 16, 4, 128, 11008);

// A tied decoder's tensor list in one type (norms F32), as convert writes it.
std::vector<GgufPlannedTensor> decoder(const MemoryModelShape& m, GgmlType t, bool tied = true) {
  std::vector<GgufPlannedTensor> v;
  v.push_back({"token_embd.weight", {m.n_embd, m.n_vocab}, t});
  v.push_back({"output_norm.weight", {m.n_embd}, GgmlType::F32});
  if (!tied) v.push_back({"output.weight", {m.n_embd, m.n_vocab}, t});
  for (uint64_t i = 0; i < m.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    v.push_back({p + "attn_norm.weight", {m.n_embd}, GgmlType::F32});
    v.push_back({p + "attn_q.weight", {m.n_embd, m.q_dim()}, t});
    v.push_back({p + "attn_k.weight", {m.n_embd, m.kv_dim()}, t});
    v.push_back({p + "attn_v.weight", {m.n_embd, m.kv_dim()}, t});
    v.push_back({p + "attn_output.weight", {m.q_dim(), m.n_embd}, t});
    v.push_back({p + "ffn_norm.weight", {m.n_embd}, GgmlType::F32});
    v.push_back({p + "ffn_gate.weight", {m.n_embd, m.n_ff}, t});
    v.push_back({p + "ffn_up.weight", {m.n_embd, m.n_ff}, t});
    v.push_back({p + "ffn_down.weight", {m.n_ff, m.n_embd}, t});
  }
  return v;
}

RunParams run(uint64_t ctx, uint64_t ub = 512, bool fa = false, GgmlType kv = GgmlType::F16) {
  RunParams p;
  p.n_ctx = ctx;
  p.n_ubatch = ub;
  p.flash_attn = fa;
  p.kv_type = kv;
  return p;
}

double mib(uint64_t b) { return static_cast<double>(b) / kMiB; }

}  // namespace

TEST_SUITE("test_estimate") {
  TEST_CASE("KV cache per token matches models.md (f16)") {
    // 2 x layers x KV heads x head dim x 2 bytes: 22.5 / 40 / 192 / 72 KiB per token.
    const std::vector<std::pair<MemoryModelShape, double>> cases = {
        {k135M, 22.5}, {k360M, 40}, {k1_7B, 192}, {k3B, 72}};
    for (const auto& [m, kib] : cases) {
      const MemoryEstimate e = estimate_memory(m, {}, run(4096));
      CHECK(static_cast<double>(e.kv()) / 4096 / 1024 == kib);
      CHECK(e.kv_per_layer.size() == m.n_layer);
      CHECK(e.kv_k == e.kv_v);
    }
  }

  TEST_CASE("quantized KV caches use their block sizes and force flash attention") {
    const uint64_t f16 = estimate_memory(k135M, {}, run(2048)).kv();
    const MemoryEstimate q8 = estimate_memory(k135M, {}, run(2048, 512, false, GgmlType::Q8_0));
    const MemoryEstimate q4 = estimate_memory(k135M, {}, run(2048, 512, false, GgmlType::Q4_0));
    CHECK(q8.kv() * 64 == f16 * 34);  // 34 bytes per 32 elements vs 2 bytes per element
    CHECK(q4.kv() * 64 == f16 * 18);
    CHECK(q8.params.flash_attn);
    // llama.cpp printed 23.91 MiB (q8_0) and 12.66 MiB (q4_0) for 2048 cells.
    CHECK(mib(q8.kv()) == doctest::Approx(23.91).epsilon(0.001));
    CHECK(mib(q4.kv()) == doctest::Approx(12.66).epsilon(0.001));
    CHECK_THROWS_AS(estimate_memory(k135M, {}, run(2048, 512, false, GgmlType::Q4_K)), UsageError);
  }

  TEST_CASE("context is padded to 256 cells; the micro-batch never exceeds it") {
    const MemoryEstimate e = estimate_memory(k135M, {}, run(1000));
    CHECK(e.n_ctx_cells == 1024);
    CHECK(mib(e.kv()) == 22.5);  // llama.cpp: 1024 cells, 22.50 MiB
    const MemoryEstimate small = estimate_memory(k135M, {}, run(256, 512));
    CHECK(small.n_tokens == 256);
  }

  TEST_CASE("compute and output buffers reproduce llama.cpp's CPU log for SmolLM2-135M") {
    // Values llama.cpp (llama-cpp-python 0.3.36, CPU) printed when loading the Q4_1 GGUF with
    // flash attention off; the Python interop test re-measures them live.
    struct Logged {
      uint64_t ctx, ub;
      double compute_mib;
    };
    for (const Logged& l : {Logged{2048, 512, 99.38}, Logged{4096, 512, 99.38}, Logged{8192, 512, 166.38},
                            Logged{2048, 128, 24.84}, Logged{8192, 128, 41.60}, Logged{512, 512, 98.25}}) {
      CAPTURE(l.ctx);
      CAPTURE(l.ub);
      const MemoryEstimate e = estimate_memory(k135M, {}, run(l.ctx, l.ub));
      // to the printed two decimals where calibrated; 512 cells is the one case where the
      // allocator packs the output phase tighter than the model (+1.1%).
      CHECK(mib(e.compute) == doctest::Approx(l.compute_mib).epsilon(0.012));
      CHECK(mib(e.output) == doctest::Approx(0.19).epsilon(0.01));
    }
    // Which phase is the peak: logits for short contexts, KQ scores for long ones.
    CHECK(estimate_memory(k135M, {}, run(2048)).compute_parts.dominant() == "output");
    CHECK(estimate_memory(k135M, {}, run(8192)).compute_parts.dominant() == "attention");
    // Flash attention never materialises the scores.
    const MemoryEstimate fa = estimate_memory(k135M, {}, run(8192, 512, true));
    CHECK(fa.compute_parts.attention < estimate_memory(k135M, {}, run(8192)).compute_parts.attention / 10);
    CHECK(fa.compute_parts.dominant() == "output");
  }

  TEST_CASE("model buffer is the tensor bytes; total is the sum of the parts") {
    const auto tensors = decoder(k135M, GgmlType::Q8_0);
    const MemoryEstimate e = estimate_memory(k135M, tensors, run(2048));
    uint64_t sum = 0;
    for (const auto& t : tensors) sum += tensor_nbytes(t.type, t.shape, t.name);
    CHECK(e.weights == sum);
    CHECK(e.total() == e.weights + e.kv() + e.compute + e.output + e.overhead);
  }

  TEST_CASE("bytes read per token and decode speed") {
    const auto tied = decoder(k135M, GgmlType::F16, true);
    const auto untied = decoder(k135M, GgmlType::F16, false);
    uint64_t w_tied = 0;
    for (const auto& t : tied) w_tied += tensor_nbytes(t.type, t.shape, t.name);
    // Tied: the embedding is read whole as the LM head. Untied: output.weight is read whole,
    // the embedding only one row.
    const uint64_t kv_1k = 2 * 30 * 1024 * 192 * 2;
    CHECK(bytes_read_per_token(k135M, tied, GgmlType::F16, 1024) == w_tied + kv_1k);
    CHECK(bytes_read_per_token(k135M, untied, GgmlType::F16, 1024) == w_tied + 576 * 2 + kv_1k);
    // 1 GB/s, 0.55 efficiency, 1e6 bytes per token -> 550 tok/s.
    CHECK(decode_tokens_per_second(1.0, 1'000'000) == doctest::Approx(550.0));
    CHECK(decode_tokens_per_second(1008.0, 0) == 0.0);
  }

  TEST_CASE("predicted file size equals the size of the file the GGUF writer produces") {
    const fs::path dir = fs::temp_directory_path() / ("smolq-test-estimate-" + std::to_string(std::random_device{}()));
    fs::create_directories(dir);
    // A small model in mixed types, odd metadata and a non-default alignment.
    const MemoryModelShape m = shape(300, 64, 2, 4, 2, 16, 256);
    QuantCandidate c;
    c.name = "mix";
    c.alignment = 64;
    c.metadata.set("general.architecture", GgufValue::str("llama"));
    c.metadata.set("general.alignment", GgufValue::u32(64));
    c.metadata.set("tokenizer.ggml.tokens", GgufValue::string_array({"a", "bb", "ccc"}));
    c.tensors = decoder(m, GgmlType::Q8_0);
    c.tensors[3].type = GgmlType::Q4_K;   // blk.0.attn_q: rows of 64 do not fit Q4_K's 256 ...
    c.tensors[3].shape = {256, 64};       // ... so give it 256-wide rows
    c.tensors[4].type = GgmlType::F16;
    const QuantSize predicted = size_of(c);
    {
      GgufWriter w((dir / "m.gguf").string(), 64);
      for (const auto& [k, v] : c.metadata.entries())
        if (k != "general.alignment") w.metadata().set(k, v);
      for (const auto& t : c.tensors) w.add_tensor(t.name, t.shape, t.type);
      w.begin_data();
      for (const auto& t : c.tensors) {
        std::vector<std::byte> zeros(tensor_nbytes(t.type, t.shape, t.name));
        w.write_tensor(t.name, zeros);
      }
      CHECK(w.commit() == predicted.file_size);
    }
    CHECK(fs::file_size(dir / "m.gguf") == predicted.file_size);
    CHECK(predicted.n_params == [&] {
      uint64_t n = 0;
      for (const auto& t : c.tensors) n += t.shape.size() > 1 ? t.shape[0] * t.shape[1] : t.shape[0];
      return n;
    }());
    fs::remove_all(dir);
  }

  TEST_CASE("run_estimate: fits follow the usable memory; JSON parses") {
    EstimateRequest req;
    req.model = "135M shapes";
    req.shape = k135M;
    req.contexts = {512, 8192};
    QuantCandidate q;
    q.name = "Q8_0";
    q.metadata.set("general.architecture", GgufValue::str("llama"));
    q.tensors = decoder(k135M, GgmlType::Q8_0);
    req.candidates.push_back(q);
    for (const auto& d : all_devices()) req.devices.push_back(&d);
    const EstimateResult r = run_estimate(req);
    REQUIRE(r.rows.size() == 1);
    for (size_t d = 0; d < req.devices.size(); ++d)
      for (size_t ci = 0; ci < 2; ++ci)
        CHECK(r.rows[0].fits[d][ci].fits == (static_cast<double>(r.rows[0].memory[ci].total()) <= req.devices[d]->usable_bytes()));
    // Longer context: more KV bytes per token, slower decode.
    CHECK(r.rows[0].fits[0][1].tokens_per_s < r.rows[0].fits[0][0].tokens_per_s);
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    CHECK(parser.parse(render_estimate_json(r)).get(root) == simdjson::SUCCESS);
    const std::string md = render_estimate_markdown(r);
    CHECK(md.find(kDecodeFormula) != std::string::npos);
    CHECK(md.find("| Q8_0") != std::string::npos);
  }

  TEST_CASE("device table: sane rows and lookup") {
    CHECK(all_devices().size() >= 20);
    for (const auto& d : all_devices()) {
      CHECK(d.memory_gb > 0);
      CHECK(d.bandwidth_gbs > 0);
      CHECK(!d.source.empty());
      CHECK(usable_memory_fraction(d.cls) > 0);
      CHECK(usable_memory_fraction(d.cls) <= 1);
    }
    const Device* d = find_device("rtx 4090");
    REQUIRE(d);
    CHECK(d->bandwidth_gbs == 1008);
    CHECK(find_device("4090") == d);
    CHECK(find_device("RTX") == nullptr);  // ambiguous
    CHECK(find_device("no such device") == nullptr);
  }
}
