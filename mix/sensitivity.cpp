// Building a sensitivity profile (mix/sensitivity.h): one base pass over the calibration
// text (logits and input-column statistics), the quantization error of every tensor at every
// candidate type, then forward passes with quantized copies substituted into the model.
#include "mix/sensitivity.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <map>
#include <numeric>

#include "formats/error.h"
#include "formats/interrupt.h"
#include "quantize/allocate.h"
#include "quantize/registry.h"
#include "quantize/tensor_quantizer.h"
#include "quantize/tensor_roles.h"
#include "eval/forward.h"
#include "eval/metrics.h"
#include "eval/perplexity.h"
#include "verify/sweep_cache.h"

namespace smolq {
namespace {

using Clock = std::chrono::steady_clock;

// The reference type of a tensor: the candidate nearest this many bits per weight (ties: the
// first in ladder order). 4.5 bpw sits in the middle of the range the standard targets use
// (Q3_K_M ... Q5_K_M on SmolLM are 4.9-6.7 bpw), where the linear predictor matters most, and
// its ΔKLD is far above the float noise of the forward pass.
constexpr double kReferenceBpw = 4.5;

// E(t, k) is estimated on at most this many rows of each tensor, evenly spaced, and scaled by
// rows / sampled. Rows quantize independently, so this is the same statistic on a subset; the
// gain and every prediction of a tensor use the same rows, so their ratios are consistent.
// (token_embd has 49,152 rows: the full error at 7 types would cost more than the rest.)
constexpr uint64_t kErrorRows = 512;

// Sums of x_j^2 over the calibration tokens for every matmul input (the imatrix statistic,
// kept in double; the tied output projection is collected under token_embd's name).
class ColumnStats : public ActivationObserver {
 public:
  void observe(const WeightMatrix& w, const float* x, int64_t n_tokens) override {
    Entry& e = entries_[w.name];
    if (e.sums.empty()) e.sums.assign(w.cols, 0.0);
    for (int64_t t = 0; t < n_tokens; ++t)
      for (uint64_t j = 0; j < w.cols; ++j) e.sums[j] += static_cast<double>(x[t * w.cols + j]) * x[t * w.cols + j];
    e.count += n_tokens;
  }
  // Mean square per column; all ones when the tensor was never a matmul input.
  std::vector<double> weights(const std::string& name, uint64_t cols) const {
    auto it = entries_.find(name);
    if (it == entries_.end() || it->second.count == 0) return std::vector<double>(cols, 1.0);
    std::vector<double> w(it->second.sums);
    for (double& v : w) v /= static_cast<double>(it->second.count);
    return w;
  }

 private:
  struct Entry {
    std::vector<double> sums;
    int64_t count = 0;
  };
  std::map<std::string, Entry> entries_;
};

// Everything a measurement pass needs: the calibration chunks, the base logits, one runner.
class KldMeter {
 public:
  KldMeter(Model& m, const ProfileInputs& in, const ProfileSettings& s)
      : s_(s), vocab_(static_cast<int64_t>(m.config().n_vocab)) {
    EvalOptions o;
    o.n_ctx = s.n_ctx;
    o.n_batch = s.n_ctx;
    o.n_threads = in.n_threads;
    o.add_bos = in.add_bos;
    o.bos_id = in.bos_id;
    runner_ = std::make_unique<ChunkRunner>(m, o);
    tokens_ = in.calib_tokens;
    logits_.resize(static_cast<size_t>(s.n_ctx * vocab_));
    threads_ = in.n_threads;
  }
  void base_pass(ColumnStats& stats) {
    base_.resize(static_cast<size_t>(s_.n_chunks * s_.n_ctx * vocab_));
    for (int64_t c = 0; c < s_.n_chunks; ++c)
      runner_->run(tokens_.subspan(c * s_.n_ctx, s_.n_ctx), 0,
                   std::span<float>(base_).subspan(static_cast<size_t>(c * s_.n_ctx * vocab_),
                                                   static_cast<size_t>(s_.n_ctx * vocab_)),
                   &stats);
  }
  // Mean KL(base || model as it is now) over every calibration position.
  double measure() {
    check_interrupted();
    ++passes_;
    std::vector<double> kld(static_cast<size_t>(s_.n_ctx));
    double sum = 0;
    for (int64_t c = 0; c < s_.n_chunks; ++c) {
      runner_->run(tokens_.subspan(c * s_.n_ctx, s_.n_ctx), 0, logits_);
      const float* base = base_.data() + c * s_.n_ctx * vocab_;
#pragma omp parallel for num_threads(threads_) schedule(static)
      for (int64_t p = 0; p < s_.n_ctx; ++p)
        kld[p] = kl_divergence(std::span<const float>(base + p * vocab_, vocab_),
                               std::span<const float>(logits_.data() + p * vocab_, vocab_));
      for (double v : kld) sum += v;  // in position order: the same sum for any thread count
    }
    return sum / static_cast<double>(s_.n_chunks * s_.n_ctx);
  }
  int passes() const { return passes_; }

