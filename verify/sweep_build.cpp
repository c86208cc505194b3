// Sweep steps that produce files: the automatic importance matrix, the quant files, and the
// per-tensor quantization error of each quant against the baseline's weights.
#include <simdjson.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include "convert/model_source.h"
#include "formats/atomic_file.h"
#include "formats/error.h"
#include "formats/interrupt.h"
#include "formats/mapped_file.h"
#include "formats/safetensors.h"
#include "quantize/model_writer.h"
#include "quantize/quantize_model.h"
#include "quantize/tensor_quantizer.h"
#include "eval/imatrix.h"
#include "verify/sweep_cache.h"
#include "verify/sweep_internal.h"

namespace smolq::sweep {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string model_stem(const std::string& path) {
  fs::path p(path);
  if (fs::is_directory(p)) {
    p = fs::absolute(p).lexically_normal();
    if (!p.has_filename()) p = p.parent_path();
    return p.filename().string();
  }
  return p.stem().string();
}

// Parsed JSON record, or nullopt when missing, unreadable or stamped with another key.
std::optional<simdjson::dom::element> load_record(simdjson::dom::parser& parser, const std::string& path, uint64_t key) {
  if (!file_exists(path)) return std::nullopt;
  simdjson::dom::element root;
  if (parser.load(path).get(root)) return std::nullopt;
  std::string_view k;
  if (root["key"].get(k) || k != hex64(key)) return std::nullopt;
  return root;
}

// ---- quant rows: cache record <-> QuantRow ---------------------------------------------

std::string build_record_json(const QuantRow& r, uint64_t key) {
  JsonWriter j;
  j.begin_object().key("key").value(hex64(key)).key("path").value(r.path).key("file_type").value(r.file_type);
  j.key("file_size").value(r.file_size).key("tensor_bytes").value(r.tensor_bytes).key("n_elements").value(r.n_elements);
  j.key("seconds").value(r.build_seconds).key("imatrix_used").value(r.imatrix_used).key("tensor_types").begin_object();
  for (const auto& [t, n] : r.tensor_types) j.key(t).value(n);
  j.end_object().end_object();
  return j.str() + "\n";
}

bool row_from_record(const simdjson::dom::element& e, QuantRow& r) {
  std::string_view path;
  uint64_t size = 0, tb = 0, ne = 0;
  double secs = 0;
  bool imat = false;
  simdjson::dom::object types;
  if (e["path"].get(path) || e["file_size"].get(size) || e["tensor_bytes"].get(tb) || e["n_elements"].get(ne) ||
      e["seconds"].get(secs) || e["imatrix_used"].get(imat) || e["tensor_types"].get(types))
    return false;
  r.path = std::string(path);
  r.file_size = size;
  r.tensor_bytes = tb;
  r.n_elements = ne;
  r.bpw = ne ? 8.0 * static_cast<double>(tb) / static_cast<double>(ne) : 0;
  r.build_seconds = secs;
  r.imatrix_used = imat;
  r.tensor_types.clear();
  for (auto field : types) {
    uint64_t n = 0;
    if (field.value.get(n)) return false;
    r.tensor_types.emplace_back(std::string(field.key), n);
  }
  return true;
}

void fill_from_write(QuantRow& r, const WriteResult& w) {
  r.file_size = w.file_size;
  r.tensor_bytes = w.tensor_bytes;
  r.n_elements = w.elements;
  r.bpw = w.bits_per_weight();
  r.tensor_types.clear();
  for (const auto& [type, tally] : w.by_type) r.tensor_types.emplace_back(std::string(type_info(type).name), tally.tensors);
}

}  // namespace

QuantizeOptions quant_options(const Context& c, FileType ftype) {
  QuantizeOptions q;
  q.ftype = ftype;
  if (c.imatrix) {
    q.imatrix = &*c.imatrix;
    q.imatrix_path = c.imatrix_path;
  }
  // A GGUF baseline may itself be quantized (e.g. a Q8_0 file used as the reference).
  q.allow_requantize = true;
  return q;
}

const ModelSource& build_source(Context& c) {
  if (!c.source) {
    HfBuildSettings hf;
    hf.naming = c.o.naming;
    c.source = ModelSource::open(c.o.model, hf);
  }
  return *c.source;
}

// Quantize the baseline with options `q` at `out`: straight from the checkpoint for an HF
// folder (as `smolq convert --type`), or requantizing a GGUF (as `smolq quantize`).
WriteResult build_quant(Context& c, const QuantizeOptions& q, const std::string& out, const std::string& stage,
                        int& imatrix_used) {
  const ModelSource& src = build_source(c);
  const BuildPlan plan = src.plan(q);
  return write_quant(c, plan, out, stage, imatrix_used);
}

