// Sweep evaluation: every quant against the baseline under llama-perplexity's KL-divergence
// protocol (eval/perplexity.h), chunk by chunk, with per-chunk records in the cache; and the
// greedy generations.
//
// Memory: one pass over the text evaluates the baseline once per chunk and every quant of a
// group against it, so a group keeps its models mapped together. A model costs its weight
// bytes (mapped, read on every chunk), its forward buffers (K/V cache and activations) and
// one chunk of scored logits; groups are filled greedily up to SweepOptions::max_memory
// (at least one quant per group). Without cached baseline logits a second group recomputes them.
#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>

#include "formats/atomic_file.h"
#include "formats/error.h"
#include "formats/interrupt.h"
#include "formats/mapped_file.h"
#include "eval/forward.h"
#include "verify/sweep_cache.h"
#include "verify/sweep_internal.h"
#include "text/unicode.h"

namespace smolq::sweep {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string chunk_file(const std::string& dir, int64_t chunk) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "/chunk-%05lld.bin", static_cast<long long>(chunk));
  return dir + buf;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

struct EvalState {
  Target* t = nullptr;
  uint64_t key = 0;
  std::string dir;
  std::vector<std::optional<ChunkRecord>> rec;  // per chunk
  bool complete() const {
    return std::all_of(rec.begin(), rec.end(), [](const auto& r) { return r.has_value(); });
  }
};

// Replays the chunk records in chunk order through KldStats: the same additions in the same
// order as run_kl_divergence, so the statistics equal `smolq perplexity --base` exactly. With
// chunks still missing (progress display) the available ones are used.
int64_t replay(const Context& c, const EvalState& s, QuantRow& row) {
  KldStats stats;
  double secs = 0;
  int64_t n = 0;
  const int64_t V = static_cast<int64_t>(c.base->config().n_vocab);
  for (const auto& r : s.rec) {
    if (!r) continue;
    for (const auto& p : r->positions) stats.add(p, V);
    secs += r->seconds;
    ++n;
  }
  row.kld = stats.report();
  row.eval_seconds = secs;
  return n;
}

// The Forward buffers of one model for this protocol: what ChunkRunner allocates.
uint64_t runner_bytes(const Model& m, const EvalOptions& o) { return ChunkRunner(m, o).buffer_bytes(); }

// What the protocol puts into every cache key: the evaluation text and how it is cut.
void add_protocol(const Stream& st, ContentHasher& h) {
  const EvalOptions& o = st.eval;
  h.add(st.tokens_hash).add(static_cast<uint64_t>(o.n_ctx)).add(static_cast<uint64_t>(o.add_bos));
  h.add(static_cast<uint64_t>(static_cast<uint32_t>(o.bos_id)));
}

// One state per target on stream `st`, with the chunk records already in the cache.
std::vector<EvalState> read_states(Context& c, std::vector<Target>& targets, const Stream& st) {
  const int64_t n_chunks = st.n_chunks;
  std::vector<EvalState> states(targets.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    EvalState& s = states[i];
    s.t = &targets[i];
    ContentHasher h;
    h.add(kSweepCacheVersion).add("eval").add(c.base_fp).add(s.t->fp);
    add_protocol(st, h);
    s.key = h.digest();
    s.dir = c.cache_dir + "/eval-" + safe_label(s.t->row.label) + "-" + hex64(s.key);
    s.rec.resize(static_cast<size_t>(n_chunks));
    for (int64_t ch = 0; ch < n_chunks; ++ch) {
      s.rec[static_cast<size_t>(ch)] = read_chunk_record(chunk_file(s.dir, ch), s.key, ch);
      if (s.rec[static_cast<size_t>(ch)]) ++s.t->row.chunks_cached;
    }
    c.res.cache.chunks_reused += s.t->row.chunks_cached;
  }
  return states;
}

// A row whose every chunk of every stream is evaluated (`per_stream`: its state on each):
// its statistics (pooled over the streams in order; with an evaluation set also per
// category), its generations, then the quant_ready event.
void complete_row(Context& c, const std::vector<const EvalState*>& per_stream) {
  Target& t = *per_stream.front()->t;
  KldStats pooled;
  double secs = 0;
  const int64_t V = static_cast<int64_t>(c.base->config().n_vocab);
  t.row.category_kld.clear();
  for (const EvalState* s : per_stream) {
    KldStats one;
    for (const auto& r : s->rec) {
      for (const auto& p : r->positions) {
        pooled.add(p, V);
        if (c.o.eval_set) one.add(p, V);
      }
      secs += r->seconds;
    }
    if (c.o.eval_set) t.row.category_kld.push_back(one.report());
  }
  t.row.kld = pooled.report();
  t.row.eval_seconds = secs;
  const std::unique_ptr<Model> opened = Model::open(t.row.path);
  t.row.generations = generate_all(c, *opened, t.fp, t.row.label);
  if (c.ev.quant_ready) c.ev.quant_ready(t.row);
}