 private:
  const ProfileSettings& s_;
  int64_t vocab_;
  std::unique_ptr<ChunkRunner> runner_;
  std::span<const int32_t> tokens_;
  std::vector<float> base_, logits_;
  int threads_ = 1;
  int passes_ = 0;
};

// One tensor being profiled: its stored encoding (a copy of the model's entry taken before any
// substitution, so copies are always made from the original weights; rows are decoded as the
// quantizer asks for them, never all held as floats: 12 GB at 3B), the column weights, the
// importance vector the quantizer gets, and quantized copies kept for substitution.
struct Work {
  WeightMatrix src;
  std::vector<float> sample;      // the rows E is estimated on, contiguous
  uint64_t n_sample = 0;
  double sample_scale = 1;        // rows / n_sample
  std::vector<double> colw;
  std::vector<float> imatrix;
  std::map<size_t, std::vector<std::byte>> copies;  // by candidate index
};

std::vector<std::byte> quantize_copy(const Work& wk, GgmlType type, int threads, bool sample_only = false) {
  TensorQuantizeJob job;
  job.type = type;
  job.nrows = sample_only ? wk.n_sample : wk.src.rows;
  job.ncols = wk.src.cols;
  const uint64_t cols = wk.src.cols;
  if (sample_only) {
    const float* src = wk.sample.data();
    job.source = [src, cols](uint64_t r0, uint64_t n, std::span<float> out) {
      std::copy(src + r0 * cols, src + (r0 + n) * cols, out.begin());
    };
  } else {
    const WeightMatrix* src = &wk.src;
    job.source = [src, cols](uint64_t r0, uint64_t n, std::span<float> out) {
      for (uint64_t r = 0; r < n; ++r) src->dequantize_row(r0 + r, out.data() + r * cols);
    };
  }
  job.imatrix = wk.imatrix;
  job.threads = threads;
  return quantize_tensor(job);
}

// E = Σ_i Σ_j a_j (dq_ij - w_ij)^2 over the sampled rows (q: their quantized copy), scaled to
// the whole tensor; row sums in parallel, added in row order.
double weighted_error(const Work& wk, GgmlType type, std::span<const std::byte> q, int threads) {
  const uint64_t rows = wk.n_sample, cols = wk.src.cols;
  const uint64_t rb = *row_bytes(type, cols);
  std::vector<double> per_row(rows);
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> dq(cols);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < static_cast<int64_t>(rows); ++r) {
      dequantize_rows(type, q.subspan(r * rb, rb), dq);
      const float* x = wk.sample.data() + r * cols;
      double e = 0;
      for (uint64_t j = 0; j < cols; ++j) {
        const double d = static_cast<double>(dq[j]) - x[j];
        e += wk.colw[j] * d * d;
      }
      per_row[r] = e;
    }
  }
  double total = 0;
  for (double v : per_row) total += v;
  return total * wk.sample_scale;
}

size_t reference_index(const std::vector<GgmlType>& types) {
  size_t best = 0;
  for (size_t k = 1; k < types.size(); ++k)
    if (std::abs(type_info(types[k]).bits_per_weight() - kReferenceBpw) <
        std::abs(type_info(types[best]).bits_per_weight() - kReferenceBpw))
      best = k;
  return best;
}

std::string sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3e", v);
  return buf;
}

std::string role_label(TensorRole r) { return std::string(role_name(r)); }

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  if (n < 3) return 0;
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n, my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : 0;
}

}  // namespace

double SensitivityProfile::predict(size_t t, size_t k) const {
  const ProfileTensor& p = tensors[t];
  if (p.measured[k] >= 0) return p.measured[k];
  return p.gain * p.error[k];
}

const ProfileTensor* SensitivityProfile::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

uint64_t profile_settings_fp(const ProfileSettings& s, bool has_imatrix) {
  ContentHasher h;
  h.add("smolq-profile").add(static_cast<uint64_t>(SensitivityProfile::kVersion));
  h.add(static_cast<uint64_t>(s.n_ctx)).add(static_cast<uint64_t>(s.n_chunks));
  h.add(static_cast<uint64_t>(s.max_group_passes)).add(static_cast<uint64_t>(s.n_validate));
  h.add(has_imatrix ? 1 : 0);
  return h.digest();
}