WriteResult write_quant(Context& c, const BuildPlan& plan, const std::string& out, const std::string& stage,
                        int& imatrix_used) {
  for (const auto& w : plan.warnings()) c.log("  warning: " + w);
  imatrix_used = plan.imatrix_used();
  auto on_progress = [&](const WriteProgress& wp) {
    c.progress(stage, static_cast<int64_t>(wp.elements_done), static_cast<int64_t>(wp.elements_total),
               wp.tensor ? wp.tensor->name : "");
  };
  return build_source(c).write(plan, out, c.eval.n_threads, on_progress);
}


// ---- importance matrix ------------------------------------------------------------------

void prepare_imatrix(Context& c, std::span<const int32_t> calib_tokens, const std::string& calib_desc) {
  if (c.o.imatrix == ImatrixMode::kNone) {
    c.res.imatrix_desc = "none";
    return;
  }
  if (c.o.imatrix == ImatrixMode::kFile) {
    c.imatrix = read_imatrix(c.o.imatrix_file);
    c.imatrix_path = c.o.imatrix_file;
    c.imatrix_fp = ContentHasher().add("imatrix-file").add(fingerprint_file(c.o.imatrix_file)).digest();
    c.res.imatrix_desc = "file " + c.o.imatrix_file + " (" + std::to_string(c.imatrix->entries.size()) + " entries)";
    c.res.imatrix_path = c.o.imatrix_file;
    c.log("imatrix: " + c.res.imatrix_desc);
    return;
  }
  ContentHasher h;
  h.add(kSweepCacheVersion).add("imatrix-auto").add(c.base_fp).add_bytes(calib_tokens.data(), calib_tokens.size_bytes());
  h.add(static_cast<uint64_t>(c.eval.n_ctx)).add(static_cast<uint64_t>(c.eval.add_bos)).add(static_cast<uint64_t>(c.eval.bos_id));
  h.add(static_cast<uint64_t>(c.o.calib_chunks));
  const uint64_t key = h.digest();
  const std::string path = c.cache_dir + "/imatrix-" + hex64(key) + ".gguf";
  EvalOptions o = c.eval;
  o.n_chunks = c.o.calib_chunks;
  o.score = false;
  const int64_t n_chunks = plan_chunks(static_cast<int64_t>(calib_tokens.size()), o);
  c.res.imatrix_desc = "automatic: collected over " + std::to_string(n_chunks) + " chunks of " +
                       std::to_string(o.n_ctx) + " tokens of " + calib_desc;
  if (file_exists(path)) {
    c.imatrix = read_imatrix(path);
    c.res.cache.imatrix_reused = true;
    c.log("imatrix: cached " + path);
  } else {
    c.log("imatrix: collecting over " + std::to_string(n_chunks) + " chunks (" + calib_desc + ")");
    ImatrixCollector collector(false, o.n_threads);
    collect_imatrix(*c.base, calib_tokens, o, collector, [&](const ChunkProgress& p, const PerplexityStats&) {
      c.progress("imatrix", p.tokens_done, p.tokens_total);
    });
    c.imatrix = collector.data({calib_desc}, static_cast<int32_t>(o.n_ctx));
    write_imatrix(path, *c.imatrix, ImatrixFormat::Gguf);
  }
  c.imatrix_path = path;
  c.res.imatrix_path = path;
  c.imatrix_fp = key;
}

// ---- quants -----------------------------------------------------------------------------

