// `smolq verify`'s engine (verify/sweep.h), cache (verify/sweep_cache.h) and reports
// (verify/report_writers.h). The end-to-end part sweeps the small 256-wide synthetic checkpoint
// of scripts/make_fixtures.py (skipped when it has not been generated): its results must equal
// run_kl_divergence's, and reruns must reuse exactly what the cache holds.
#include <doctest/doctest.h>
#include <simdjson.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "formats/atomic_file.h"
#include "formats/error.h"
#include "formats/mapped_file.h"
#include <unistd.h>

#include "eval/model.h"
#include "eval/perplexity.h"
#include "eval/perplexity_input.h"
#include "verify/report_writers.h"
#include "verify/sweep.h"
#include "verify/sweep_cache.h"

using namespace smolq;
namespace fs = std::filesystem;

namespace {

std::string fresh_dir(const std::string& name) {
  std::string leaf = "smolq_test_verify_" + std::to_string(::getpid()) + "_";
  leaf += name;
  const std::string d = (fs::temp_directory_path() / leaf).string();
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Every file under `dir` whose name starts with `prefix`.
std::vector<fs::path> files_under(const std::string& dir, const std::string& prefix) {
  std::vector<fs::path> v;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename().string().rfind(prefix, 0) == 0) v.push_back(e.path());
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

TEST_SUITE("test_verify") {
  TEST_CASE("Pareto front and the smallest quant within a budget") {
    //                       A     B     C     D     E
    const std::vector<double> size{100, 80, 60, 90, 60};
    const std::vector<double> kld{0.001, 0.01, 0.2, 0.02, 0.3};
    // D is beaten by B (smaller and lower KLD); E by C (same size, higher KLD).
    CHECK(pareto_front(size, kld) == std::vector<size_t>{2, 1, 0});
    CHECK(smallest_within(size, kld, 0.015) == std::optional<size_t>(1));
    CHECK(smallest_within(size, kld, 0.5) == std::optional<size_t>(2));
    CHECK(smallest_within(size, kld, 0.0001) == std::nullopt);
    CHECK(pareto_front({}, {}).empty());
  }

  TEST_CASE("--types all") {
    const auto without = sweep_all_types(false), with = sweep_all_types(true);
    auto has = [](const std::vector<FileType>& v, FileType t) { return std::find(v.begin(), v.end(), t) != v.end(); };
    CHECK(has(without, FileType::kQ4_K_M));
    CHECK(has(without, FileType::kIQ4_XS));
    CHECK_FALSE(has(without, FileType::kIQ2_XXS));  // needs an imatrix
    CHECK(has(with, FileType::kIQ2_XXS));
    for (FileType t : {FileType::kF16, FileType::kBF16, FileType::kAllF32, FileType::kTQ1_0, FileType::kMXFP4_MOE}) {
      CHECK_FALSE(has(with, t));
    }
  }

  TEST_CASE("cache records: exact round trip, refused when stamped with another key") {
    const std::string d = fresh_dir("records");
    ChunkRecord r;
    r.seconds = 1.25;
    for (int i = 0; i < 5; ++i) {
      PositionComparison c;
      c.nll_base = 0.1 * i;
      c.nll_q = 0.2 + i;
      c.kld = 1e-9 * i;
      c.p_diff = -0.03 * i;
      c.same_top = i % 2 == 0;
      c.sum_sq_logit_diff = 12.5 * i;
      c.max_abs_logit_diff = 0.75 * i;
      r.positions.push_back(c);
    }
    const std::string p = d + "/chunk.bin";
    write_chunk_record(p, 42, 3, r);
    const auto back = read_chunk_record(p, 42, 3);
    REQUIRE(back);
    CHECK(back->seconds == 1.25);
    REQUIRE(back->positions.size() == 5);
    for (size_t i = 0; i < 5; ++i) {
      CHECK(back->positions[i].kld == r.positions[i].kld);
      CHECK(back->positions[i].p_diff == r.positions[i].p_diff);
      CHECK(back->positions[i].same_top == r.positions[i].same_top);
      CHECK(back->positions[i].max_abs_logit_diff == r.positions[i].max_abs_logit_diff);
    }
    CHECK_FALSE(read_chunk_record(p, 43, 3));  // another key
    CHECK_FALSE(read_chunk_record(p, 42, 4));  // another chunk
    CHECK_FALSE(read_chunk_record(d + "/missing.bin", 42, 3));
    fs::resize_file(p, fs::file_size(p) - 8);  // truncated
    CHECK_FALSE(read_chunk_record(p, 42, 3));

    std::vector<float> logits(3000);
    for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(0.01f * i) * 7.0f - 2.0f;
    logits[17] = -0.0f;
    write_logits_record(d + "/logits.bin", 7, 0, logits);
    std::vector<float> out(logits.size());
    CHECK(read_logits_record(d + "/logits.bin", 7, 0, out));
    CHECK(std::memcmp(out.data(), logits.data(), logits.size() * sizeof(float)) == 0);
    CHECK_FALSE(read_logits_record(d + "/logits.bin", 8, 0, out));
    std::vector<float> wrong_size(10);
    CHECK_FALSE(read_logits_record(d + "/logits.bin", 7, 0, wrong_size));
  }

  TEST_CASE("hashing: field boundaries count, content changes the fingerprint") {
    CHECK(ContentHasher().add("ab").add("c").digest() != ContentHasher().add("a").add("bc").digest());
    CHECK(ContentHasher().add(uint64_t{1}).digest() == ContentHasher().add(uint64_t{1}).digest());
    const std::string d = fresh_dir("hash");
    write_file_atomic(d + "/a.gguf", "hello");
    const uint64_t h1 = fingerprint_model(d + "/a.gguf");
    write_file_atomic(d + "/a.gguf", "hellp");
    CHECK(fingerprint_model(d + "/a.gguf") != h1);
    CHECK(hex64(0xabcULL) == "0000000000000abc");
  }

  TEST_CASE("JSON output is valid: control characters, quotes, invalid UTF-8") {
    JsonWriter j(0, 10);
    j.begin_object().key("s").value(std::string("a\"b\\c\n\x01\xff")).key("n").value(1.5).key("inf").value(1.0 / 0.0);
    j.key("l").begin_array().value(int64_t{-3}).value(true).null().end_array().key("e").begin_object().end_object().end_object();
    CHECK(j.str() == "{\"s\":\"a\\\"b\\\\c\\n\\u0001\xEF\xBF\xBD\",\"n\":1.5,\"inf\":null,\"l\":[-3,true,null],\"e\":{}}");
    simdjson::dom::parser p;
    simdjson::dom::element e;
    CHECK(p.parse(j.str()).get(e) == simdjson::SUCCESS);
  }

  TEST_CASE("sweep of a small synthetic model: equals run_kl_divergence, resumes from its cache") {
    const std::string model = std::string(SMOLQ_SOURCE_DIR) + "/testdata/generated/aligned256-small-bf16";
    if (!fs::exists(model + "/model.safetensors")) {
      MESSAGE("fixture " << model << " not generated (scripts/make_fixtures.py); skipped");
      return;
    }
    const std::string d = fresh_dir("sweep");
    const std::string text = d + "/text.txt";
    write_file_atomic(text, read_text_file(std::string(SMOLQ_SHARED_DIR) + "/assets/wikitext-2-raw/wiki.test.raw").substr(0, 6000));
    SweepOptions o;
    o.model = model;
    o.quants = {{"Q8_0", FileType::kQ8_0, "", false}, {"Q4_0", FileType::kQ4_0, "", false}};
    o.eval_text = text;
    o.eval.n_ctx = 64;
    o.eval.n_chunks = 3;
    o.eval.n_threads = 2;
    o.prompts = {{{"user", "Hello there"}}};
    o.n_generate = 4;
    o.out_dir = d + "/out";
    int ready = 0;
    SweepEvents ev;
    ev.quant_ready = [&](const QuantRow&) { ++ready; };

    const SweepResult r1 = run_sweep(o, ev);
    CHECK(ready == 2);
    REQUIRE(r1.quants.size() == 2);
    CHECK(r1.quants[0].label == "Q8_0");  // largest file first
    CHECK(r1.cache.builds_done == 2);
    CHECK(r1.cache.chunks_computed == 6);
    CHECK(r1.cache.base_chunks_computed == 3);
    CHECK(r1.n_chunks == 3);
    CHECK(r1.positions == 3 * 31);
    CHECK(r1.prompt_format == "the model's chat template");
    REQUIRE(r1.quants[0].generations.size() == 1);
    CHECK(r1.quants[0].kld.kld.value < r1.quants[1].kld.kld.value);
    CHECK(r1.quants[0].bpw == doctest::Approx(8.0 * r1.quants[0].tensor_bytes / r1.quants[0].n_elements));
    CHECK(r1.quants[0].file_size == fs::file_size(r1.quants[0].path));
    // Per-tensor error: 2 layers x 7 matrices + token_embd + output (not tied); Q8_0 beats Q4_0 everywhere.
    REQUIRE(r1.quants[0].tensors.size() == 16);
    for (size_t i = 0; i < 16; ++i) {
      CHECK(r1.quants[0].tensors[i].name == r1.quants[1].tensors[i].name);
      CHECK(r1.quants[0].tensors[i].rel > 0);
      CHECK(r1.quants[0].tensors[i].rel < r1.quants[1].tensors[i].rel);
    }
    CHECK(r1.quants[0].layer_rel.size() == 2);

    // The same numbers as `smolq perplexity QUANT --base BASE`.
    auto base = Model::open(model);
    const EvalTokens toks = tokenize_text_file(*base, text, false);
    for (const auto& q : r1.quants) {
      auto qm = Model::open(q.path);
      const KldReport k = run_kl_divergence(*base, *qm, toks.ids, r1.eval).stats.report();
      CHECK(k.kld.value == q.kld.kld.value);
      CHECK(k.ppl_q.value == q.kld.ppl_q.value);
      CHECK(k.same_top.value == q.kld.same_top.value);
      CHECK(k.rms_logit_drift == q.kld.rms_logit_drift);
    }

    // A rerun reuses everything and reports the same bits.
    const SweepResult r2 = run_sweep(o);
    CHECK(r2.cache.builds_reused == 2);
    CHECK(r2.cache.builds_done == 0);
    CHECK(r2.cache.chunks_computed == 0);
    CHECK(r2.cache.chunks_reused == 6);
    CHECK(r2.cache.generations_reused == 3);
    CHECK(r2.quants[1].kld.kld.value == r1.quants[1].kld.kld.value);
    CHECK(r2.quants[1].tensors[3].rel == r1.quants[1].tensors[3].rel);

    // A lost chunk record: only it is recomputed (baseline logits from the cache).
    const auto q4_chunks = files_under(o.out_dir + "/cache", "chunk-");
    REQUIRE(q4_chunks.size() == 9);  // 3 baseline + 2 x 3 quant records
    fs::path lost;
    for (const auto& f : q4_chunks)
      if (f.parent_path().filename().string().rfind("eval-Q4_0", 0) == 0 && f.filename() == "chunk-00001.bin") lost = f;
    REQUIRE(!lost.empty());
    fs::remove(lost);
    const SweepResult r3 = run_sweep(o);
    CHECK(r3.cache.chunks_computed == 1);
    CHECK(r3.cache.base_chunks_computed == 0);
    CHECK(r3.cache.base_chunks_reused == 1);
    CHECK(r3.quants[1].kld.kld.value == r1.quants[1].kld.kld.value);

    // More chunks: only the new ones are computed.
    o.eval.n_chunks = 4;
    const SweepResult r4 = run_sweep(o);
    CHECK(r4.cache.chunks_computed == 2);
    CHECK(r4.cache.chunks_reused == 6);

    // One quant per group (tiny memory budget) and no cached baseline logits: the baseline is
    // evaluated once per group, and the results do not change.
    for (const auto& f : files_under(o.out_dir + "/cache", "chunk-")) fs::remove(f);
    o.eval.n_chunks = 3;
    o.max_memory = 1;
    o.cache_base_logits = false;
    const SweepResult r5 = run_sweep(o);
    CHECK(r5.cache.chunks_computed == 6);
    CHECK(r5.cache.base_chunks_computed == 6);
    CHECK(r5.quants[0].kld.kld.value == r1.quants[0].kld.kld.value);
    CHECK(r5.quants[1].kld.kld.value == r1.quants[1].kld.kld.value);

    // Reports: the JSON parses and carries perplexity's KLD block; the HTML is self-contained.
    const auto paths = write_reports(r1, d + "/report");
    REQUIRE(paths.size() == 3);
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    REQUIRE(parser.load(d + "/report/report.json").get(root) == simdjson::SUCCESS);
    double kld = 0;
    CHECK(root["quants"].at(1)["kld_report"]["kld"]["value"].get(kld) == simdjson::SUCCESS);
    CHECK(kld == doctest::Approx(r1.quants[1].kld.kld.value).epsilon(1e-8));
    const std::string html = read_text_file(d + "/report/report.html");
    size_t n_svg = 0;
    for (size_t pos = 0; (pos = html.find("<svg", pos)) != std::string::npos; ++pos) ++n_svg;
    CHECK(n_svg == 3);
    CHECK(html.find("<script") == std::string::npos);
    CHECK(html.find("src=") == std::string::npos);
    CHECK(html.find("url(http") == std::string::npos);
    const std::string md = read_text_file(d + "/report/report.md");
    CHECK(md.find("| Q4_0 ") != std::string::npos);
    CHECK(md.find("## Where the error comes from") != std::string::npos);
  }

  TEST_CASE("automatic importance matrix: calibrated on the first half, evaluated on the second") {
    const std::string model = std::string(SMOLQ_SOURCE_DIR) + "/testdata/generated/aligned256-small-bf16";
    if (!fs::exists(model + "/model.safetensors")) {
      MESSAGE("fixture " << model << " not generated (scripts/make_fixtures.py); skipped");
      return;
    }
    const std::string d = fresh_dir("imatrix");
    const std::string text = d + "/text.txt";
    write_file_atomic(text, read_text_file(std::string(SMOLQ_SHARED_DIR) + "/assets/wikitext-2-raw/wiki.test.raw").substr(0, 6000));
    SweepOptions o;
    o.model = model;
    o.quants = {{"Q4_K_M", FileType::kQ4_K_M, "", false}};
    o.imatrix = ImatrixMode::kAuto;
    o.calib_chunks = 4;
    o.eval_text = text;
    o.eval.n_ctx = 64;
    o.eval.n_chunks = 2;
    o.eval.n_threads = 2;
    o.out_dir = d + "/out";
    const SweepResult r = run_sweep(o);
    auto base = Model::open(model);
    const size_t n = tokenize_text_file(*base, text, false).ids.size();
    CHECK(r.eval_tokens == static_cast<int64_t>(n - n / 2));
    CHECK(r.eval_desc.find("second half") != std::string::npos);
    CHECK(r.imatrix_desc.rfind("automatic: collected over 4 chunks of 64 tokens of the first half", 0) == 0);
    REQUIRE(r.quants.size() == 1);
    CHECK(r.quants[0].imatrix_used);
    CHECK(r.quants[0].path.find("-imat.gguf") != std::string::npos);
    for (const auto& t : r.quants[0].tensors) CHECK(t.weighted == (t.layer >= 0));  // no data for token_embd / output
    CHECK_FALSE(r.cache.imatrix_reused);
    const SweepResult again = run_sweep(o);
    CHECK(again.cache.imatrix_reused);
    CHECK(again.cache.builds_reused == 1);
    CHECK(again.quants[0].kld.kld.value == r.quants[0].kld.kld.value);
  }

  TEST_CASE("sweep option errors") {
    SweepOptions o;
    CHECK_THROWS_AS(run_sweep(o), UsageError);
    o.quants = {{"Q8_0", FileType::kQ8_0, "", false}};
    CHECK_THROWS_AS(run_sweep(o), UsageError);  // no text
  }
}