// Memory-bounded groups of the pending states: the baseline plus each quant's file and
// `per_model` bytes, filled greedily up to --max-memory (at least one quant per group).
std::vector<std::vector<EvalState*>> plan_groups(const Context& c, const std::vector<EvalState*>& pending,
                                                 uint64_t per_model) {
  const uint64_t base_cost = c.base->weight_bytes() + per_model;
  std::vector<std::vector<EvalState*>> groups;
  uint64_t used = base_cost;
  for (EvalState* s : pending) {
    const uint64_t cost = s->t->row.file_size + per_model;
    if (groups.empty() || (c.o.max_memory > 0 && used + cost > c.o.max_memory && !groups.back().empty())) {
      groups.emplace_back();
      used = base_cost;
    }
    groups.back().push_back(s);
    used += cost;
  }
  if (c.o.max_memory > 0 && base_cost + pending.front()->t->row.file_size + per_model > c.o.max_memory)
    c.log("warning: the baseline and one quant need more than --max-memory; evaluating one quant at a time");
  return groups;
}

// What the groups of one evaluation share: the protocol's shape, the baseline's logits of the
// current chunk (from the cache under base_dir, else computed) and the logits buffers.
struct EvalPass {
  const Stream* st = nullptr;
  int64_t n_chunks = 0, first = 0, V = 0;
  uint64_t base_key = 0;
  std::string base_dir;
  std::unique_ptr<ChunkRunner> base_runner;  // created when a chunk's baseline logits are not cached
  std::vector<float> lb, lq;
  int64_t total_forwards = 0, done_forwards = 0;
};

// The baseline's logits of chunk `ch` into p.lb.
void baseline_logits(Context& c, EvalPass& p, std::span<const int32_t> chunk, int64_t ch) {
  const std::string base_file = chunk_file(p.base_dir, ch);
  if (c.o.cache_base_logits && read_logits_record(base_file, p.base_key, ch, p.lb)) {
    ++c.res.cache.base_chunks_reused;
    return;
  }
  if (!p.base_runner) p.base_runner = std::make_unique<ChunkRunner>(*c.base, p.st->eval);
  const auto t0 = Clock::now();
  p.base_runner->run(chunk, p.first, p.lb);
  c.res.base_eval_seconds += seconds_since(t0);
  ++c.res.cache.base_chunks_computed;
  if (c.o.cache_base_logits) write_logits_record(base_file, p.base_key, ch, p.lb);
}

// One quant on chunk `ch` against p.lb: its chunk record (cached), the progress events.
void evaluate_chunk(Context& c, EvalPass& p, EvalState& s, ChunkRunner& runner, std::span<const int32_t> chunk,
                    int64_t ch) {
  const size_t ci = static_cast<size_t>(ch);
  const int64_t first = p.first, V = p.V, n_ctx = p.st->eval.n_ctx;
  const auto t0 = Clock::now();
  runner.run(chunk, first, p.lq);
  ChunkRecord r;
  r.seconds = seconds_since(t0);
  // Row j is position first + j and predicts token first + j + 1 (as run_kl_divergence).
  for (int64_t j = 0; j + first + 1 < n_ctx; ++j) {
    const std::span<const float> b(p.lb.data() + j * V, static_cast<size_t>(V)), q(p.lq.data() + j * V, static_cast<size_t>(V));
    r.positions.push_back(compare_position(b, q, chunk[static_cast<size_t>(first + j + 1)]));
  }
  write_chunk_record(chunk_file(s.dir, ch), s.key, ch, r);
  double kld = 0;
  for (const auto& pos : r.positions) kld += pos.kld;
  s.rec[ci] = std::move(r);
  ++s.t->row.chunks_computed;
  ++c.res.cache.chunks_computed;
  ++p.done_forwards;
  if (c.ev.quant_progress) {
    QuantRow partial = s.t->row;
    const int64_t have = replay(c, s, partial);
    c.ev.quant_progress(partial, have, p.n_chunks);
  }
  c.progress("evaluate", p.done_forwards, p.total_forwards,
             s.t->row.label + (p.st->name.empty() ? "" : " " + p.st->name) + " chunk " + std::to_string(ch + 1) + "/" + std::to_string(p.n_chunks) +
                 fmt(" KLD %.4f", kld / std::max<size_t>(1, s.rec[ci]->positions.size())));
}