uint64_t calib_fingerprint(std::span<const int32_t> tokens, bool add_bos, int32_t bos_id, const ProfileSettings& s) {
  const size_t used = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(tokens.size()), s.n_ctx * s.n_chunks));
  ContentHasher h;
  h.add("calib").add(add_bos ? 1 : 0).add(static_cast<uint64_t>(static_cast<uint32_t>(bos_id)));
  h.add_bytes(tokens.data(), used * sizeof(int32_t));
  return h.digest();
}

namespace {

// The steps of build_profile over shared state: the model (whose weights are substituted and
// restored), the profile being filled, per-tensor work buffers and the KLD meter.
class ProfileBuilder {
 public:
  ProfileBuilder(Model& model, const ProfileInputs& in, const ProfileSettings& s, int threads,
                 const std::function<void(const std::string&)>& log)
      : model_(model), in_(in), s_(s), threads_(threads), log_(log), meter_(model, in, s), mats_(model.matrices()),
        work_(mats_.size()) {}

  // 1. Base pass: reference logits and column statistics.
  void base_pass() {
    log_("profile: base pass over " + std::to_string(s_.n_chunks * s_.n_ctx) + " calibration tokens");
    meter_.base_pass(stats_);
  }

  // 2. Candidates and quantization error of every tensor at every candidate.
  void measure_errors(SensitivityProfile& p) {
    const CandidateOptions copt{.has_imatrix = p.has_imatrix, .include_f16 = true};
    for (size_t i = 0; i < mats_.size(); ++i) {
      const WeightMatrix& w = *mats_[i];
      ProfileTensor pt;
      pt.name = w.name;
      pt.rows = w.rows;
      pt.cols = w.cols;
      pt.types = candidate_types(make_tensor(w.name, {w.cols, w.rows}, w.type), copt);
      if (pt.types.empty()) throw Error("tensor '" + w.name + "' has no candidate type (rows of " + std::to_string(w.cols) + ")");
      pt.ref = reference_index(pt.types);
      pt.error.assign(pt.types.size(), 0.0);
      pt.measured.assign(pt.types.size(), -1.0);
      p.tensors.push_back(std::move(pt));
    }
    log_("profile: quantization error of " + std::to_string(mats_.size()) + " tensors at their candidate types");
    for (size_t i = 0; i < mats_.size(); ++i) {
      check_interrupted();
      prepare_work(i);
      Work& wk = work_[i];
      ProfileTensor& pt = p.tensors[i];
      for (size_t k = 0; k < pt.types.size(); ++k) {
        const std::vector<std::byte> q = quantize_copy(wk, pt.types[k], threads_, /*sample_only=*/true);
        pt.error[k] = weighted_error(wk, pt.types[k], q, threads_);
      }
      wk.copies[pt.ref] = quantize_copy(wk, pt.types[pt.ref], threads_);
    }
  }

  // 3. Groups: embeddings alone (measured at every type), the rest by (role, band of layers).
  void assign_groups(SensitivityProfile& p) {
    int n_layers = 0;
    std::vector<TensorRole> roles;
    for (size_t i = 0; i < mats_.size(); ++i) {
      const auto layer = layer_of(mats_[i]->name);
      if (!layer) {
        embeddings_.push_back(i);
        continue;
      }
      layered_.push_back(i);
      n_layers = std::max(n_layers, *layer + 1);
      const TensorRole r = classify_role(mats_[i]->name);
      if (std::find(roles.begin(), roles.end(), r) == roles.end()) roles.push_back(r);
    }
    const int n_roles = std::max<int>(1, static_cast<int>(roles.size()));
    const int max_bands = std::max(1, s_.max_group_passes / n_roles);
    const int band = std::max(1, (n_layers + max_bands - 1) / max_bands);
    std::map<std::pair<int, int>, size_t> group_of;  // (role, band) -> group
    for (size_t i : embeddings_) {
      p.tensors[i].group = static_cast<int>(p.groups.size());
      p.groups.push_back({mats_[i]->name.substr(0, mats_[i]->name.find('.')), {i}, 0});
    }
    for (size_t i : layered_) {
      const int L = *layer_of(mats_[i]->name), b = L / band;
      const TensorRole r = classify_role(mats_[i]->name);
      auto key = std::make_pair(static_cast<int>(r), b);
      if (!group_of.count(key)) {
        group_of[key] = p.groups.size();
        const int lo = b * band, hi = std::min(n_layers - 1, lo + band - 1);
        p.groups.push_back({role_label(r) + (lo == hi ? " L" + std::to_string(lo)
                                                      : " L" + std::to_string(lo) + "-" + std::to_string(hi)),
                            {}, 0});
      }
      p.tensors[i].group = static_cast<int>(group_of[key]);
      p.groups[group_of[key]].tensors.push_back(i);
    }
    log_("profile: " + std::to_string(p.groups.size()) + " groups (" + std::to_string(embeddings_.size()) +
         " embedding matrices measured at every type, layers in bands of " + std::to_string(band) + ")");
  }

