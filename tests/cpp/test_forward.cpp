// The reference forward pass on a real tiny model (stories260K, see shared/assets/README.md):
// the golden greedy story, independence from threads and batch splits, HF vs GGUF layouts,
// and agreement with a naive double-precision Hugging Face-style implementation written here
// from scratch (rotate-half RoPE on the unpermuted weights).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "formats/rope_layout.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "quantize/registry.h"
#include "eval/forward.h"
#include "eval/model.h"
#include "eval/perplexity.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using namespace smolq;

namespace {

const std::string kStories = std::string(SMOLQ_SHARED_DIR) + "/assets/stories260K";
const std::string kGolden = " Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";

// llama2.c tokenizer file: int32 max_token_length, then per token: f32 score, int32 len, bytes.
std::vector<std::string> load_llama2c_vocab(const std::string& path, int n_vocab) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  int32_t max_len = 0;
  in.read(reinterpret_cast<char*>(&max_len), 4);
  std::vector<std::string> v(n_vocab);
  for (int i = 0; i < n_vocab; ++i) {
    float score;
    int32_t len;
    in.read(reinterpret_cast<char*>(&score), 4);
    in.read(reinterpret_cast<char*>(&len), 4);
    REQUIRE((len >= 0 && len <= max_len));
    v[i].resize(len);
    in.read(v[i].data(), len);
  }
  REQUIRE(in.good());
  return v;
}

// llama2.c's decode: raw-byte pieces "<0xAB>" become that byte.
std::string piece(const std::vector<std::string>& vocab, int tok) {
  const std::string& p = vocab[tok];
  if (p.size() == 6 && p.rfind("<0x", 0) == 0 && p[5] == '>') return std::string(1, static_cast<char>(std::stoi(p.substr(3, 2), nullptr, 16)));
  return p;
}

int argmax(const float* v, int64_t n) {
  int best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = static_cast<int>(i);
  return best;
}

std::vector<int32_t> greedy(const Model& m, int n_new, int threads) {
  const int64_t V = static_cast<int64_t>(m.config().n_vocab);
  Forward f(m, 256, 16, threads);
  std::vector<int32_t> toks{1};  // BOS
  std::vector<float> logits(V);
  f.eval(std::span<const int32_t>(toks.data(), 1), 0, logits);
  for (int i = 0; i < n_new; ++i) {
    toks.push_back(argmax(logits.data(), V));
    f.eval(std::span<const int32_t>(&toks.back(), 1), 0, logits);
  }
  return toks;
}

std::vector<float> all_logits(const Model& m, const std::vector<int32_t>& toks, int64_t batch, int threads) {
  const int64_t V = static_cast<int64_t>(m.config().n_vocab), n = static_cast<int64_t>(toks.size());
  Forward f(m, n, batch, threads);
  std::vector<float> out(n * V);
  for (int64_t b = 0; b < n; b += batch) {
    const int64_t e = std::min(n, b + batch);
    f.eval(std::span<const int32_t>(toks.data() + b, e - b), 0, std::span<float>(out.data() + b * V, (e - b) * V));
  }
  return out;
}