// Group `g` of `n_groups`: its models opened together, every chunk one of them lacks evaluated.
void evaluate_group(Context& c, EvalPass& p, const std::vector<EvalState*>& group, size_t g, size_t n_groups) {
  const EvalOptions& o = p.st->eval;
  std::string names;
  for (EvalState* s : group) names += (names.empty() ? "" : ", ") + s->t->row.label;
  c.log("evaluate" + (p.st->name.empty() ? std::string() : " " + p.st->name) + (n_groups > 1 ? " group " + std::to_string(g + 1) + "/" + std::to_string(n_groups) : std::string()) +
        ": " + names + " (" + std::to_string(p.n_chunks) + " chunks of " + std::to_string(o.n_ctx) + " tokens)");
  std::vector<std::unique_ptr<Model>> models;
  std::vector<std::unique_ptr<ChunkRunner>> runners;
  for (EvalState* s : group) {
    models.push_back(Model::open(s->t->row.path));
    if (models.back()->config().n_vocab != c.base->config().n_vocab)
      throw Error(s->t->row.path + " has a vocabulary of " + std::to_string(models.back()->config().n_vocab) +
                  " tokens, the baseline " + std::to_string(p.V));
    runners.push_back(std::make_unique<ChunkRunner>(*models.back(), o));
    fs::create_directories(s->dir);
  }
  for (int64_t ch = 0; ch < p.n_chunks; ++ch) {
    const size_t ci = static_cast<size_t>(ch);
    if (std::all_of(group.begin(), group.end(), [&](EvalState* s) { return s->rec[ci].has_value(); })) continue;
    const auto chunk = std::span<const int32_t>(p.st->tokens).subspan(static_cast<size_t>(ch * o.n_ctx), static_cast<size_t>(o.n_ctx));
    baseline_logits(c, p, chunk, ch);
    check_interrupted();
    for (size_t k = 0; k < group.size(); ++k) {
      if (group[k]->rec[ci]) continue;
      evaluate_chunk(c, p, *group[k], *runners[k], chunk, ch);
      check_interrupted();
    }
  }
}


// Every pending state of one stream: memory-bounded groups, each a pass over the stream's chunks.
void evaluate_stream(Context& c, const Stream& st, const std::vector<EvalState*>& pending,
                     const std::function<void(EvalState&)>& done) {
  const EvalOptions& o = st.eval;
  EvalPass p;
  p.st = &st;
  p.n_chunks = st.n_chunks;
  p.first = o.n_ctx / 2;
  p.V = static_cast<int64_t>(c.base->config().n_vocab);
  const size_t n_logits = static_cast<size_t>((o.n_ctx - p.first) * p.V);
  ContentHasher bh;
  bh.add(kSweepCacheVersion).add("base-logits").add(c.base_fp);
  add_protocol(st, bh);
  p.base_key = bh.digest();
  p.base_dir = c.cache_dir + "/base-" + hex64(p.base_key);

  const uint64_t per_model = runner_bytes(*c.base, o) + n_logits * sizeof(float);
  const std::vector<std::vector<EvalState*>> groups = plan_groups(c, pending, per_model);
  if (c.o.cache_base_logits) fs::create_directories(p.base_dir);
  p.lb.resize(n_logits);
  p.lq.resize(n_logits);
  for (EvalState* s : pending)
    for (const auto& r : s->rec) p.total_forwards += r ? 0 : 1;
  for (size_t g = 0; g < groups.size(); ++g) {
    evaluate_group(c, p, groups[g], g, groups.size());
    for (EvalState* s : groups[g]) done(*s);
  }
}

}  // namespace