Target prepare_quant(Context& c, const SweepQuantSpec& spec) {
  Target t;
  QuantRow& r = t.row;
  r.label = spec.label;
  if (!spec.ftype) {  // a file given on the command line, taken as it is
    r.path = spec.gguf;
    r.file_type = "given";
    auto reader = GgufReader::open(spec.gguf);
    if (auto ft = reader->metadata().opt_u64("general.file_type"))
      for (const auto& info : all_file_types())
        if (static_cast<uint64_t>(info.id) == *ft) r.file_type = std::string(info.name);
    std::map<std::string, uint64_t> types;
    for (const auto& ti : reader->tensors()) {
      r.tensor_bytes += ti.n_bytes;
      r.n_elements += ti.n_elements;
      ++types[std::string(type_info(ti.type).name)];
    }
    r.tensor_types.assign(types.begin(), types.end());
    r.file_size = reader->file_size();
    r.bpw = r.n_elements ? 8.0 * static_cast<double>(r.tensor_bytes) / static_cast<double>(r.n_elements) : 0;
    r.imatrix_used = reader->metadata().has("quantize.imatrix.file");
    c.log("quant " + r.label + ": given file " + r.path);
    t.fp = ContentHasher().add("given").add(fingerprint_file(spec.gguf)).digest();
    return t;
  }
  const FileType ft = *spec.ftype;
  r.built = true;
  r.file_type = std::string(file_type_info(ft).name);
  t.fp = ContentHasher().add(kSweepCacheVersion).add("build").add(c.base_fp).add(static_cast<uint64_t>(ft)).add(c.imatrix_fp).digest();
  // Naming changes the files' general.* keys (not their tensors): part of the key when set.
  const NamingInputs& nm = c.o.naming;
  if (!nm.repo_id.empty() || !nm.metadata_path.empty() || !nm.name_override.empty())
    t.fp = ContentHasher().add(t.fp).add("naming").add(nm.repo_id).add(nm.metadata_path).add(nm.name_override).digest();
  if (spec.at_target) {
    // Same size as the `ft` file, types chosen by the allocator (verify/sweep_target.cpp). The
    // key adds the calibration tokens the profile is measured on and the solver's inputs.
    r.file_type = "target (size of " + r.file_type + ")";
    t.fp = ContentHasher().add(t.fp).add("target").add(c.calib_fp).add(target_settings_fp()).digest();
  }
  r.path = c.quant_dir + "/" + model_stem(c.o.model) + "-" + safe_label(r.label) + (c.imatrix ? "-imat" : "") + ".gguf";
  const std::string record = c.cache_dir + "/build-" + safe_label(r.label) + "-" + hex64(t.fp) + ".json";
  simdjson::dom::parser parser;
  if (auto e = load_record(parser, record, t.fp)) {
    QuantRow cached = r;
    std::error_code ec;
    if (row_from_record(*e, cached) && cached.path == r.path && fs::file_size(r.path, ec) == cached.file_size && !ec) {
      cached.build_cached = true;
      r = cached;
      ++c.res.cache.builds_reused;
      c.log("build " + r.label + ": cached " + r.path);
      return t;
    }
  }
  const std::string stage = "build " + r.label;
  c.log(stage + " -> " + r.path);
  const auto t0 = Clock::now();
  int imatrix_used = 0;
  const WriteResult w = spec.at_target ? build_target_quant(c, ft, r.path, stage, imatrix_used)
                                       : build_quant(c, quant_options(c, ft), r.path, stage, imatrix_used);
  r.build_seconds = seconds_since(t0);
  fill_from_write(r, w);
  r.imatrix_used = imatrix_used > 0;
  write_file_atomic(record, build_record_json(r, t.fp));
  ++c.res.cache.builds_done;
  return t;
}

// ---- per-tensor error ---------------------------------------------------------------------
namespace {

struct MatrixPair {
  const WeightMatrix* base;
  const WeightMatrix* quant;
  int layer;
};

std::vector<MatrixPair> matrix_pairs(const Model& b, const Model& q) {
  std::vector<MatrixPair> v{{&b.tok_embd(), &q.tok_embd(), -1}};
  if (!b.tied_output()) v.push_back({&b.output(), &q.output(), -1});
  for (size_t il = 0; il < b.n_layers(); ++il) {
    const LayerWeights &lb = b.layer(il), &lq = q.layer(il);
    const int L = static_cast<int>(il);
    v.insert(v.end(), {{&lb.wq, &lq.wq, L}, {&lb.wk, &lq.wk, L}, {&lb.wv, &lq.wv, L}, {&lb.wo, &lq.wo, L},
                       {&lb.ffn_gate, &lq.ffn_gate, L}, {&lb.ffn_up, &lq.ffn_up, L}, {&lb.ffn_down, &lq.ffn_down, L}});
  }
  return v;
}

// sum_ij w_j (dq - x)^2 and sum_ij w_j x^2 over all rows. Rows are summed per row in
// parallel and the row sums added in row order, so the result does not depend on threads.
std::pair<double, double> weighted_error(const WeightMatrix& x, const WeightMatrix& dq, std::span<const float> w, int threads) {
  const int64_t R = static_cast<int64_t>(x.rows), C = static_cast<int64_t>(x.cols);
  std::vector<double> se(static_cast<size_t>(R)), sx(static_cast<size_t>(R));
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> a(static_cast<size_t>(C)), b(static_cast<size_t>(C));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      x.dequantize_row(static_cast<uint64_t>(r), a.data());
      dq.dequantize_row(static_cast<uint64_t>(r), b.data());
      double e = 0, s = 0;
      for (int64_t j = 0; j < C; ++j) {
        const double wj = w.empty() ? 1.0 : w[static_cast<size_t>(j)];
        const double d = static_cast<double>(b[j]) - a[j];
        e += wj * d * d;
        s += wj * static_cast<double>(a[j]) * a[j];
      }
      se[static_cast<size_t>(r)] = e;
      sx[static_cast<size_t>(r)] = s;
    }
  }
  double e = 0, s = 0;
  for (int64_t r = 0; r < R; ++r) e += se[static_cast<size_t>(r)], s += sx[static_cast<size_t>(r)];
  return {e, s};
}