// Writes stories260K as a GGUF with llama.cpp's layout (Q/K rows permuted) in `type`.
std::string write_stories_gguf(const fs::path& dir, GgmlType type) {
  auto ck = SafetensorsCheckpoint::open(kStories + "/hf");
  ModelConfig c = parse_hf_config(kStories + "/hf/config.json");
  const std::string path = (dir / ("stories-" + std::string(type_info(type).name) + ".gguf")).string();
  GgufWriter w(path);
  w.metadata().set("general.architecture", GgufValue::str("llama"));
  write_gguf_hparams(c, w.metadata());
  struct T {
    std::string hf, gguf;
    int perm_heads;  // 0: none
  };
  std::vector<T> ts{{"model.embed_tokens.weight", "token_embd.weight", 0}, {"model.norm.weight", "output_norm.weight", 0}};
  for (int il = 0; il < static_cast<int>(c.n_layer); ++il) {
    const std::string p = "model.layers." + std::to_string(il) + ".", g = "blk." + std::to_string(il) + ".";
    ts.push_back({p + "input_layernorm.weight", g + "attn_norm.weight", 0});
    ts.push_back({p + "post_attention_layernorm.weight", g + "ffn_norm.weight", 0});
    ts.push_back({p + "self_attn.q_proj.weight", g + "attn_q.weight", static_cast<int>(c.n_head)});
    ts.push_back({p + "self_attn.k_proj.weight", g + "attn_k.weight", static_cast<int>(c.n_head_kv)});
    ts.push_back({p + "self_attn.v_proj.weight", g + "attn_v.weight", 0});
    ts.push_back({p + "self_attn.o_proj.weight", g + "attn_output.weight", 0});
    ts.push_back({p + "mlp.gate_proj.weight", g + "ffn_gate.weight", 0});
    ts.push_back({p + "mlp.up_proj.weight", g + "ffn_up.weight", 0});
    ts.push_back({p + "mlp.down_proj.weight", g + "ffn_down.weight", 0});
  }
  std::vector<std::vector<std::byte>> data;
  for (const T& t : ts) {
    const StTensor& st = ck->get(t.hf);
    std::vector<float> v(st.n_elements);
    SafetensorsCheckpoint::read_f32(st, 0, v);
    const bool is_1d = st.shape.size() == 1;
    const uint64_t cols = st.cols(), rows = st.rows();
    if (t.perm_heads) {  // llama.cpp's converter permutation: row (h, 2i+j) <- (h, j*d/2 + i)
      const auto order = qk_row_order(t.perm_heads, rows / t.perm_heads);
      std::vector<float> p(v.size());
      for (uint64_t r = 0; r < rows; ++r) std::memcpy(&p[r * cols], &v[order[r] * cols], cols * 4);
      v = p;
    }
    const GgmlType tt = is_1d ? GgmlType::F32 : type;
    std::vector<std::byte> bytes(*row_bytes(tt, cols) * rows);
    quantize_rows(tt, v, bytes, static_cast<int64_t>(cols));
    w.add_tensor(t.gguf, is_1d ? std::vector<uint64_t>{cols} : std::vector<uint64_t>{cols, rows}, tt);
    data.push_back(std::move(bytes));
  }
  w.begin_data();
  for (size_t i = 0; i < ts.size(); ++i) w.write_tensor(ts[i].gguf, data[i]);
  w.commit();
  return path;
}

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("smolq-test-forward-") {}
};

