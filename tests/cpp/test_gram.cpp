// The calibration pass of --optimize (verify/gram.h) and its driver (verify/optimize.h): Gram
// sums (float H, C - H) against a plain double sum, the layer-by-layer pass against the whole-model forward
// pass (diag(H) = the imatrix collector's sums), sequential substitution, thread independence,
// and the driver's plumbing with a plain rounder.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "formats/error.h"
#include "quantize/tensor_quantizer.h"
#include "eval/gram.h"
#include "eval/imatrix.h"
#include "eval/matmul.h"
#include "eval/matmul_int.h"
#include "eval/model.h"
#include "mix/optimize.h"
#include "quantize/model_writer.h"
#include "temp_dir.h"

using namespace smolq;

namespace {

const std::string kStories = std::string(SMOLQ_SHARED_DIR) + "/assets/stories260K/hf";

std::vector<int32_t> random_tokens(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back(static_cast<int32_t>(rng() % 512));
  return t;
}

struct Recorder : GramConsumer {
  std::vector<GramMatrix> seen;
  std::function<void(const GramMatrix&)> then;
  void on_gram(GramMatrix& g) override {
    seen.push_back(g);
    if (then) then(g);
  }
};

GramOptions stories_options(int threads) {
  GramOptions o;
  o.n_ctx = 32;
  o.n_chunks = 3;
  o.add_bos = true;
  o.bos_id = 1;
  o.n_threads = threads;
  return o;
}

// Every matrix of the model planned as Q4_0, read from the model itself (ffn_down's 172 columns
// are not a whole number of blocks: kept in F16).
std::vector<OutputTensor> q4_0_outputs(const Model& m) {
  std::vector<OutputTensor> outs;
  for (const WeightMatrix* w : m.matrices()) {
    OutputTensor o;
    o.name = w->name;
    o.shape = {w->cols, w->rows};
    o.type = w->cols % 32 == 0 ? GgmlType::Q4_0 : GgmlType::F16;
    o.source = [w](uint64_t r0, uint64_t n, std::span<float> out) {
      for (uint64_t r = 0; r < n; ++r) w->dequantize_row(r0 + r, out.data() + r * w->cols);
    };
    outs.push_back(std::move(o));
  }
  return outs;
}

// The sequential driver with the error-feedback rounder on the model's Q4_0 plan, written into
// outs (the returned outcome holds the bytes their passthrough spans see). o: the pass's
// options; with_prepare: the core's prepare step too (else each factor is made by round).
OptimizeOutcome run_ef_driver(Model& m, std::span<const int32_t> toks, const GramOptions& o, bool asym,
                              bool with_prepare, std::vector<OutputTensor>& outs) {
  outs = q4_0_outputs(m);
  OptimizeSettings s;
  s.asymmetric = asym;
  OptimizeRequest req;
  req.tokens.assign(toks.begin(), toks.end());
  req.gram = o;
  req.sequential = true;
  req.asymmetric = asym;
  const ErrorFeedbackCore core = error_feedback_core(s);
  req.round = core.round;
  if (with_prepare) req.prepare = core.prepare;
  req.supports = [](GgmlType t) { return ef::supports(t); };
  return optimize_outputs(m, outs, req);
}

// Asymmetric files on 2 and 1 threads (a2, a1) against the sequential one (sq): the same bytes
// on any thread count; layer 0's q/k/v (see equal streams, C == H) as sequential's; most later
// tensors moved.
void check_asym_bytes(const std::vector<OutputTensor>& a2, const std::vector<OutputTensor>& a1,
                      const std::vector<OutputTensor>& sq) {
  int differ = 0;
  for (size_t i = 0; i < a2.size(); ++i) {
    CAPTURE(a2[i].name);
    CHECK(std::ranges::equal(a1[i].passthrough, a2[i].passthrough));
    differ += std::ranges::equal(a2[i].passthrough, sq[i].passthrough) ? 0 : 1;
  }
  CHECK(std::ranges::equal(a2[1].passthrough, sq[1].passthrough));
  CHECK(differ > 15);
}

}  // namespace