void aggregate_layers(QuantRow& r, int n_layers, bool tied) {
  std::vector<double> num(static_cast<size_t>(n_layers)), den(static_cast<size_t>(n_layers));
  r.embd_rel = r.output_rel = 0;
  for (const auto& t : r.tensors) {
    if (t.layer >= 0) {
      num[static_cast<size_t>(t.layer)] += static_cast<double>(t.n_elements) * t.rel * t.rel;
      den[static_cast<size_t>(t.layer)] += static_cast<double>(t.n_elements);
    } else if (t.name == "token_embd.weight") {
      r.embd_rel = t.rel;
    } else {
      r.output_rel = t.rel;
    }
  }
  if (tied) r.output_rel = r.embd_rel;
  r.layer_rel.assign(static_cast<size_t>(n_layers), 0);
  for (int il = 0; il < n_layers; ++il)
    if (den[static_cast<size_t>(il)] > 0) r.layer_rel[static_cast<size_t>(il)] = std::sqrt(num[static_cast<size_t>(il)] / den[static_cast<size_t>(il)]);
}

}  // namespace

void measure_tensor_errors(Context& c, Target& t) {
  QuantRow& r = t.row;
  const uint64_t key = ContentHasher().add(kSweepCacheVersion).add("errors").add(c.base_fp).add(t.fp).add(c.imatrix_fp).digest();
  const std::string record = c.cache_dir + "/errors-" + safe_label(r.label) + "-" + hex64(key) + ".json";
  const int n_layers = static_cast<int>(c.base->n_layers());
  simdjson::dom::parser parser;
  if (auto e = load_record(parser, record, key)) {
    simdjson::dom::array arr;
    bool ok = !(*e)["tensors"].get(arr);
    std::vector<TensorError> v;
    for (auto el : arr) {
      if (!ok) break;
      TensorError te;
      std::string_view name, type;
      int64_t layer = 0;
      uint64_t n = 0;
      ok = !(el["name"].get(name) || el["layer"].get(layer) || el["type"].get(type) || el["n"].get(n) ||
             el["wmse"].get(te.wmse) || el["rel"].get(te.rel) || el["weighted"].get(te.weighted));
      te.name = std::string(name);
      te.type = std::string(type);
      te.layer = static_cast<int>(layer);
      te.n_elements = n;
      v.push_back(std::move(te));
    }
    if (ok) {
      r.tensors = std::move(v);
      aggregate_layers(r, n_layers, c.base->tied_output());
      return;
    }
  }
  const std::string stage = "tensor error " + r.label;
  c.log(stage);
  auto q = Model::open(r.path);
  if (q->config().n_layer != c.base->config().n_layer || q->config().n_embd != c.base->config().n_embd ||
      q->config().n_vocab != c.base->config().n_vocab)
    throw Error(r.path + " is not a quant of " + c.o.model + " (different shapes)");
  const auto pairs = matrix_pairs(*c.base, *q);
  r.tensors.clear();
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto& [wb, wq, layer] = pairs[i];
    if (wb->rows != wq->rows || wb->cols != wq->cols) throw Error(wb->name + ": different shape in " + r.path);
    std::vector<float> w;
    if (c.imatrix)
      if (const ImatrixEntry* ie = c.imatrix->find(wb->name); ie && ie->n_mat() == 1 && ie->n_cols() == wb->cols)
        w = ie->importance();
    const auto [se, sx] = weighted_error(*wb, *wq, w, c.eval.n_threads);
    double sum_w = static_cast<double>(wb->cols);
    if (!w.empty()) {
      sum_w = 0;
      for (float x : w) sum_w += x;
    }
    TensorError te;
    te.name = wb->name;
    te.layer = layer;
    te.type = std::string(type_info(wq->type).name);
    te.n_elements = wb->rows * wb->cols;
    te.wmse = sum_w > 0 ? se / (static_cast<double>(wb->rows) * sum_w) : 0;
    te.rel = sx > 0 ? std::sqrt(se / sx) : 0;
    te.weighted = !w.empty();
    r.tensors.push_back(std::move(te));
    c.progress(stage, static_cast<int64_t>(i + 1), static_cast<int64_t>(pairs.size()), wb->name);
    check_interrupted();
  }
  aggregate_layers(r, n_layers, c.base->tied_output());
  JsonWriter j;
  j.begin_object().key("key").value(hex64(key)).key("tensors").begin_array();
  for (const auto& te : r.tensors)
    j.begin_object().key("name").value(te.name).key("layer").value(te.layer).key("type").value(te.type)
        .key("n").value(te.n_elements).key("wmse").value(te.wmse).key("rel").value(te.rel)
        .key("weighted").value(te.weighted).end_object();
  j.end_array().end_object();
  write_file_atomic(record, j.str() + "\n");
}

}  // namespace smolq::sweep
