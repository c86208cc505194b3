// Importance matrices: llama.cpp's two file formats (round trips, on-disk facts, merging,
// corrupt files) and the collector on a real tiny model.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "formats/error.h"
#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "eval/forward_kernels.h"
#include "eval/imatrix.h"
#include "eval/model.h"

#include "temp_dir.h"

namespace fs = std::filesystem;
using namespace smolq;

namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("smolq-test-imatrix-") {}
};

ImatrixData sample(int32_t chunk_size = 512) {
  ImatrixData d;
  d.chunk_size = chunk_size;
  d.chunk_count = 3;
  d.datasets = {"wiki.train.raw"};
  ImatrixEntry a;
  a.sums = {3072.0f, 1536.0f, 0.5f, 7.0f};
  a.counts = {1536};
  d.entries["blk.0.attn_q.weight"] = a;
  ImatrixEntry b;  // two "expert" matrices, one never reached
  b.sums = {10.0f, 20.0f, 0.0f, 0.0f};
  b.counts = {5, 0};
  d.entries["blk.0.ffn_down_exps.weight"] = b;
  return d;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string i32(int32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }

}  // namespace

TEST_SUITE("test_imatrix") {
  TEST_CASE("importance = sums / counts, 1 for matrices without data") {
    const ImatrixData d = sample();
    CHECK(d.find("blk.0.attn_q.weight")->importance() == std::vector<float>{2.0f, 1.0f, 0.5f / 1536, 7.0f / 1536});
    CHECK(d.find("blk.0.ffn_down_exps.weight")->importance() == std::vector<float>{2.0f, 4.0f, 1.0f, 1.0f});
    CHECK(d.find("blk.1.attn_q.weight") == nullptr);
  }

  TEST_CASE("GGUF format: round trip and llama.cpp's on-disk layout") {
    TempDir tmp;
    const ImatrixData d = sample();
    write_imatrix_gguf(tmp.file("m.gguf"), d);
    CHECK(detect_imatrix_format(tmp.file("m.gguf")) == ImatrixFormat::Gguf);
    const ImatrixData r = read_imatrix(tmp.file("m.gguf"));
    CHECK_FALSE(r.legacy);
    CHECK(r.datasets == d.datasets);
    CHECK(r.chunk_count == 3);
    CHECK(r.chunk_size == 512);
    REQUIRE(r.entries.size() == 2);
    for (const auto& [name, e] : d.entries) {
      CHECK(r.find(name)->sums == e.sums);
      CHECK(r.find(name)->counts == e.counts);
    }
    auto g = GgufReader::open(tmp.file("m.gguf"));
    CHECK(g->metadata().get_string("general.type") == "imatrix");
    CHECK(g->metadata().find("imatrix.chunk_count")->type == GgufType::UINT32);
    // Sorted by name, in_sum2 before counts; trailing 1-dims dropped as ggml writes them.
    REQUIRE(g->tensors().size() == 4);
    CHECK(g->tensors()[0].name == "blk.0.attn_q.weight.in_sum2");
    CHECK(g->tensors()[0].shape == std::vector<uint64_t>{4});
    CHECK(g->tensors()[1].name == "blk.0.attn_q.weight.counts");
    CHECK(g->tensors()[1].shape == std::vector<uint64_t>{1});
    CHECK(g->tensors()[2].shape == std::vector<uint64_t>{2, 2});
    CHECK(g->tensors()[3].shape == std::vector<uint64_t>{1, 2});
  }

  TEST_CASE("legacy .dat format: mean * ncall values, trailer, round trip") {
    TempDir tmp;
    ImatrixData d = sample();
    d.entries.erase("blk.0.ffn_down_exps.weight");
    write_imatrix_dat(tmp.file("m.dat"), d);
    const std::string bytes = read_bytes(tmp.file("m.dat"));
    // ncall = ceil(1536 / 512) = 3; values = sum / count * 3.
    std::string expect = i32(1) + i32(19) + "blk.0.attn_q.weight" + i32(3) + i32(4);
    for (float v : {2.0f * 3, 1.0f * 3, 0.5f / 1536 * 3, 7.0f / 1536 * 3}) expect.append(reinterpret_cast<const char*>(&v), 4);
    expect += i32(3) + i32(14) + "wiki.train.raw";
    CHECK(bytes == expect);
    CHECK(detect_imatrix_format(tmp.file("m.dat")) == ImatrixFormat::Dat);
    const ImatrixData r = read_imatrix(tmp.file("m.dat"));
    CHECK(r.legacy);
    CHECK(r.chunk_count == 3);
    CHECK(r.datasets == std::vector<std::string>{"wiki.train.raw"});
    const auto imp = r.find("blk.0.attn_q.weight")->importance();
    const auto want = d.find("blk.0.attn_q.weight")->importance();
    for (size_t i = 0; i < imp.size(); ++i) CHECK(imp[i] == doctest::Approx(want[i]).epsilon(1e-6));
    // Legacy data is written back as read.
    write_imatrix_dat(tmp.file("m2.dat"), r);
    CHECK(read_bytes(tmp.file("m2.dat")) == bytes);
    CHECK_THROWS_AS(write_imatrix_gguf(tmp.file("x.gguf"), r), Error);
  }

  TEST_CASE("merging follows llama-imatrix --in-file") {
    ImatrixData acc;
    ImatrixData a = sample();
    merge_imatrix(acc, a, 512);
    merge_imatrix(acc, a, 512);
    CHECK(acc.find("blk.0.attn_q.weight")->sums[0] == 6144.0f);
    CHECK(acc.find("blk.0.attn_q.weight")->counts[0] == 3072);
    CHECK(acc.chunk_count == 6);  // max count 3072 / 512
    CHECK(acc.datasets.size() == 2);
    // Legacy: values (mean * ncall) and ncall are scaled by the chunk size.
    ImatrixData legacy;
    legacy.legacy = true;
    legacy.entries["blk.0.attn_q.weight"] = {{6.0f, 3.0f, 0.0f, 0.0f}, {3}};
    ImatrixData acc2;
    merge_imatrix(acc2, legacy, 512);
    CHECK(acc2.find("blk.0.attn_q.weight")->sums[0] == 3072.0f);
    CHECK(acc2.find("blk.0.attn_q.weight")->counts[0] == 1536);
    CHECK(acc2.find("blk.0.attn_q.weight")->importance()[0] == 2.0f);
    ImatrixData wrong;
    wrong.entries["blk.0.attn_q.weight"] = {{1.0f, 2.0f}, {1}};
    CHECK_THROWS_AS(merge_imatrix(acc, wrong, 512), Error);
  }

  TEST_CASE("corrupt and foreign files raise FormatError") {
    TempDir tmp;
    const ImatrixData d = [] {
      ImatrixData x = sample();
      x.entries.erase("blk.0.ffn_down_exps.weight");
      return x;
    }();
    write_imatrix_dat(tmp.file("ok.dat"), d);
    const std::string ok = read_bytes(tmp.file("ok.dat"));
    const std::vector<std::pair<std::string, std::string>> bad{
        {"empty", ""},
        {"short", ok.substr(0, 3)},
        {"zero entries", i32(0)},
        {"huge entry count", i32(1 << 30)},
        {"truncated name", ok.substr(0, 12)},
        {"negative name length", i32(1) + i32(-5)},
        {"truncated values", ok.substr(0, 40)},
        {"zero values", i32(1) + i32(1) + "a" + i32(1) + i32(0)},
        {"huge value count", i32(1) + i32(1) + "a" + i32(1) + i32(1 << 30)},
        {"dataset beyond end", ok.substr(0, ok.size() - 14) + "wiki"},
        {"garbage after trailer", ok + "xyz"},
        {"nan value", i32(1) + i32(1) + "a" + i32(1) + i32(1) + std::string("\x00\x00\xc0\x7f", 4)},
    };
    for (const auto& [what, bytes] : bad) {
      CAPTURE(what);
      write_bytes(tmp.file("bad.dat"), bytes);
      CHECK_THROWS_AS(read_imatrix(tmp.file("bad.dat")), FormatError);
    }
    // GGUF files that are not imatrices, or break the pairing rules.
    auto gguf = [&](const std::string& name, auto fill) {
      GgufWriter w(tmp.file(name));
      fill(w);
      return tmp.file(name);
    };
    const std::vector<float> four{1, 2, 3, 4}, one{1}, three{1, 2, 3};
    auto bytes = [](const std::vector<float>& v) { return std::as_bytes(std::span<const float>(v)); };
    CHECK_THROWS_AS(read_imatrix(gguf("model.gguf", [&](GgufWriter& w) {
                      w.metadata().set("general.type", GgufValue::str("model"));
                      w.add_tensor("a.in_sum2", {4}, GgmlType::F32);
                      w.add_tensor("a.counts", {1}, GgmlType::F32);
                      w.begin_data();
                      w.write_tensor("a.in_sum2", bytes(four));
                      w.write_tensor("a.counts", bytes(one));
                      w.commit();
                    })),
                    FormatError);
    CHECK_THROWS_AS(read_imatrix(gguf("nocounts.gguf", [&](GgufWriter& w) {
                      w.add_tensor("a.in_sum2", {4}, GgmlType::F32);
                      w.begin_data();
                      w.write_tensor("a.in_sum2", bytes(four));
                      w.commit();
                    })),
                    FormatError);
    CHECK_THROWS_AS(read_imatrix(gguf("split.gguf", [&](GgufWriter& w) {
                      w.add_tensor("a.in_sum2", {4}, GgmlType::F32);
                      w.add_tensor("a.counts", {3}, GgmlType::F32);
                      w.begin_data();
                      w.write_tensor("a.in_sum2", bytes(four));
                      w.write_tensor("a.counts", bytes(three));
                      w.commit();
                    })),
                    FormatError);
    CHECK_THROWS_AS(read_imatrix(gguf("weights.gguf", [&](GgufWriter& w) {
                      w.add_tensor("token_embd.weight", {4}, GgmlType::F32);
                      w.begin_data();
                      w.write_tensor("token_embd.weight", bytes(four));
                      w.commit();
                    })),
                    FormatError);
    CHECK_THROWS_AS(read_imatrix(gguf("empty.gguf", [&](GgufWriter& w) {
                      w.begin_data();
                      w.commit();
                    })),
                    FormatError);
  }

  TEST_CASE("collector on stories260K: llama.cpp's tensor set, counts, and the sums themselves") {
    auto m = Model::open(std::string(SMOLQ_SHARED_DIR) + "/assets/stories260K/hf");
    std::vector<int32_t> toks;
    std::mt19937 rng(3);
    for (int i = 0; i < 100; ++i) toks.push_back(static_cast<int32_t>(rng() % 512));
    EvalOptions o;
    o.n_ctx = 32;
    o.n_batch = 32;
    o.add_bos = true;
    o.bos_id = 1;
    o.n_threads = 2;
    ImatrixCollector c1(/*process_output=*/true, 2);
    const PerplexityResult r = collect_imatrix(*m, toks, o, c1);
    CHECK(r.n_chunks == 3);
    CHECK(r.stats.count() == 3 * 15);
    const ImatrixData d = c1.data({"calib.txt"}, 32);
    // 5 layers x 7 matrices; the tied output projection (token_embd) is never collected.
    CHECK(d.entries.size() == 35);
    CHECK(d.find("output.weight") == nullptr);
    CHECK(d.find("token_embd.weight") == nullptr);
    CHECK(d.chunk_count == 3);
    CHECK(d.datasets == std::vector<std::string>{"calib.txt"});
    for (const auto& [name, e] : d.entries) {
      CAPTURE(name);
      CHECK(e.counts == std::vector<int64_t>{96});
      CHECK(e.n_cols() == (name.find("ffn_down") != std::string::npos ? 172u : 64u));
    }
    const auto& q = d.find("blk.2.attn_q.weight")->sums;
    CHECK(q == d.find("blk.2.attn_k.weight")->sums);
    CHECK(q == d.find("blk.2.attn_v.weight")->sums);
    CHECK(d.find("blk.2.ffn_gate.weight")->sums == d.find("blk.2.ffn_up.weight")->sums);
    // Layer 0's attention input is rms_norm(embedding) * attn_norm: check the sums directly.
    std::vector<double> ref(64, 0.0);
    std::vector<float> e(64), h(64);
    for (int c = 0; c < 3; ++c)
      for (int t = 0; t < 32; ++t) {
        const int tok = t == 0 ? 1 : toks[c * 32 + t];
        m->tok_embd().dequantize_row(static_cast<uint64_t>(tok), e.data());
        rms_norm(e.data(), m->layer(0).attn_norm.data(), h.data(), 64, static_cast<float>(m->config().rms_eps));
        for (int i = 0; i < 64; ++i) ref[i] += static_cast<double>(h[i]) * h[i];
      }
    const auto& s0 = d.find("blk.0.attn_q.weight")->sums;
    for (int i = 0; i < 64; ++i) CHECK(s0[i] == doctest::Approx(ref[i]).epsilon(1e-6));
    // Thread count does not change anything.
    ImatrixCollector c2(true, 1);
    o.n_threads = 1;
    collect_imatrix(*m, toks, o, c2);
    const ImatrixData d2 = c2.data({"calib.txt"}, 32);
    for (const auto& [name, en] : d.entries) CHECK(d2.find(name)->sums == en.sums);
    // Merging the run into itself doubles sums and counts.
    ImatrixCollector c3(true, 2);
    c3.merge(d, 32);
    collect_imatrix(*m, toks, o, c3);
    const ImatrixData d3 = c3.data({"calib.txt"}, 32);
    CHECK(d3.find("blk.0.attn_q.weight")->counts[0] == 192);
    CHECK(d3.chunk_count == 6);
    CHECK(d3.datasets == std::vector<std::string>{"calib.txt", "calib.txt"});
    CHECK(d3.find("blk.0.attn_q.weight")->importance()[5] == doctest::Approx(d.find("blk.0.attn_q.weight")->importance()[5]));
  }

  TEST_CASE("--process-output collects output.weight of an untied model") {
    // The 256-aligned synthetic fixture (scripts/make_fixtures.py) has a separate lm_head.
    const std::string dir = std::string(SMOLQ_SOURCE_DIR) + "/testdata/generated/aligned256-bf16";
    if (!fs::exists(dir + "/config.json")) {
      MESSAGE("fixture " << dir << " not generated; skipped");
      return;
    }
    auto m = Model::open(dir);
    REQUIRE_FALSE(m->tied_output());
    std::vector<int32_t> toks;
    for (int i = 0; i < 64; ++i) toks.push_back(100 + 7 * i);
    EvalOptions o;
    o.n_ctx = 32;
    o.n_threads = 2;
    for (bool po : {false, true}) {
      ImatrixCollector c(po, 2);
      collect_imatrix(*m, toks, o, c);
      const ImatrixData d = c.data({}, 32);
      CHECK(d.entries.size() == (po ? 15u : 14u));
      if (po) {
        REQUIRE(d.find("output.weight") != nullptr);
        CHECK(d.find("output.weight")->n_cols() == 256);
        CHECK(d.find("output.weight")->counts[0] == 64);
      }
    }
  }
}