// ---- naive reference: HF formulation in double, straight from the safetensors ----------
struct Naive {
  ModelConfig c;
  std::unique_ptr<SafetensorsCheckpoint> ck;
  std::vector<double> get(const std::string& name) {
    const StTensor& t = ck->get(name);
    std::vector<float> f(t.n_elements);
    SafetensorsCheckpoint::read_f32(t, 0, f);
    return std::vector<double>(f.begin(), f.end());
  }
  static std::vector<double> mv(const std::vector<double>& W, const std::vector<double>& x, size_t rows) {
    const size_t cols = x.size();
    std::vector<double> y(rows, 0.0);
    for (size_t r = 0; r < rows; ++r)
      for (size_t k = 0; k < cols; ++k) y[r] += W[r * cols + k] * x[k];
    return y;
  }
  std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<double>& g) const {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double s = 1.0 / std::sqrt(ss / x.size() + c.rms_eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * g[i];
    return y;
  }
  void rope_half(double* v, int pos) const {  // HF rotate_half
    const size_t d = c.head_dim, h = d / 2;
    for (size_t i = 0; i < h; ++i) {
      const double th = pos * std::pow(c.rope_theta, -2.0 * i / d);
      const double a = v[i], b = v[i + h];
      v[i] = a * std::cos(th) - b * std::sin(th);
      v[i + h] = b * std::cos(th) + a * std::sin(th);
    }
  }
  // Logits of every position of `toks`.
  std::vector<std::vector<double>> run(const std::vector<int32_t>& toks) {
    const size_t E = c.n_embd, hd = c.head_dim, n = toks.size();
    const auto emb = get("model.embed_tokens.weight");
    std::vector<std::vector<double>> x(n);
    for (size_t t = 0; t < n; ++t) x[t].assign(emb.begin() + toks[t] * E, emb.begin() + (toks[t] + 1) * E);
    for (size_t il = 0; il < c.n_layer; ++il) {
      const std::string p = "model.layers." + std::to_string(il) + ".";
      const auto Wq = get(p + "self_attn.q_proj.weight"), Wk = get(p + "self_attn.k_proj.weight");
      const auto Wv = get(p + "self_attn.v_proj.weight"), Wo = get(p + "self_attn.o_proj.weight");
      const auto Wg = get(p + "mlp.gate_proj.weight"), Wu = get(p + "mlp.up_proj.weight"), Wd = get(p + "mlp.down_proj.weight");
      const auto g1 = get(p + "input_layernorm.weight"), g2 = get(p + "post_attention_layernorm.weight");
      std::vector<std::vector<double>> q(n), k(n), v(n);
      for (size_t t = 0; t < n; ++t) {
        const auto h = rmsnorm(x[t], g1);
        q[t] = mv(Wq, h, c.q_dim());
        k[t] = mv(Wk, h, c.kv_dim());
        v[t] = mv(Wv, h, c.kv_dim());
        for (size_t hh = 0; hh < c.n_head; ++hh) rope_half(&q[t][hh * hd], static_cast<int>(t));
        for (size_t hh = 0; hh < c.n_head_kv; ++hh) rope_half(&k[t][hh * hd], static_cast<int>(t));
      }
      for (size_t t = 0; t < n; ++t) {
        std::vector<double> att(c.q_dim(), 0.0);
        for (size_t hh = 0; hh < c.n_head; ++hh) {
          const size_t g = hh / c.n_gqa();
          std::vector<double> s(t + 1);
          double mx = -1e300, sum = 0;
          for (size_t j = 0; j <= t; ++j) {
            double d = 0;
            for (size_t i = 0; i < hd; ++i) d += q[t][hh * hd + i] * k[j][g * hd + i];
            s[j] = d / std::sqrt(static_cast<double>(hd));
            mx = std::max(mx, s[j]);
          }
          for (double& e : s) sum += (e = std::exp(e - mx));
          for (size_t j = 0; j <= t; ++j)
            for (size_t i = 0; i < hd; ++i) att[hh * hd + i] += s[j] / sum * v[j][g * hd + i];
        }
        const auto o = mv(Wo, att, E);
        for (size_t i = 0; i < E; ++i) x[t][i] += o[i];
        const auto h = rmsnorm(x[t], g2);
        auto gt = mv(Wg, h, c.n_ff);
        const auto up = mv(Wu, h, c.n_ff);
        for (size_t i = 0; i < c.n_ff; ++i) gt[i] = gt[i] / (1 + std::exp(-gt[i])) * up[i];
        const auto dn = mv(Wd, gt, E);
        for (size_t i = 0; i < E; ++i) x[t][i] += dn[i];
      }
    }
    const auto gn = get("model.norm.weight");
    std::vector<std::vector<double>> out(n);
    for (size_t t = 0; t < n; ++t) out[t] = mv(emb, rmsnorm(x[t], gn), c.n_vocab);
    return out;
  }
};

}  // namespace

