#include "mix/optimize.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include "formats/error.h"
#include "quantize/ef_asym.h"
#include "quantize/tensor_quantizer.h"

namespace smolq {
namespace {

class OptimizingConsumer : public GramConsumer {
 public:
  OptimizingConsumer(Model& model, std::vector<OutputTensor>& outputs, const OptimizeRequest& req, OptimizeOutcome& out)
      : model_(model), req_(req), out_(out) {
    for (OutputTensor& o : outputs)
      if (o.passthrough.empty() && !type_info(o.type).is_float) by_name_[o.name] = &o;
    for (const WeightMatrix* w : model.matrices()) matrices_[w->name] = w;
  }

  void on_gram(GramMatrix& g) override {
    if (g.layer != held_layer_) release_held();  // the pass has left the layer of the held bytes
    held_layer_ = g.layer;
    const std::vector<float> mean_sq = g.mean_square();  // before req_.prepare may take H
    std::vector<OutputTensor*> site;
    std::vector<GgmlType> core_types;
    for (const std::string& name : g.weights) {
      auto it = by_name_.find(name);
      if (it == by_name_.end()) continue;  // copied unchanged, or kept in a float type
      site.push_back(it->second);
      if (req_.supports && req_.supports(it->second->type)) core_types.push_back(it->second->type);
    }
    if (req_.prepare && !core_types.empty()) req_.prepare(g, core_types, req_.gram.n_threads);
    for (OutputTensor* o : site) round_one(*o, g, mean_sq);
    const int done = static_cast<int>(site.size());
    if (req_.log && done)
      req_.log("optimize: " + (g.layer >= 0 ? "blk." + std::to_string(g.layer) + " " : std::string()) +
               gram_site_name(g.site) + " (H " + std::to_string(g.dim) + "x" + std::to_string(g.dim) + ", " +
               std::to_string(done) + " tensor(s))");
  }

  void restore() {
    for (const std::string& n : substituted_) model_.restore_weight(n);
    substituted_.clear();
  }

  bool written(const std::string& name) const { return written_.count(name) > 0; }

 private:
  void round_one(OutputTensor& o, const GramMatrix& g, const std::vector<float>& mean_sq) {
    const WeightMatrix& w = *matrices_.at(o.name);
    const int64_t rows = static_cast<int64_t>(w.rows), d = static_cast<int64_t>(w.cols);
    if (d != g.dim || o.shape.empty() || o.shape[0] != w.cols)
      throw Error("optimize: tensor '" + o.name + "' does not have rows of " + std::to_string(g.dim));
    const std::optional<uint64_t> rb = row_bytes(o.type, w.cols);
    if (!rb) throw Error("optimize: tensor '" + o.name + "' rows do not fit type " + std::string(type_info(o.type).name));
    // The weights in logical (output-file) row order, as the calibration model reads them.
    std::vector<float> wf(static_cast<size_t>(rows * d));
    const int nt = req_.gram.n_threads;
#pragma omp parallel for num_threads(nt)
    for (int64_t r = 0; r < rows; ++r) w.dequantize_row(static_cast<uint64_t>(r), wf.data() + r * d);
    const bool user_imatrix = !o.imatrix.empty();
    const std::span<const float> importance = user_imatrix ? std::span<const float>(o.imatrix) : std::span<const float>(mean_sq);
    auto bytes = std::make_unique<std::vector<std::byte>>(static_cast<size_t>(*rb * w.rows));
    const auto t0 = std::chrono::steady_clock::now();
    if (req_.supports && req_.supports(o.type)) {
      req_.round(o.type, wf, rows, d, g, importance, *bytes, nt);
      ++out_.optimized;
    } else {
      TensorQuantizeJob job;
      job.type = o.type;
      job.nrows = w.rows;
      job.ncols = w.cols;
      job.source = [&wf, d](uint64_t r0, uint64_t n, std::span<float> dst) {
        std::copy_n(wf.data() + static_cast<int64_t>(r0) * d, static_cast<int64_t>(n) * d, dst.data());
      };
      job.imatrix = importance;
      job.threads = nt;
      *bytes = quantize_tensor(job);
      ++out_.plain;
    }
    out_.round_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out_.from_imatrix += user_imatrix ? 1 : 0;
    if (req_.write) {
      req_.write(o, *bytes);
      written_.insert(o.name);
    } else {
      o.passthrough = *bytes;
    }
    if (req_.sequential) {
      model_.substitute_weight(o.name, o.type, bytes->data(), *rb);
      substituted_.push_back(o.name);
    }
    if (!req_.write) out_.storage.push_back(std::move(bytes));
    else if (req_.sequential) held_.emplace_back(o.name, std::move(bytes));
  }

  // Written bytes that the pass still reads as substitutions (this layer's) are dropped, their
  // weights restored, once the pass is past the layer: one layer's tensors in memory, not a file.
  void release_held() {
    for (auto& [name, bytes] : held_) {
      model_.restore_weight(name);
      substituted_.erase(std::find(substituted_.begin(), substituted_.end(), name));
    }
    held_.clear();
  }