  // 4. Embeddings measured directly at every candidate below F16 (F16 of a 16-bit source is
  // lossless or nearly; it is predicted); groups of layer tensors at their reference types; the
  // gains: a group's measured ΔKLD over its members' summed error at their references.
  void measure_groups(SensitivityProfile& p) {
    for (size_t i : embeddings_) {
      ProfileTensor& pt = p.tensors[i];
      for (size_t k = 0; k < pt.types.size(); ++k) {
        if (pt.types[k] == GgmlType::F16) continue;
        substitute(p, i, k);
        pt.measured[k] = meter_.measure();
        restore(i);
        log_("profile: " + pt.name + " at " + std::string(type_info(pt.types[k]).name) + ": ΔKLD " + sci(pt.measured[k]));
      }
      drop_copies(p, i);
      p.groups[pt.group].dkld = pt.measured[pt.ref];
    }
    for (size_t g = 0; g < p.groups.size(); ++g) {
      ProfileGroup& grp = p.groups[g];
      if (grp.tensors.size() == 1 &&
          std::find(embeddings_.begin(), embeddings_.end(), grp.tensors[0]) != embeddings_.end())
        continue;
      for (size_t i : grp.tensors) substitute(p, i, p.tensors[i].ref);
      grp.dkld = meter_.measure();
      for (size_t i : grp.tensors) restore(i);
      log_("profile: group " + std::to_string(g + 1) + "/" + std::to_string(p.groups.size()) + " " + grp.label +
           ": ΔKLD " + sci(grp.dkld));
    }
    for (auto& grp : p.groups) {
      double e = 0;
      for (size_t i : grp.tensors) e += p.tensors[i].error[p.tensors[i].ref];
      for (size_t i : grp.tensors) p.tensors[i].gain = e > 0 ? grp.dkld / e : 0.0;
    }
  }

  // 5a. Single tensors at a non-reference type, spread over the layers and roles.
  void check_single_tensors(SensitivityProfile& p) {
    const size_t nv = std::min<size_t>(static_cast<size_t>(std::max(0, s_.n_validate)), layered_.size());
    std::vector<double> lp, lm, ratios;
    for (size_t j = 0; j < nv; ++j) {
      // Evenly spaced through the layers, shifted by j so the roles cycle too (a model's tensor
      // list repeats its roles with a period that even spacing could hit every time).
      const size_t i = layered_[((2 * j + 1) * layered_.size() / (2 * nv) + j) % layered_.size()];
      const ProfileTensor& pt = p.tensors[i];
      // Alternate below and above the reference: the lowest candidate, then two steps up.
      size_t k = j % 2 == 0 ? 0 : std::min(pt.ref + 2, pt.types.size() - 2);
      if (k == pt.ref) k = pt.ref + 1 < pt.types.size() ? pt.ref + 1 : 0;
      substitute(p, i, k);
      const double m = meter_.measure();
      restore(i);
      drop_copies(p, i);
      const double pr = p.predict(i, k);
      p.single_checks.push_back({pt.name + " at " + std::string(type_info(pt.types[k]).name), pr, m});
      log_("profile: check " + p.single_checks.back().what + ": predicted " + sci(pr) + ", measured " + sci(m));
      if (pr > 0 && m > 0) {
        lp.push_back(std::log(pr));
        lm.push_back(std::log(m));
        ratios.push_back(m / pr);
      }
    }
    p.log_correlation = pearson(lp, lm);
    if (!ratios.empty()) {
      std::sort(ratios.begin(), ratios.end());
      p.median_ratio = ratios.size() % 2 ? ratios[ratios.size() / 2]
                                         : 0.5 * (ratios[ratios.size() / 2 - 1] + ratios[ratios.size() / 2]);
    }
  }