TEST_SUITE("test_gram") {
  TEST_CASE("gram_sums: float(H) of the double sums, symmetric, any thread count; C - H exact") {
    // d = 600: one group, two row blocks; d = 2208: row groups (beyond 2048), where with C the
    // rows of H are whole products instead of a mirrored triangle. n = 300 leaves a partial
    // token block.
    for (int64_t d : {600, 2208}) {
      CAPTURE(d);
      const int64_t n = 300;
      std::mt19937 rng(7);
      std::normal_distribution<float> nd(0.0f, 1.0f);
      std::vector<float> x(static_cast<size_t>(n * d)), xq(x.size());
      for (size_t i = 0; i < x.size(); ++i) {
        x[i] = nd(rng);
        xq[i] = x[i] + 0.3f * nd(rng);
      }
      GramMatrix g1, g2, same, cr;
      g1.dim = g2.dim = same.dim = cr.dim = d;
      gram_sums(g1, x.data(), nullptr, n, 1);
      gram_sums(g2, x.data(), nullptr, n, 2);
      CHECK(g1.h == g2.h);
      CHECK(g1.h_diag == g2.h_diag);
      CHECK(g1.c_minus_h.empty());
      double worst = 0, worst_c = 0;
      for (int64_t i = 0; i < d; i += 37)
        for (int64_t j = 0; j < d; j += 11) {
          double ref = 0;
          for (int64_t t = 0; t < n; ++t) ref += static_cast<double>(x[t * d + i]) * x[t * d + j];
          worst = std::max(worst, std::fabs(g1.h[i * d + j] - ref) / std::sqrt(static_cast<double>(n)));
          CHECK(g1.h[i * d + j] == g1.h[j * d + i]);
          if (i == j) CHECK(static_cast<float>(g1.h_diag[i]) == g1.h[i * d + i]);
        }
      CHECK(worst < 1e-4);
      // Equal streams: C - H is exactly zero and H has the bits of the pass without C.
      gram_sums(same, x.data(), x.data(), n, 2);
      CHECK(same.h == g1.h);
      CHECK(same.h_diag == g1.h_diag);
      CHECK(std::all_of(same.c_minus_h.begin(), same.c_minus_h.end(), [](float v) { return v == 0.0f; }));
      // Different streams: H of xq as without C, C - H against a double sum.
      GramMatrix hq;
      hq.dim = d;
      gram_sums(hq, xq.data(), nullptr, n, 1);
      gram_sums(cr, xq.data(), x.data(), n, 2);
      CHECK(cr.h == hq.h);
      int asymmetric = 0;
      for (int64_t i = 0; i < d; i += 37)
        for (int64_t j = 0; j < d; j += 11) {
          double ref = 0;
          for (int64_t t = 0; t < n; ++t) ref += static_cast<double>(xq[t * d + i]) * (x[t * d + j] - xq[t * d + j]);
          worst_c = std::max(worst_c, std::fabs(cr.c_minus_h[i * d + j] - ref) / std::sqrt(static_cast<double>(n)));
          asymmetric += cr.c_minus_h[i * d + j] != cr.c_minus_h[j * d + i] ? 1 : 0;
        }
      CHECK(worst_c < 1e-4);
      CHECK(asymmetric > 100);  // C is not symmetric
      GramMatrix cr1;
      cr1.dim = d;
      gram_sums(cr1, xq.data(), x.data(), n, 1);
      CHECK(cr1.c_minus_h == cr.c_minus_h);
    }
  }

  TEST_CASE("cross pass: C == H until the first substitution, then the full-precision stream differs") {
    auto m = Model::open(kStories);
    const auto toks = random_tokens(100, 6);
    Recorder plain;
    run_gram_pass(*m, toks, stories_options(2), plain);
    REQUIRE(plain.seen[0].c_minus_h.empty());  // no C unless asked
    GramOptions o = stories_options(2);
    o.cross = true;
    o.cross_low_rank = false;  // C - H at every site (ffn_down's 172 inputs > 96 tokens)
    const WeightMatrix& down = m->layer(2).ffn_down;
    std::vector<float> zeros(down.rows * down.cols, 0.0f);
    auto substitute = [&](const GramMatrix& g) {
      if (g.layer == 2 && g.site == GramSite::kFfnDown)
        m->substitute_weight("blk.2.ffn_down.weight", GgmlType::F32, reinterpret_cast<const std::byte*>(zeros.data()),
                             down.cols * sizeof(float));
    };
    Recorder cross, cross1;
    cross.then = substitute;
    run_gram_pass(*m, toks, o, cross);
    m->restore_weight("blk.2.ffn_down.weight");
    cross1.then = substitute;
    o.n_threads = 1;
    run_gram_pass(*m, toks, o, cross1);
    m->restore_weight("blk.2.ffn_down.weight");
    Recorder sub;  // the same substitution without the cross stream: the same H
    sub.then = substitute;
    run_gram_pass(*m, toks, stories_options(2), sub);
    m->restore_weight("blk.2.ffn_down.weight");
    REQUIRE(cross.seen.size() == plain.seen.size());
    for (size_t i = 0; i < cross.seen.size(); ++i) {
      CAPTURE(i);
      const GramMatrix& g = cross.seen[i];
      REQUIRE(g.c_minus_h.size() == g.h.size());
      CHECK(g.h == sub.seen[i].h);  // carrying the full-precision stream changes nothing else
      CHECK(g.c_minus_h == cross1.seen[i].c_minus_h);
      const bool zero = std::all_of(g.c_minus_h.begin(), g.c_minus_h.end(), [](float v) { return v == 0.0f; });
      if (i <= 11) {
        CHECK(zero);  // nothing substituted before the site: both streams are the same
      } else {
        CHECK(!zero);
        // The full-precision stream is the unsubstituted model's: C's diagonal is bounded by
        // sqrt(diag H~ * diag H) (Cauchy-Schwarz), H the plain pass's.
        for (int64_t k = 0; k < g.dim; k += 7) {
          const double hq = g.h_diag[k], hf = plain.seen[i].h_diag[k];
          const double c = static_cast<double>(g.c_minus_h[k * g.dim + k]) + hq;
          CHECK(std::fabs(c) <= std::sqrt(hq * hf) * (1 + 1e-5) + 1e-6 * hq);
        }
      }
    }
  }

  TEST_CASE("layer-by-layer pass: sites in graph order, diag(H) = the imatrix collector's sums") {
    auto m = Model::open(kStories);
    const auto toks = random_tokens(100, 3);
    Recorder rec;
    run_gram_pass(*m, toks, stories_options(2), rec);
    REQUIRE(rec.seen.size() == 5 * 4);  // tied output: no output site
    CHECK(rec.seen[0].site == GramSite::kAttnIn);
    CHECK(rec.seen[0].weights == std::vector<std::string>{"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"});
    CHECK(rec.seen[3].site == GramSite::kFfnDown);
    CHECK(rec.seen[3].dim == 172);
    CHECK(rec.seen[19].layer == 4);

    EvalOptions eo;
    eo.n_ctx = 32;
    eo.n_batch = 32;
    eo.add_bos = true;
    eo.bos_id = 1;
    eo.n_threads = 2;
    ImatrixCollector c(false, 2);
    collect_imatrix(*m, toks, eo, c);
    const ImatrixData d = c.data({"calib"}, 32);
    for (const GramMatrix& g : rec.seen) {
      CHECK(g.n_tokens == 96);
      for (const std::string& name : g.weights) {
        CAPTURE(name);
        const ImatrixEntry* e = d.find(name);
        REQUIRE(e != nullptr);
        REQUIRE(e->sums.size() == static_cast<size_t>(g.dim));
        for (int64_t i = 0; i < g.dim; ++i)
          CHECK(g.h_diag[i] == doctest::Approx(e->sums[i]).epsilon(2e-4));
      }
    }
    // Thread count changes nothing.
    Recorder one;
    run_gram_pass(*m, toks, stories_options(1), one);
    for (size_t i = 0; i < rec.seen.size(); ++i) {
      CHECK(one.seen[i].h == rec.seen[i].h);
      CHECK(one.seen[i].h_diag == rec.seen[i].h_diag);
    }
  }

  TEST_CASE("a consumer's substitution feeds every later site, never an earlier one") {
    auto m = Model::open(kStories);
    const auto toks = random_tokens(100, 4);
    Recorder plain;
    run_gram_pass(*m, toks, stories_options(2), plain);
    const WeightMatrix& down = m->layer(2).ffn_down;
    std::vector<float> zeros(down.rows * down.cols, 0.0f);
    Recorder sub;
    sub.then = [&](const GramMatrix& g) {
      if (g.layer == 2 && g.site == GramSite::kFfnDown)
        m->substitute_weight("blk.2.ffn_down.weight", GgmlType::F32, reinterpret_cast<const std::byte*>(zeros.data()),
                             down.cols * sizeof(float));
    };
    run_gram_pass(*m, toks, stories_options(2), sub);
    m->restore_weight("blk.2.ffn_down.weight");
    for (size_t i = 0; i < plain.seen.size(); ++i) {
      CAPTURE(i);
      if (i <= 11) CHECK(sub.seen[i].h == plain.seen[i].h);  // up to and including blk.2 ffn_down
      else CHECK(sub.seen[i].h != plain.seen[i].h);
    }
  }

  TEST_CASE("release_pages frees a matrix's integer panels; the next product makes the same bits") {
    // An F16 model: its matrices take the integer path (with AVX-512 VNNI) and keep panels.
    auto m = Model::open(std::string(SMOLQ_SOURCE_DIR) + "/testdata/generated/smollm2-tiny-f16");
    const WeightMatrix& w = m->layer(1).ffn_up;
    REQUIRE(w.type == GgmlType::F16);
    if (uses_int_matmul(w)) REQUIRE(w.int_panels != nullptr);
    std::vector<float> x(static_cast<size_t>(8 * w.cols)), y1(static_cast<size_t>(8 * w.rows)), y2(y1.size());
    std::mt19937 rng(9);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& v : x) v = nd(rng);
    matmul(w, x.data(), 8, y1.data(), 2);
    if (w.int_panels) CHECK(w.int_panels->filled);
    m->release_pages(w.name);
    if (w.int_panels) {
      CHECK(!w.int_panels->filled);
      CHECK(w.int_panels->buf.capacity() == 0);
    }
    matmul(w, x.data(), 8, y2.data(), 2);
    CHECK(y1 == y2);
  }

  TEST_CASE("too little calibration text is one clear error") {
    auto m = Model::open(kStories);
    Recorder rec;
    CHECK_THROWS_AS(run_gram_pass(*m, random_tokens(20, 1), stories_options(1), rec), UsageError);
  }

  TEST_CASE("driver plumbing: with a plain rounder, full-precision inputs give the plain quantizer's bytes") {
    auto m = Model::open(kStories);
    const auto toks = random_tokens(100, 5);
    auto make_outputs = [&] { return q4_0_outputs(*m); };
    OptimizeRequest req;
    req.tokens = toks;
    req.gram = stories_options(2);
    req.sequential = false;
    std::map<std::string, std::vector<float>> importance;  // what the rounder was given
    req.round = [&](GgmlType type, std::span<const float> w, int64_t rows, int64_t d, const GramMatrix& g,
                    std::span<const float> imp, std::span<std::byte> out, int threads) {
      CHECK(g.h.size() == static_cast<size_t>(d * d));
      TensorQuantizeJob job;
      job.type = type;
      job.nrows = static_cast<uint64_t>(rows);
      job.ncols = static_cast<uint64_t>(d);
      job.source = [&](uint64_t r0, uint64_t n, std::span<float> o) { std::copy_n(w.data() + r0 * d, n * d, o.data()); };
      job.imatrix = imp;
      job.threads = threads;
      const auto bytes = quantize_tensor(job);
      REQUIRE(bytes.size() == out.size());
      std::copy(bytes.begin(), bytes.end(), out.begin());
    };
    req.supports = [](GgmlType) { return true; };
    std::vector<OutputTensor> outs = make_outputs();
    const OptimizeOutcome r = optimize_outputs(*m, outs, req);
    CHECK(r.optimized == 30);
    CHECK(r.plain == 0);
    CHECK(r.calib_tokens == 96);
    // Reference: the imatrix collector's importance, the plain tensor quantizer.
    EvalOptions eo;
    eo.n_ctx = 32;
    eo.n_batch = 32;
    eo.add_bos = true;
    eo.bos_id = 1;
    eo.n_threads = 2;
    ImatrixCollector c(false, 2);
    collect_imatrix(*m, toks, eo, c);
    const ImatrixData d = c.data({"calib"}, 32);
    int same = 0;
    for (const OutputTensor& o : outs) {
      if (o.name == "token_embd.weight" || o.type == GgmlType::F16) {
        CHECK(o.passthrough.empty());  // no Gram matrix, or a float type: left to the plain writer
        continue;
      }
      REQUIRE_FALSE(o.passthrough.empty());
      TensorQuantizeJob job;
      job.type = o.type;
      job.nrows = o.shape[1];
      job.ncols = o.shape[0];
      job.source = o.source;
      const std::vector<float> imp = d.find(o.name)->importance();
      job.imatrix = imp;
      const auto ref = quantize_tensor(job);
      same += std::equal(ref.begin(), ref.end(), o.passthrough.begin(), o.passthrough.end()) ? 1 : 0;
    }
    // diag(H)/n and the collector's sums/count agree to float rounding; Q4_0's scale search
    // may flip on a tie in a few tensors, never in most.
    CHECK(same >= 25);

    // Sequential: layer 0's attention input is unchanged, later inputs see quantized weights;
    // the model is restored afterwards.
    req.sequential = true;
    std::vector<OutputTensor> seq = make_outputs();
    const OptimizeOutcome rs = optimize_outputs(*m, seq, req);  // owns seq's bytes
    CHECK(std::equal(seq[1].passthrough.begin(), seq[1].passthrough.end(), outs[1].passthrough.begin()));
    int differ = 0;
    for (size_t i = 1; i < outs.size(); ++i)
      differ += std::equal(seq[i].passthrough.begin(), seq[i].passthrough.end(), outs[i].passthrough.begin()) ? 0 : 1;
    CHECK(differ > 15);
    CHECK(m->layer(0).wq.type == GgmlType::F32);

    // Written as made (quantize --optimize): each tensor placed in the opened output at once,
    // its bytes freed when the pass leaves its layer; the file is the one written from the
    // held bytes, and the model is restored.
    {
      test::TempDir dir;
      GgufMetadata meta;
      meta.set("general.architecture", GgufValue::str("llama"));
      write_gguf_model(dir / "held.gguf", meta, seq, 2);
      std::vector<OutputTensor> streamed = make_outputs();
      auto out = open_gguf_model(dir / "streamed.gguf", meta, streamed);
      int handed = 0;
      req.write = [&](const OutputTensor& t, std::span<const std::byte> bytes) {
        place_tensor(*out, t, bytes);
        ++handed;
      };
      const OptimizeOutcome rw = optimize_outputs(*m, streamed, req);
      req.write = nullptr;
      CHECK(handed == 30);
      CHECK(rw.storage.empty());
      for (const OutputTensor& o : streamed) CHECK(o.passthrough.empty());
      write_gguf_models({{dir / "streamed.gguf", &meta, &streamed, out.get()}}, 2);
      const auto slurp = [&](const std::string& name) {
        std::ifstream f(dir / name, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(f), {});
      };
      CHECK(slurp("streamed.gguf") == slurp("held.gguf"));
      CHECK(dir.entries() == 2);
      CHECK(m->layer(1).wq.type == GgmlType::F32);
    }

    // A type the core does not handle is rounded plainly with diag(H)/n.
    req.supports = [](GgmlType) { return false; };
    std::vector<OutputTensor> pl = make_outputs();
    const OptimizeOutcome r2 = optimize_outputs(*m, pl, req);
    CHECK(r2.optimized == 0);
    CHECK(r2.plain == 30);
  }
}