  Model& model_;
  const OptimizeRequest& req_;
  OptimizeOutcome& out_;
  std::map<std::string, OutputTensor*> by_name_;
  std::map<std::string, const WeightMatrix*> matrices_;
  std::vector<std::string> substituted_;
  std::set<std::string> written_;  // handed to req_.write
  std::vector<std::pair<std::string, std::unique_ptr<std::vector<std::byte>>>> held_;
  int64_t held_layer_ = -2;
};

}  // namespace

OptimizeOutcome optimize_outputs(Model& model, std::vector<OutputTensor>& outputs, const OptimizeRequest& req) {
  if (!req.round) throw Error("optimize: no tensor rounder");
  const auto t0 = std::chrono::steady_clock::now();
  OptimizeOutcome out;
  OptimizingConsumer consumer(model, outputs, req, out);
  try {
    GramOptions go = req.gram;
    go.cross = req.asymmetric && req.sequential;
    run_gram_pass(model, req.tokens, go, consumer);
  } catch (...) {
    consumer.restore();
    throw;
  }
  consumer.restore();
  // A tensor the pass never reached (no Gram matrix: token_embd, a tied output) is written
  // plainly; one whose type cannot be made without importance data is an error here, as in
  // plan_quantization without --optimize.
  std::vector<std::string> missing;
  for (const OutputTensor& o : outputs)
    if (o.passthrough.empty() && !consumer.written(o.name) && type_info(o.type).needs_imatrix && o.imatrix.empty())
      missing.push_back(o.name);
  if (!missing.empty()) {
    std::string list;
    for (const auto& n : missing) list += (list.empty() ? "" : ", ") + n;
    throw UsageError("these tensors need an importance matrix and have no Gram matrix (give --imatrix FILE): " + list);
  }
  out.calib_tokens = gram_chunks(static_cast<int64_t>(req.tokens.size()), req.gram) * req.gram.n_ctx;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

ef::ColumnOrder parse_column_order(const std::string& s) {
  if (s == "act") return ef::ColumnOrder::kDescendingDiag;
  if (s == "natural") return ef::ColumnOrder::kNatural;
  throw UsageError("--opt-order must be act or natural, not '" + s + "'");
}

ErrorFeedbackCore error_feedback_core(const OptimizeSettings& s) {
  ef::Settings es;
  es.damp = s.damp;
  es.order = parse_column_order(s.order);
  es.refit_rounds = s.refit_rounds;
  es.cd_iters = s.cd_iters;
  struct FactorCache {
    int64_t layer = -2;
    GramSite site = GramSite::kAttnIn;
    std::map<int, ef::Factor> by_block;
    std::map<int, ef::AsymShift> shift_by_block;
    std::map<int, ef::AsymLowRank> low_rank_by_block;  // sites handed over in low-rank form (GramMatrix::xq)
    bool d_taken = false;  // prepare built the site's shifts from g.c_minus_h and took it
    void reset(const GramMatrix& g) {
      if (layer == g.layer && site == g.site) return;
      by_block.clear();
      shift_by_block.clear();
      low_rank_by_block.clear();
      d_taken = false;
      layer = g.layer;
      site = g.site;
    }
  };
  auto cache = std::make_shared<FactorCache>();
  const bool asym = s.asymmetric;
  const float alpha = static_cast<float>(s.asym_alpha);
  const float lattice_alpha = static_cast<float>(s.lattice_asym_alpha >= 0.0 ? s.lattice_asym_alpha : s.asym_alpha);
  ErrorFeedbackCore core;
  core.prepare = [es, cache, asym](GramMatrix& g, std::span<const GgmlType> types, int n_threads) {
    cache->reset(g);
    std::set<int> blocks;
    for (GgmlType t : types) blocks.insert(static_cast<int>(type_info(t).block_elems));
    for (auto it = blocks.begin(); it != blocks.end(); ++it) {
      if (cache->by_block.count(*it)) continue;
      if (std::next(it) == blocks.end())  // the last factor of the site: H goes with it
        cache->by_block.emplace(*it, ef::prepare(std::move(g.h), g.h_diag, g.dim, *it, es, n_threads));
      else
        cache->by_block.emplace(*it, ef::prepare(std::span<const float>(g.h), g.h_diag, g.dim, *it, es, n_threads));
    }
    if (asym && !g.xq.empty()) {  // low-rank form: G = H~^-1 X~^T per factor, made while the pass holds X~
      for (const auto& [be, f] : cache->by_block)
        if (!cache->low_rank_by_block.count(be))
          cache->low_rank_by_block.emplace(be, ef::prepare_asym_low_rank(g.xq, g.xf, g.n_tokens, f, n_threads));
      return;
    }
    if (!asym || g.c_minus_h.empty()) return;
    // Every tensor of the site that round() will see gets its shift now; the last one is made in
    // C - H's own storage (d_in^2 floats, 256 MB at d_in = 8192), which goes before the sweeps.
    for (auto it = cache->by_block.begin(); it != cache->by_block.end(); ++it) {
      if (cache->shift_by_block.count(it->first)) continue;
      if (std::next(it) == cache->by_block.end())
        cache->shift_by_block.emplace(it->first, ef::prepare_asym_shift(std::move(g.c_minus_h), it->second, n_threads));
      else
        cache->shift_by_block.emplace(it->first, ef::prepare_asym_shift(std::span<const float>(g.c_minus_h), it->second,
                                                                        n_threads));
    }
    std::vector<float>().swap(g.c_minus_h);
    cache->d_taken = true;
  };
  core.round = [es, cache, asym, alpha, lattice_alpha](GgmlType type, std::span<const float> w, int64_t rows, int64_t d,
                                        const GramMatrix& g, std::span<const float> imp, std::span<std::byte> out,
                                        int n_threads) {
    cache->reset(g);
    const int be = static_cast<int>(type_info(type).block_elems);
    auto it = cache->by_block.find(be);
    if (it == cache->by_block.end()) {
      if (g.h.empty()) throw Error("internal: optimize: H was consumed before a factor for blocks of " + std::to_string(be));
      it = cache->by_block.emplace(be, ef::prepare(std::span<const float>(g.h), g.h_diag, d, be, es, n_threads)).first;
    }
    const float a = ef::is_lattice(type) ? lattice_alpha : alpha;
    auto lr = cache->low_rank_by_block.find(be);
    if (asym && a != 0.0f && lr == cache->low_rank_by_block.end() && !g.xq.empty())
      lr = cache->low_rank_by_block.emplace(be, ef::prepare_asym_low_rank(g.xq, g.xf, g.n_tokens, it->second, n_threads))
               .first;
    if (asym && a != 0.0f && lr != cache->low_rank_by_block.end()) {
      std::vector<float> target(w.begin(), w.end());
      ef::apply_asym_low_rank(lr->second, target, rows, n_threads, a);
      return ef::quantize_tensor(type, target, rows, d, it->second, imp, out, n_threads);
    }
    if (!asym || (g.c_minus_h.empty() && !cache->d_taken) || a == 0.0f)
      return ef::quantize_tensor(type, w, rows, d, it->second, imp, out, n_threads);
    auto sh = cache->shift_by_block.find(be);
    if (sh == cache->shift_by_block.end()) {
      if (cache->d_taken) throw Error("internal: optimize: no asymmetric shift for blocks of " + std::to_string(be));
      const std::span<const float> D(g.c_minus_h);
      sh = cache->shift_by_block.emplace(be, ef::prepare_asym_shift(D, it->second, n_threads)).first;
    }
    std::vector<float> target(w.begin(), w.end());
    ef::apply_asym_shift(sh->second, it->second, target, rows, n_threads, a);
    ef::quantize_tensor(type, target, rows, d, it->second, imp, out, n_threads);
  };
  return core;
}

TensorRounder error_feedback_rounder(const OptimizeSettings& s) { return error_feedback_core(s).round; }

std::vector<std::string> optimize_metadata_kv(const OptimizeSettings& s, const std::string& calib_name,
                                              const std::string& calib_xxh3, bool user_imatrix) {
  std::ostringstream damp;
  damp << s.damp;
  const std::string p = "smolq.optimize.";
  std::vector<std::string> kv = {
      p + "method=str:error-feedback",
      p + "calib.file=str:" + calib_name,
      p + "calib.xxh3=str:" + calib_xxh3,
      p + "calib.chunks=int:" + std::to_string(s.n_chunks),
      p + "calib.ctx=int:" + std::to_string(s.n_ctx),
      p + "inputs=str:" + (!s.sequential ? "full" : s.asymmetric ? "asym" : "sequential"),
      p + "damp=float:" + damp.str(),
      p + "order=str:" + s.order,
      p + "importance=str:" + (user_imatrix ? "imatrix file" : "diag(H)/n"),
  };
  if (s.sequential && s.asymmetric) {
    std::ostringstream a;
    a << s.asym_alpha;
    kv.push_back(p + "asym_alpha=float:" + a.str());
    if (s.lattice_asym_alpha >= 0.0 && s.lattice_asym_alpha != s.asym_alpha) {  // the IQ2 / IQ3 families' own
      std::ostringstream la;
      la << s.lattice_asym_alpha;
      kv.push_back(p + "lattice_asym_alpha=float:" + la.str());
    }
  }
  if (s.refit_rounds > 0) kv.push_back(p + "refit=int:" + std::to_string(s.refit_rounds));  // off by default: no key
  // The coordinate-descent passes after the sweep (quantize/ef_cd.h); no key when off.
  if (s.cd_iters > 0) kv.push_back(p + "cd=int:" + std::to_string(s.cd_iters));
  return kv;
}

}  // namespace smolq