void evaluate_targets(Context& c, std::vector<Target>& targets) {
  const size_t n_streams = c.streams.size();
  std::vector<std::vector<EvalState>> states;  // [stream][target]
  for (const Stream& st : c.streams) states.push_back(read_states(c, targets, st));
  auto per_stream = [&](size_t ti) {
    std::vector<const EvalState*> v;
    for (size_t si = 0; si < n_streams; ++si) v.push_back(&states[si][ti]);
    return v;
  };
  auto complete_everywhere = [&](size_t ti) {
    for (size_t si = 0; si < n_streams; ++si)
      if (!states[si][ti].complete()) return false;
    return true;
  };
  // Rows whose every chunk is cached are ready at once (generations may still run); the others
  // when their last stream's group is done.
  for (size_t ti = 0; ti < targets.size(); ++ti)
    if (complete_everywhere(ti)) complete_row(c, per_stream(ti));
  for (size_t si = 0; si < n_streams; ++si) {
    std::vector<EvalState*> pending;
    for (auto& s : states[si])
      if (!s.complete()) pending.push_back(&s);
    if (pending.empty()) continue;
    evaluate_stream(c, c.streams[si], pending, [&](EvalState& s) {
      const size_t ti = static_cast<size_t>(s.t - targets.data());
      if (complete_everywhere(ti)) complete_row(c, per_stream(ti));
    });
  }
}

// ---- generations --------------------------------------------------------------------------
namespace {

Generation greedy(const Context& c, const Model& m, std::span<const int32_t> prompt) {
  const int64_t V = static_cast<int64_t>(m.config().n_vocab);
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  Forward f(m, n_prompt + c.o.n_generate, std::max<int64_t>(1, n_prompt), c.eval.n_threads);
  std::vector<float> logits(static_cast<size_t>(V));
  f.eval(prompt, n_prompt - 1, logits);
  std::vector<int32_t> out;
  Generation g;
  for (int i = 0; i < c.o.n_generate; ++i) {
    // Greedy: the first index of the largest logit.
    const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (std::find(c.stop_ids.begin(), c.stop_ids.end(), next) != c.stop_ids.end()) {
      g.stopped = true;
      break;
    }
    out.push_back(next);
    if (i + 1 == c.o.n_generate) break;
    f.eval(std::span<const int32_t>(&next, 1), 0, logits);
    check_interrupted();
  }
  g.n_tokens = static_cast<int>(out.size());
  // A token boundary can split a character: keep the bytes, but show valid UTF-8.
  g.text = unicode::replace_invalid_utf8(c.tokenizer->decode(out, /*skip_special=*/true));
  return g;
}

}  // namespace

std::vector<Generation> generate_all(Context& c, const Model& model, uint64_t model_fp, const std::string& label) {
  if (c.prompt_ids.empty() || c.o.n_generate <= 0) return {};
  ContentHasher h;
  h.add(kSweepCacheVersion).add("gen").add(model_fp).add(static_cast<uint64_t>(c.o.n_generate));
  for (const auto& p : c.prompt_ids) h.add_bytes(p.data(), p.size() * sizeof(int32_t));
  h.add_bytes(c.stop_ids.data(), c.stop_ids.size() * sizeof(int32_t));
  const uint64_t key = h.digest();
  const std::string path = c.cache_dir + "/gen-" + safe_label(label) + "-" + hex64(key) + ".json";
  if (file_exists(path)) {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    std::string_view k;
    simdjson::dom::array arr;
    if (!parser.load(path).get(root) && !root["key"].get(k) && k == hex64(key) && !root["generations"].get(arr)) {
      std::vector<Generation> v;
      bool ok = true;
      for (auto e : arr) {
        Generation g;
        std::string_view text;
        int64_t n = 0;
        ok = ok && !e["text"].get(text) && !e["n_tokens"].get(n) && !e["stopped"].get(g.stopped);
        g.text = std::string(text);
        g.n_tokens = static_cast<int>(n);
        v.push_back(std::move(g));
      }
      if (ok && v.size() == c.prompt_ids.size()) {
        ++c.res.cache.generations_reused;
        return v;
      }
    }
  }
  std::vector<Generation> v;
  for (size_t i = 0; i < c.prompt_ids.size(); ++i) {
    c.progress("generate " + label, static_cast<int64_t>(i), static_cast<int64_t>(c.prompt_ids.size()));
    v.push_back(greedy(c, model, c.prompt_ids[i]));
  }
  JsonWriter j;
  j.begin_object().key("key").value(hex64(key)).key("generations").begin_array();
  for (const auto& g : v)
    j.begin_object().key("text").value(g.text).key("n_tokens").value(g.n_tokens).key("stopped").value(g.stopped).end_object();
  j.end_array().end_object();
  write_file_atomic(path, j.str() + "\n");
  ++c.res.cache.generations_done;
  return v;
}

}  // namespace smolq::sweep
