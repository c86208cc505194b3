// imatrix statistics (--show-statistics) and coverage on hand-made data whose answers are known,
// chunk skipping (--chunk) and the checkpoints of a running collection (--save-frequency,
// --output-frequency). Parity with llama-imatrix's numbers: tests/python/test_imatrix_parity.py.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "eval/imatrix.h"
#include "eval/imatrix_stats.h"
#include "formats/error.h"
#include "formats/imatrix.h"

#include "temp_dir.h"

namespace fs = std::filesystem;
using namespace smolq;

namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("smolq-test-imatrix-stats-") {}
};

const ImatrixTensorStats& find(const ImatrixStatistics& s, const std::string& name) {
  for (const auto& t : s.tensors)
    if (t.name == name) return t;
  FAIL("no statistics for " << name);
  throw Error("unreachable");
}

}  // namespace

TEST_SUITE("test_imatrix_stats") {
  TEST_CASE("per-tensor statistics of known importances") {
    ImatrixData d;
    d.entries["blk.0.attn_q.weight"] = {{1, 1, 1, 1}, {2}};      // importances 0.5 x 4: uniform
    d.entries["blk.0.ffn_down.weight"] = {{0, 0, 0, 8}, {1}};    // one live column
    d.entries["blk.0.ffn_up_exps.weight"] = {{4, 2, 9, 9}, {2, 0}};  // second expert never reached
    d.entries["blk.0.ffn_gate_exps.weight"] = {{0, 0}, {0}};     // no data at all
    const ImatrixStatistics s = imatrix_statistics(d);
    const auto& u = find(s, "blk.0.attn_q.weight");
    CHECK(u.layer == "0");
    CHECK(u.kind == "attn_q");
    CHECK(u.block == 0);
    CHECK(u.elements == 4);
    CHECK(u.total == 2.0f);
    CHECK(u.mean == 0.5f);
    CHECK(u.min == 0.5f);
    CHECK(u.max == 0.5f);
    CHECK(u.stddev == 0.0f);
    CHECK(u.active == 1.0f);
    CHECK(u.entropy == doctest::Approx(2.0));  // log2(4): the largest possible
    CHECK(u.zd == 0.0f);                       // sigma 0: no column is above one sigma
    const auto& o = find(s, "blk.0.ffn_down.weight");
    CHECK(o.total == 8.0f);
    CHECK(o.mean == 2.0f);
    CHECK(o.stddev == doctest::Approx(std::sqrt(12.0)));  // E[a^2] - mean^2 = 16 - 4
    CHECK(o.active == 0.25f);                              // 3 of 4 columns at 0
    CHECK(o.entropy == 0.0f);                              // all mass on one column
    CHECK(o.zd == 0.25f);                                  // (8 - 2) / 3.46 > 1
    const auto& e = find(s, "blk.0.ffn_up_exps.weight");
    CHECK(e.elements == 2);  // only the expert with data
    CHECK(e.total == 3.0f);  // 4/2 + 2/2
    CHECK(s.no_data == std::vector<std::string>{"blk.0.ffn_gate_exps.weight"});
    // Print order: by kind, then the larger sum first.
    REQUIRE(s.tensors.size() == 3);
    CHECK(s.tensors[0].kind == "attn_q");
    CHECK(s.tensors[1].kind == "ffn_down");
    CHECK(s.tensors[2].kind == "ffn_up_exps");
    // Layer 0: N-weighted mean of the sums (4*2 + 4*8 + 2*3) / 10.
    REQUIRE(s.layers.size() == 1);
    CHECK(s.layers[0].total == doctest::Approx(4.6));
    ImatrixData legacy = d;
    legacy.legacy = true;
    CHECK_THROWS_AS(imatrix_statistics(legacy), Error);
  }

  TEST_CASE("cosine similarity with the previous block, names outside blk.*") {
    ImatrixData d;
    d.entries["blk.0.attn_k.weight"] = {{1, 2, 0}, {4}};
    d.entries["blk.1.attn_k.weight"] = {{2, 4, 0}, {4}};  // parallel to block 0
    d.entries["blk.2.attn_k.weight"] = {{0, 0, 5}, {4}};  // orthogonal to block 1
    d.entries["output.weight"] = {{1, 1, 1}, {4}};
    const ImatrixStatistics s = imatrix_statistics(d);
    CHECK(find(s, "blk.0.attn_k.weight").cossim == 0.0f);  // no block -1
    CHECK(find(s, "blk.1.attn_k.weight").cossim == doctest::Approx(1.0));
    CHECK(find(s, "blk.2.attn_k.weight").cossim == 0.0f);
    const auto& out = find(s, "output.weight");
    CHECK(out.layer == "-");
    CHECK(out.kind == "output");
    CHECK(out.block == -1);
    CHECK(s.layers.size() == 3);  // blocks 0-2; output.weight belongs to none
    const std::string text = format_imatrix_statistics(s, "x.gguf");
    CHECK(text.find("Computing statistics for x.gguf (4 tensors)") != std::string::npos);
    // llama-imatrix's row format, column for column.
    CHECK(text.find("    1\tattn_k              \t      1.50\t  0.0000\t     1.0000\t  0.50\t  0.41\t   66.67%\t     3\t"
                    "    0.9183\t 57.94%\t     33.33%\t  1.0000\n") != std::string::npos);
    CHECK(text.find("Computing weighted average statistics per layer (3 layers)") != std::string::npos);
  }

  TEST_CASE("coverage names partial, short and missing entries") {
    ImatrixData d;
    d.entries["blk.0.attn_q.weight"] = {{1, 1}, {64}};
    d.entries["blk.0.attn_k.weight"] = {{1, 1}, {32}};              // fewer tokens
    d.entries["blk.0.ffn_up_exps.weight"] = {{1, 1, 0, 0}, {64, 0}};  // one expert never reached
    const std::vector<std::string> expected = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"};
    const ImatrixCoverage c = imatrix_coverage(d, expected);
    CHECK(c.n_entries == 3);
    CHECK(c.max_count == 64);
    REQUIRE(c.partial.size() == 1);
    CHECK(c.partial[0].name == "blk.0.ffn_up_exps.weight");
    CHECK(c.partial[0].with_data == 1);
    CHECK(c.partial[0].n_mat == 2);
    REQUIRE(c.short_count.size() == 1);
    CHECK(c.short_count[0].name == "blk.0.attn_k.weight");
    CHECK(c.short_count[0].count == 32);
    CHECK(c.missing == std::vector<std::string>{"blk.0.attn_v.weight"});
    CHECK_FALSE(c.complete());
    const std::string text = format_imatrix_coverage(c);
    CHECK(text.find("partial data: blk.0.ffn_up_exps.weight (1 of 2 matrices, 50.00%)") != std::string::npos);
    CHECK(text.find("fewer tokens: blk.0.attn_k.weight (32 of 64)") != std::string::npos);
    CHECK(text.find("blk.0.attn_v.weight") != std::string::npos);
    d.entries.erase("blk.0.attn_k.weight");
    d.entries.erase("blk.0.ffn_up_exps.weight");
    CHECK(imatrix_coverage(d, {}).complete());
  }

  TEST_CASE("--chunk skips whole chunks and keeps two") {
    std::vector<int32_t> toks(100);
    for (int i = 0; i < 100; ++i) toks[i] = i;
    CHECK(skip_chunks(toks, 0, 16).size() == 100);
    const auto rest = skip_chunks(toks, 3, 16);
    CHECK(rest.size() == 52);
    CHECK(rest[0] == 48);
    CHECK_THROWS_AS(skip_chunks(toks, 5, 16), UsageError);  // (5 + 2) * 16 >= 100
    CHECK_THROWS_AS(skip_chunks(toks, -1, 16), UsageError);
  }

  TEST_CASE("checkpoints are written between chunks, numbered after --in-file data") {
    TempDir tmp;
    constexpr int32_t kChunk = 16;
    WeightMatrix wa, wb;
    wa.name = "blk.0.attn_q.weight";
    wb.name = "blk.0.ffn_down.weight";
    wa.cols = wb.cols = 4;
    std::vector<float> x(kChunk * 4, 1.0f);
    ImatrixCollector c(false, 1);
    ImatrixData earlier;  // 3 chunks collected before
    earlier.entries[wa.name] = {{48, 48, 48, 48}, {48}};
    earlier.entries[wb.name] = {{48, 48, 48, 48}, {48}};
    earlier.datasets = {"old.txt"};
    c.merge(earlier, kChunk);
    CHECK(c.chunks_done(kChunk) == 3);
    const std::string out = tmp.file("im.gguf");
    c.set_checkpoints({.path = out, .format = ImatrixFormat::Gguf, .save_every = 2, .output_every = 0,
                       .datasets = {"new.txt"}, .chunk_size = kChunk});
    std::vector<std::string> written;
    for (int chunk = 0; chunk < 3; ++chunk) {
      c.observe(wa, x.data(), kChunk);
      c.observe(wb, x.data(), kChunk);
      for (auto& p : c.end_chunk()) written.push_back(p);
    }
    // Chunks 4, 5, 6: copies at the multiples of 2.
    CHECK(written == std::vector<std::string>{out + ".at_4", out + ".at_6"});
    CHECK_FALSE(fs::exists(out));
    const ImatrixData at4 = read_imatrix(out + ".at_4");
    CHECK(at4.chunk_count == 4);
    CHECK(at4.find(wa.name)->counts[0] == 64);  // every entry at 4 whole chunks
    CHECK(at4.find(wb.name)->counts[0] == 64);
    CHECK(at4.datasets == std::vector<std::string>{"old.txt", "new.txt"});
    // --output-frequency rewrites the output itself.
    c.set_checkpoints({.path = out, .format = ImatrixFormat::Dat, .save_every = 0, .output_every = 1,
                       .datasets = {"new.txt"}, .chunk_size = kChunk});
    c.observe(wa, x.data(), kChunk);
    c.observe(wb, x.data(), kChunk);
    CHECK(c.end_chunk() == std::vector<std::string>{out});
    CHECK(read_imatrix(out).chunk_count == 7);
  }
}