TEST_SUITE("test_gram") {
  TEST_CASE("asymmetric driver: the error-feedback rounder aims at the full-precision layers; bytes thread-independent") {
    auto m = Model::open(kStories);
    const auto toks = random_tokens(100, 9);
    std::vector<OutputTensor> seq, a2, a1;
    const OptimizeOutcome rs = run_ef_driver(*m, toks, stories_options(2), false, false, seq),
                          r2 = run_ef_driver(*m, toks, stories_options(2), true, false, a2),
                          r1 = run_ef_driver(*m, toks, stories_options(1), true, false, a1);
    CHECK(r2.optimized == rs.optimized);
    check_asym_bytes(a2, a1, seq);
    CHECK(m->layer(0).wq.type == GgmlType::F32);  // restored
    OptimizeSettings as;
    as.asymmetric = true;
    const auto kv = optimize_metadata_kv(as, "calib.txt", "00", false);
    CHECK(std::ranges::find(kv, std::string("smolq.optimize.inputs=str:asym")) != kv.end());
  }

  TEST_CASE("low-rank cross sites (fewer tokens than d_in): the streams' inputs instead of C - H; driver bytes thread-independent") {
    auto m = Model::open(kStories);
    const auto toks = random_tokens(100, 10);
    GramOptions o = stories_options(2);
    o.n_ctx = 16;
    o.n_chunks = 2;  // 32 tokens < d_in 64 and 172
    o.cross = true;
    const WeightMatrix& down = m->layer(1).ffn_down;
    std::vector<float> zeros(down.rows * down.cols, 0.0f);
    // Substitute layer 1's ffn_down with zeros: the streams differ from layer 2 on. During
    // on_gram, C - H from the handed-over inputs (double sums) against the dense form's.
    std::vector<std::vector<double>> cmh;
    Recorder low;
    low.then = [&](const GramMatrix& g) {
      REQUIRE(g.c_minus_h.empty());
      REQUIRE(g.xq.size() == static_cast<size_t>(g.n_tokens * g.dim));
      REQUIRE(g.xf.size() == g.xq.size());
      std::vector<double> c(static_cast<size_t>(g.dim * g.dim), 0.0);
      for (int64_t t = 0; t < g.n_tokens; ++t)
        for (int64_t i = 0; i < g.dim; ++i)
          for (int64_t j = 0; j < g.dim; ++j)
            c[i * g.dim + j] += static_cast<double>(g.xq[t * g.dim + i]) * (static_cast<double>(g.xf[t * g.dim + j]) - g.xq[t * g.dim + j]);
      cmh.push_back(std::move(c));
      if (g.layer == 1 && g.site == GramSite::kFfnDown)
        m->substitute_weight(down.name, GgmlType::F32, reinterpret_cast<const std::byte*>(zeros.data()), down.cols * sizeof(float));
    };
    run_gram_pass(*m, toks, o, low);
    m->restore_weight(down.name);
    Recorder dense;
    dense.then = [&](const GramMatrix& g) {
      if (g.layer == 1 && g.site == GramSite::kFfnDown)
        m->substitute_weight(down.name, GgmlType::F32, reinterpret_cast<const std::byte*>(zeros.data()), down.cols * sizeof(float));
    };
    o.cross_low_rank = false;
    run_gram_pass(*m, toks, o, dense);
    m->restore_weight(down.name);
    REQUIRE(dense.seen.size() == low.seen.size());
    int nonzero = 0;
    for (size_t i = 0; i < low.seen.size(); ++i) {
      CAPTURE(i);
      const GramMatrix& g = dense.seen[i];
      CHECK(low.seen[i].h == g.h);  // H is the same either way
      REQUIRE(g.c_minus_h.size() == cmh[i].size());
      double worst = 0.0, scale = 1e-30;
      for (size_t k = 0; k < cmh[i].size(); ++k) {
        worst = std::max(worst, std::fabs(cmh[i][k] - g.c_minus_h[k]));
        scale = std::max(scale, std::fabs(cmh[i][k]));
      }
      nonzero += scale > 1e-20 ? 1 : 0;
      CHECK(worst <= 1e-5 * scale + 1e-30);
    }
    CHECK(nonzero > 3);  // the sites after the substitution
    // The driver with the error-feedback rounder (prepare and round) on low-rank sites.
    auto options = [&](int threads) {
      GramOptions g = stories_options(threads);
      g.n_ctx = 16;
      g.n_chunks = 2;
      return g;
    };
    std::vector<OutputTensor> a2, a1, sq;
    const OptimizeOutcome r2 = run_ef_driver(*m, toks, options(2), true, true, a2),
                          r1 = run_ef_driver(*m, toks, options(1), true, true, a1),
                          rs = run_ef_driver(*m, toks, options(2), false, true, sq);
    check_asym_bytes(a2, a1, sq);
  }
}