  // 5b. Whole models: every tensor at its reference type, then every tensor one step above it.
  void check_whole_models(SensitivityProfile& p) {
    for (int step = 0; step < 2; ++step) {
      double pred = 0;
      for (size_t i = 0; i < mats_.size(); ++i) {
        const size_t k = std::min(p.tensors[i].ref + step, p.tensors[i].types.size() - 1);
        pred += p.predict(i, k);
        substitute(p, i, k);
      }
      const double m = meter_.measure();
      for (size_t i = 0; i < mats_.size(); ++i) {
        restore(i);
        drop_copies(p, i);
      }
      p.model_checks.push_back(
          {step == 0 ? "every tensor at its reference type" : "every tensor one type above its reference", pred, m});
      log_("profile: check " + p.model_checks.back().what + ": Σ predicted " + sci(pred) + ", measured " + sci(m));
    }
  }

  int passes() const { return meter_.passes(); }

 private:
  // The tensor's rows, column weights, importance and the sampled rows its error is measured on.
  void prepare_work(size_t i) {
    Work& wk = work_[i];
    wk.src = *mats_[i];
    wk.colw = stats_.weights(wk.src.name, wk.src.cols);
    if (in_.imatrix)
      if (const ImatrixEntry* e = in_.imatrix->find(wk.src.name); e && e->n_mat() == 1 && e->n_cols() == wk.src.cols)
        wk.imatrix = e->importance();
    const uint64_t rows = wk.src.rows, cols = wk.src.cols;
    wk.n_sample = std::min(rows, kErrorRows);
    wk.sample_scale = static_cast<double>(rows) / static_cast<double>(wk.n_sample);
    wk.sample.resize(wk.n_sample * cols);
    for (uint64_t s = 0; s < wk.n_sample; ++s) {
      const uint64_t r = (2 * s + 1) * rows / (2 * wk.n_sample);  // centre of the s-th of n_sample strata
      wk.src.dequantize_row(r, wk.sample.data() + s * cols);
    }
  }
  void substitute(const SensitivityProfile& p, size_t i, size_t k) {
    Work& wk = work_[i];
    if (!wk.copies.count(k)) wk.copies[k] = quantize_copy(wk, p.tensors[i].types[k], threads_);
    const GgmlType t = p.tensors[i].types[k];
    model_.substitute_weight(wk.src.name, t, wk.copies[k].data(), *row_bytes(t, wk.src.cols));
  }
  void restore(size_t i) { model_.restore_weight(work_[i].src.name); }
  void drop_copies(const SensitivityProfile& p, size_t i) {  // keep only the reference copy
    for (auto it = work_[i].copies.begin(); it != work_[i].copies.end();)
      it = it->first == p.tensors[i].ref ? std::next(it) : work_[i].copies.erase(it);
  }

  Model& model_;
  const ProfileInputs& in_;
  const ProfileSettings& s_;
  const int threads_;
  const std::function<void(const std::string&)>& log_;
  KldMeter meter_;
  ColumnStats stats_;
  const std::vector<const WeightMatrix*> mats_;
  std::vector<Work> work_;
  std::vector<size_t> embeddings_, layered_;
};

}  // namespace

SensitivityProfile build_profile(Model& model, const ProfileInputs& in, const ProfileSettings& s,
                                 const std::function<void(const std::string&)>& log_fn) {
  const auto t0 = Clock::now();
  const std::function<void(const std::string&)> log = [&](const std::string& line) {
    if (!log_fn) return;
    char stamp[32];
    std::snprintf(stamp, sizeof stamp, "[%6.1f s] ", std::chrono::duration<double>(Clock::now() - t0).count());
    log_fn(stamp + line);
  };
  if (static_cast<int64_t>(in.calib_tokens.size()) < s.n_ctx * s.n_chunks)
    throw Error("the calibration text has " + std::to_string(in.calib_tokens.size()) + " tokens; the profile needs " +
                std::to_string(s.n_ctx * s.n_chunks) + " (" + std::to_string(s.n_chunks) + " chunk(s) of " +
                std::to_string(s.n_ctx) + ")");
  const int threads = std::max(1, in.n_threads);
  SensitivityProfile p;
  p.settings = s;
  p.has_imatrix = in.imatrix != nullptr;
  p.model_fp = in.model_fp;
  p.imatrix_fp = in.imatrix_fp;
  p.calib_fp = calib_fingerprint(in.calib_tokens, in.add_bos, in.bos_id, s);
  p.settings_fp = profile_settings_fp(s, p.has_imatrix);
  p.model_desc = model.describe();
  p.calib_desc = in.calib_desc;
  p.calib_positions = s.n_ctx * s.n_chunks;
  p.threads = threads;

  ProfileBuilder b(model, in, s, threads, log);
  b.base_pass();
  b.measure_errors(p);
  b.assign_groups(p);
  b.measure_groups(p);
  b.check_single_tensors(p);
  b.check_whole_models(p);
  p.forward_passes = b.passes() + 1;  // + the base pass
  p.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return p;
}

}  // namespace smolq