TEST_SUITE("test_forward") {
  TEST_CASE("stories260K: greedy decoding from BOS tells the golden story") {
    auto m = Model::open(kStories + "/hf");
    CHECK(m->config().n_vocab == 512);
    const auto vocab = load_llama2c_vocab(kStories + "/tok512.bin", 512);
    const auto toks = greedy(*m, 40, 2);
    std::string text;
    for (size_t i = 1; i < toks.size(); ++i) text += piece(vocab, toks[i]);
    INFO("generated: " << text);
    REQUIRE(text.size() >= kGolden.size());
    CHECK(text.substr(0, kGolden.size()) == kGolden);
  }

  TEST_CASE("logits are bit-identical for any thread count and batch split") {
    auto m = Model::open(kStories + "/hf");
    std::vector<int32_t> toks{1};
    std::mt19937 rng(7);
    for (int i = 0; i < 70; ++i) toks.push_back(static_cast<int32_t>(rng() % 512));
    const auto ref = all_logits(*m, toks, 71, 1);
    CHECK(all_logits(*m, toks, 71, 2) == ref);
    CHECK(all_logits(*m, toks, 16, 2) == ref);
    CHECK(all_logits(*m, toks, 1, 1) == ref);
    CHECK(all_logits(*m, toks, 5, 3) == ref);
  }

  TEST_CASE("several chunks in one pass: the logits, perplexity and KL divergence of one at a time") {
    auto m = Model::open(kStories + "/hf");
    std::mt19937 rng(11);
    std::vector<int32_t> toks;
    for (int i = 0; i < 5 * 40 + 7; ++i) toks.push_back(static_cast<int32_t>(rng() % 512));
    const std::span<const int32_t> all(toks);
    // Forward::eval_sequences against eval() of each sequence alone.
    const int64_t ctx = 40, first = 25, V = 512;
    Forward one(*m, ctx, ctx, 2), many(*m, ctx, ctx, 3, 3);
    std::vector<float> got(3 * (ctx - first) * V);
    many.eval_sequences(all.subspan(0, 3 * ctx), 3, first, got);
    for (int s = 0; s < 3; ++s) {
      std::vector<float> ref((ctx - first) * V);
      one.reset();
      one.eval(all.subspan(s * ctx, ctx), first, ref);
      CHECK(std::equal(ref.begin(), ref.end(), got.begin() + s * static_cast<int64_t>(ref.size())));
    }
    // The runs: 1, 2 or 3 chunks per pass (5 chunks: the last pass is partial), KL against a
    // copy of the model with one matrix in Q8_0.
    auto q = Model::open(kStories + "/hf");
    const WeightMatrix& w = q->layer(1).ffn_up;
    std::vector<float> wf(w.rows * w.cols);
    for (uint64_t r = 0; r < w.rows; ++r) w.dequantize_row(r, wf.data() + r * w.cols);
    const uint64_t rb = *row_bytes(GgmlType::Q8_0, w.cols);
    std::vector<std::byte> wq(rb * w.rows);
    quantize_rows(GgmlType::Q8_0, wf, wq, static_cast<int64_t>(w.cols));
    q->substitute_weight(w.name, GgmlType::Q8_0, wq.data(), rb);
    EvalOptions o;
    o.n_ctx = ctx;
    o.n_threads = 2;
    o.add_bos = true;
    o.chunks_per_pass = 1;
    const auto p1 = run_perplexity(*m, toks, o);
    const KldReport k1 = run_kl_divergence(*m, *q, toks, o).stats.report();
    CHECK(p1.running_ppl.size() == 5);
    CHECK(k1.kld.value > 0);
    for (int k : {2, 3}) {
      o.chunks_per_pass = k;
      const auto pk = run_perplexity(*m, toks, o);
      CHECK(pk.running_ppl == p1.running_ppl);
      CHECK(pk.stats.ppl_uncertainty() == p1.stats.ppl_uncertainty());
      const KldReport kk = run_kl_divergence(*m, *q, toks, o).stats.report();
      CHECK(kk.kld.value == k1.kld.value);
      CHECK(kk.ppl_q.value == k1.ppl_q.value);
      CHECK(kk.max_logit_drift == k1.max_logit_drift);
      CHECK(kk.kld_percentiles == k1.kld_percentiles);
    }
  }

  TEST_CASE("matches a naive double-precision HF implementation (rotate-half RoPE, unpermuted weights)") {
    auto m = Model::open(kStories + "/hf");
    Naive nv{m->config(), SafetensorsCheckpoint::open(kStories + "/hf")};
    std::vector<int32_t> toks{1, 403, 407, 261, 378, 430, 285, 31, 262, 350, 266, 43, 279, 380, 296, 269, 400};
    const auto ref = nv.run(toks);
    const auto got = all_logits(*m, toks, 7, 2);
    double max_diff = 0, max_abs = 0;
    for (size_t t = 0; t < toks.size(); ++t)
      for (size_t v = 0; v < 512; ++v) {
        max_diff = std::max(max_diff, std::fabs(got[t * 512 + v] - ref[t][v]));
        max_abs = std::max(max_abs, std::fabs(ref[t][v]));
      }
    INFO("max |f32 - f64| = " << max_diff << " (max |logit| " << max_abs << ")");
    CHECK(max_diff < 1e-4 * std::max(1.0, max_abs));
  }

  TEST_CASE("a GGUF with llama.cpp's permuted Q/K rows gives the HF checkpoint's logits") {
    TempDir tmp;
    auto hf = Model::open(kStories + "/hf");
    auto gg = Model::open(write_stories_gguf(tmp.path, GgmlType::F32));
    CHECK(gg->is_gguf());
    CHECK(gg->tied_output());
    std::vector<int32_t> toks{1, 403, 407, 261, 378, 430, 285, 31, 262, 350};
    CHECK(all_logits(*gg, toks, 10, 2) == all_logits(*hf, toks, 10, 2));

    // F16 weights: close to F32, same greedy story.
    auto f16 = Model::open(write_stories_gguf(tmp.path, GgmlType::F16));
    const auto a = all_logits(*f16, toks, 10, 2), b = all_logits(*hf, toks, 10, 2);
    double md = 0;
    for (size_t i = 0; i < a.size(); ++i) md = std::max(md, static_cast<double>(std::fabs(a[i] - b[i])));
    INFO("F16 vs F32 max |dlogit| = " << md);
    CHECK(md < 0.05);
    CHECK(md > 0);  // F16 rounding must show: the weights really went through the F16 decoder
    CHECK(greedy(*f16, 24, 1) == greedy(*hf, 24, 1));
  }

  TEST_CASE("RoPE table: unscaled angles, linear scaling and llama3 factors") {
    ModelConfig c;
    c.rope_dim = 8;
    c.head_dim = 8;
    c.rope_theta = 10000.0;
    c.n_ctx_train = 2048;
    auto t = rope_table(c, {}, 5);
    // position 3, pair 1: theta = 3 * 10000^(-2/8)
    const double th = 3 * std::pow(10000.0, -0.25);
    CHECK(t[3 * 8 + 2] == doctest::Approx(std::cos(th)).epsilon(1e-6));
    CHECK(t[3 * 8 + 3] == doctest::Approx(std::sin(th)).epsilon(1e-6));
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = 4.0;
    auto tl = rope_table(c, {}, 13);
    CHECK(tl[12 * 8 + 2] == doctest::Approx(t[3 * 8 + 2]).epsilon(1e-6));  // 12/4 == 3
    c.rope_scaling = {};
    std::vector<float> ff{1.0f, 2.0f, 1.0f, 1.0f};
    auto tf = rope_table(c, ff, 7);
    CHECK(tf[6 * 8 + 2] == doctest::Approx(t[3 * 8 + 2]).epsilon(1e-6));  // 6/2 == 3
    // llama3 factors: high frequencies kept, low frequencies divided by `factor`.
    c.rope_dim = 64;
    c.rope_theta = 500000.0;
    c.rope_scaling = {.type = "llama3", .factor = 8.0, .original_context = 8192, .low_freq_factor = 1.0, .high_freq_factor = 4.0};
    const auto f = llama3_rope_factors(c);
    REQUIRE(f.size() == 32);
    CHECK(f.front() == 1.0f);
    CHECK(f.back() == 8.0f);
    for (size_t i = 1; i < f.size(); ++i) CHECK(f[i] >= f[i - 1]);
  }

  TEST_CASE("HF rotate-half row order is llama.cpp's permutation") {
    // 2 heads of 4 rows: logical (h, 2i+j) <- stored (h, j*2 + i)
    CHECK(qk_row_order(2, 4) == std::vector<uint32_t>{0, 2, 1, 3, 4, 6, 5, 7});
  }
}
