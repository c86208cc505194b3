// `smolq estimate PATH [--types ...|all] [--ctx 2048,8192] [--kv-type f16|q8_0|q4_0]
//                     [--batch N] [--device NAME] [--json]`
//
// For every quant type: the exact file size and bits per weight, memory at each context,
// device fit and decode speed — without quantizing anything. inspect/ holds the arithmetic;
// this file builds its input with the code that writes the files, so the numbers are the
// numbers those files will have:
//   - tensor types: convert's plain_type_for (f32/f16/bf16/q8_0 from an HF folder) or the
//     quantizer's mixture rules (quantize/mixtures.h: plan_mixture) for everything else;
//   - metadata: convert's plan_conversion when the folder has weights; for a config-only
//     folder the same steps plan_conversion takes (convert/converter.h conversion_metadata); for a
//     GGUF input, the file's own metadata with general.file_type set to the new type.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "cli/options.h"
#include "convert/converter.h"
#include "convert/naming.h"
#include "text/tokenizer_meta.h"
#include "formats/error.h"
#include "formats/gguf.h"
#include "formats/hf_cache.h"
#include "formats/suggest.h"
#include "formats/model_config.h"
#include "formats/safetensors.h"
#include "inspect/devices.h"
#include "inspect/estimate_file.h"
#include "inspect/estimate_report.h"
#include "quantize/mixtures.h"
#include "quantize/quantize_model.h"
#include "quantize/tensor_roles.h"

namespace smolq::cli {
namespace {

// The model as the estimate sees it before types are chosen.
struct SourceModel {
  std::string name;
  ModelConfig config;
  GgufMetadata metadata;             // base metadata; general.file_type is set per candidate
  std::vector<TensorShape> tensors;  // names, ggml shapes, source types, in file order
  std::vector<size_t> n_dims;        // dimensions written for each tensor
  bool from_hf = false;              // convert writes plain types (plain_type_for)
  bool metadata_exact = true;
  std::string metadata_note;
};

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

TensorShape shape_of(const std::string& name, const std::vector<uint64_t>& shape, GgmlType type) {
  TensorShape t;
  t.name = name;
  for (size_t i = 0; i < shape.size() && i < 4; ++i) t.ne[i] = shape[i];
  t.source_type = type;
  return t;
}

// The metadata `smolq convert` writes for a checkpoint, built from the config and tokenizer
// files alone. Mirrors plan_conversion's metadata steps (convert/converter.cpp) in the same
// order; when convert exposes this as a function of its own, call that instead.
GgufMetadata estimate_metadata(const std::string& dir, const std::string& tokenizer_dir, const ModelConfig& cfg,
                               uint64_t n_params, const NamingInputs& naming, bool& has_tokenizer) {
  has_tokenizer = file_exists(tokenizer_dir + "/tokenizer.json");
  if (!has_tokenizer) return conversion_metadata(dir, cfg, nullptr, n_params, FileType::kF16, naming);
  HfTokenizerInfo tok = load_hf_tokenizer(tokenizer_dir, cfg, TokenizerOptions{});
  return conversion_metadata(dir, cfg, &tok, n_params, FileType::kF16, naming);
}

// `repo_id`: known when the folder came from the Hugging Face cache; the general.* keys (and so
// the sizes) are those `smolq convert` writes for the same reference.
SourceModel load_hf(const std::string& dir, const std::string& tokenizer_dir, const std::string& repo_id) {
  NamingInputs naming;
  naming.repo_id = repo_id;
  SourceModel s;
  s.from_hf = true;
  s.name = dir;
  const bool has_weights = file_exists(dir + "/model.safetensors") || file_exists(dir + "/model.safetensors.index.json");
  if (has_weights && tokenizer_dir == dir) {
    // Exactly what convert plans: metadata, tensor names and shapes.
    ConvertOptions opt;
    opt.input_dir = dir;
    opt.naming = naming;
    auto ck = SafetensorsCheckpoint::open(dir);
    ConvertPlan plan = plan_conversion(opt, *ck);
    s.config = plan.config;
    s.metadata = plan.metadata;
    for (const auto& o : plan.outputs) {
      s.tensors.push_back(shape_of(o.name, o.shape, o.type));
      s.n_dims.push_back(o.shape.size());
    }
    return s;
  }
  s.config = parse_hf_config(dir + "/config.json");
  const ModelConfig& c = s.config;
  DecoderShape d;
  d.n_embd = c.n_embd;
  d.n_ff = c.n_ff;
  d.n_vocab = c.n_vocab;
  d.n_layer = c.n_layer;
  d.n_head = c.n_head;
  d.n_head_kv = c.n_head_kv;
  d.head_dim = c.head_dim;
  d.tied_embeddings = c.tied_embeddings;
  d.rope_freqs = c.rope_scaling.type == "llama3";
  d.weight_type = GgmlType::F16;
  uint64_t n_params = 0;
  for (auto& t : decoder_tensors(d)) {
    n_params += t.n_elements();
    s.n_dims.push_back(static_cast<size_t>(std::max(1, t.n_dims())));
    s.tensors.push_back(std::move(t));
  }
  bool has_tok = false;
  s.metadata = estimate_metadata(dir, tokenizer_dir, c, n_params, naming, has_tok);
  if (!has_tok) {
    s.metadata_exact = false;
    s.metadata_note = "no tokenizer.json in " + tokenizer_dir +
                      ": sizes exclude the tokenizer metadata (pass --tokenizer DIR for exact sizes)";
  }
  return s;
}

SourceModel load_gguf(const std::string& path) {
  SourceModel s;
  s.name = path;
  auto r = GgufReader::open(path);
  s.config = config_from_gguf(r->metadata(), path);
  s.metadata = r->metadata();
  for (const auto& t : r->tensors()) {
    s.tensors.push_back(shape_of(t.name, t.shape, t.type));
    s.n_dims.push_back(t.shape.size());
  }
  return s;
}

std::vector<uint64_t> parse_u64_list(const std::string& s, const char* what) {
  std::vector<uint64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    try {
      size_t pos = 0;
      uint64_t mult = 1;
      if (item.back() == 'k' || item.back() == 'K') {
        mult = 1024;
        item.pop_back();
      }
      // stoull accepts "-1" (and wraps it to 2^64 - 1): only digits are a count.
      if (item.empty() || item[0] < '0' || item[0] > '9') throw std::invalid_argument(item);
      const unsigned long long v = std::stoull(item, &pos);
      if (pos != item.size() || v == 0 || v > (1ull << 32)) throw std::invalid_argument(item);
      out.push_back(v * mult);
    } catch (const std::exception&) {
      throw UsageError(std::string(what) + ": '" + item + "' is not a positive integer");
    }
  }
  if (out.empty()) throw UsageError(std::string(what) + " is empty");
  return out;
}

std::vector<std::string> split_names(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

// One candidate: types chosen as the writer will choose them.
QuantCandidate make_candidate(const SourceModel& src, const FileTypeInfo& ft, const ImatrixData* imat,
                              const std::string& imatrix_path) {
  const bool imatrix = imat != nullptr;
  QuantCandidate c;
  c.name = std::string(ft.name);
  c.metadata = src.metadata;
  const GgmlType dt = ft.default_type;
  const bool plain = dt == GgmlType::F32 || dt == GgmlType::F16 || dt == GgmlType::BF16 || dt == GgmlType::Q8_0;
  if (src.from_hf && plain) {
    c.metadata.set("general.file_type", GgufValue::u32(static_cast<uint32_t>(ft.id)));
  } else {
    // The keys `smolq quantize` / `convert --type` stamp (file type, quantization version,
    // provenance; no split.* keys), by the same function.
    QuantizeOptions q;
    q.ftype = ft.id;
    q.imatrix = imat;
    q.imatrix_path = imatrix_path;
    QuantizePlanResult stamped;  // estimate has no --include/--exclude-weights: every entry counts
    stamped.imatrix_entries = imat ? static_cast<int>(imat->entries.size()) : 0;
    stamp_quantize_metadata(c.metadata, q, stamped);
  }
  if (src.from_hf && plain) {
    // convert --outtype: 2-D weights take the type (or its fallback), 1-D stay F32.
    for (size_t i = 0; i < src.tensors.size(); ++i) {
      const auto& t = src.tensors[i];
      std::vector<uint64_t> shape(t.ne.begin(), t.ne.begin() + static_cast<long>(src.n_dims[i]));
      const GgmlType ty = plain_type_for(shape, dt);
      if (shape.size() >= 2 && ty != dt) ++c.n_fallback;
      c.tensors.push_back({t.name, shape, ty});
    }
    return c;
  }
  ModelFacts facts;
  facts.arch = src.config.arch;
  facts.n_layer = static_cast<uint32_t>(src.config.n_layer);
  facts.n_head = static_cast<uint32_t>(src.config.n_head);
  facts.n_head_kv = static_cast<uint32_t>(src.config.n_head_kv);
  MixtureOptions mo;
  mo.has_imatrix = imatrix || ft.requires_imatrix;
  MixturePlan plan = plan_mixture(ft.id, src.tensors, facts, mo);
  c.requires_imatrix = plan.requires_imatrix;
  c.n_fallback = plan.n_fallback;
  for (size_t i = 0; i < plan.tensors.size(); ++i) {
    const auto& pt = plan.tensors[i];
    std::vector<uint64_t> shape(pt.tensor.ne.begin(), pt.tensor.ne.begin() + static_cast<long>(src.n_dims[i]));
    c.tensors.push_back({pt.tensor.name, shape, pt.choice.type});
  }
  return c;
}

// A KV cache type by name, any case: one llama.cpp accepts, or a UsageError with the nearest.
GgmlType kv_cache_type(const std::string& name, const char* option) {
  const TypeGeometry* g = find_type(name);
  if (g && is_valid_kv_type(g->id)) return g->id;
  std::vector<std::string> valid;
  for (const auto& t : all_types())
    if (is_valid_kv_type(t.id)) valid.push_back(lower_ascii(t.name));
  std::string list;
  for (const auto& v : valid) list += (list.empty() ? "" : ", ") + v;
  const std::string near = did_you_mean(name, valid);
  throw UsageError(std::string(option) + ": '" + name + "' is not a KV cache type" + (near.empty() ? " (one of: " + list + ")" : near));
}

}  // namespace

int run_estimate(const std::vector<std::string>& args) {
  po::options_description opts("estimate options");
  opts.add_options()
      (kOptModel, po::value<std::string>()->required(), "HF folder (config.json; weights optional), GGUF file, Hugging Face cache folder or repo id org/name[@revision]")
      ("types", po::value<std::string>()->default_value("all"), "quant types to show, comma-separated (any case), or 'all'")
      (kOptCtxSize, po::value<std::string>()->default_value("2048,8192"), "context sizes, comma-separated (4k = 4096)")
      ("kv-type", po::value<std::string>(), "K and V cache type: f16, q8_0, q4_0, ... (quantized V implies flash attention; default f16)")
      (kOptCacheTypeK, po::value<std::string>(), "K cache type (llama.cpp -ctk; default: --kv-type)")
      (kOptCacheTypeV, po::value<std::string>(), "V cache type (llama.cpp -ctv; default: --kv-type)")
      (kOptUbatchSize, po::value<uint64_t>()->default_value(512), "physical micro-batch (llama.cpp -ub): sizes the compute buffer")
      (kOptBatchSize, po::value<uint64_t>()->default_value(512), "logical batch (llama.cpp -b): caps the micro-batch")
      (kOptFlashAttn, po::value<std::string>()->default_value("off"), "flash attention (llama.cpp -fa): on or off")
      ("parallel", po::value<uint64_t>()->default_value(1), "parallel sequences (llama.cpp -np)")
      ("device", po::value<std::string>(), "one device from the table (substring match): per-type table")
      ("tokenizer", po::value<std::string>(), "folder with tokenizer.json for a config-only folder (default: PATH)")
      (kOptImatrix, po::value<std::string>(), "importance matrix the quants would use (changes some mixture rules and adds the quantize.imatrix.* keys)")
      (kOptJson, "print JSON instead of Markdown");
  po::positional_options_description pos;
  pos.add("model", 1);
  ParsedArgs p = parse_args("estimate", args, "smolq estimate MODEL [--types all] [-c 2048,8192] [-ctk f16] [-ctv f16] [--json]", opts, pos);
  if (p.help) return 0;

  const ModelRef ref = resolve_model_ref(p.vm["model"].as<std::string>());
  std::string path = ref.path;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  SourceModel src;
  if (is_dir(path)) {
    const std::string tok = p.vm.count("tokenizer") ? p.vm["tokenizer"].as<std::string>() : path;
    src = load_hf(path, tok, ref.repo_id);
    if (ref.from_cache()) src.name = ref.repo_id + "@" + ref.revision.substr(0, 12);
  } else if (file_exists(path)) {
    if (p.vm.count("tokenizer")) throw UsageError("--tokenizer applies to Hugging Face folders only");
    src = load_gguf(path);
  } else {
    throw FormatError(path, "no such file or folder");
  }

  EstimateRequest req;
  req.model = src.name + " (" + src.config.arch + ", " + std::to_string(src.config.n_layer) + " layers, " +
              std::to_string(src.config.n_embd) + " wide)";
  req.metadata_exact = src.metadata_exact;
  req.metadata_note = src.metadata_note;
  const ModelConfig& c = src.config;
  req.shape = memory_shape(c, src.metadata);
  req.contexts = parse_u64_list(p.vm["ctx-size"].as<std::string>(), "--ctx-size");

  const std::string kv = p.vm.count("kv-type") ? p.vm["kv-type"].as<std::string>() : "f16";
  req.run.kv_type = kv_cache_type(p.vm.count("cache-type-k") ? p.vm["cache-type-k"].as<std::string>() : kv, "--cache-type-k");
  req.run.kv_type_v = kv_cache_type(p.vm.count("cache-type-v") ? p.vm["cache-type-v"].as<std::string>() : kv, "--cache-type-v");
  req.run.n_ubatch = p.vm["ubatch-size"].as<uint64_t>();
  req.run.n_batch = p.vm["batch-size"].as<uint64_t>();
  if (req.run.n_ubatch == 0 || req.run.n_batch == 0) throw UsageError("--batch-size and --ubatch-size must be positive");
  // llama.cpp's micro-batch never exceeds the batch; an old `--batch N` (the micro-batch) alone
  // keeps meaning what it did: the batch grows to hold it.
  if (p.vm["batch-size"].defaulted()) req.run.n_batch = std::max(req.run.n_batch, req.run.n_ubatch);
  req.run.n_seq = p.vm["parallel"].as<uint64_t>();
  // llama.cpp's truthy / falsy spellings; its "auto" depends on the backend, which an estimate
  // does not know.
  const std::string fa = lower_ascii(p.vm["flash-attn"].as<std::string>());
  const bool fa_on = fa == "on" || fa == "1" || fa == "true" || fa == "enabled";
  if (!fa_on && fa != "off" && fa != "0" && fa != "false" && fa != "disabled")
    throw UsageError("--flash-attn must be on or off (got '" + fa + "')");
  req.run.flash_attn = fa_on;

  if (p.vm.count("device")) {
    const Device* d = find_device(p.vm["device"].as<std::string>());
    if (!d) {
      std::string names;
      for (const auto& x : all_devices()) names += (names.empty() ? "" : ", ") + std::string(x.name);
      throw UsageError("unknown or ambiguous device '" + p.vm["device"].as<std::string>() + "'; known: " + names);
    }
    req.devices.push_back(d);
    req.device_detail = true;
  } else {
    for (const auto& d : all_devices()) req.devices.push_back(&d);
  }

  const bool imatrix = p.vm.count("imatrix") > 0;
  ImatrixData imat;
  if (imatrix) imat = read_imatrix(p.vm["imatrix"].as<std::string>());
  const std::string types = p.vm["types"].as<std::string>();
  auto add = [&](const FileTypeInfo& ft) {
    try {
      req.candidates.push_back(make_candidate(src, ft, imatrix ? &imat : nullptr,
                                              imatrix ? p.vm["imatrix"].as<std::string>() : std::string()));
    } catch (const Error& e) {
      // A type whose blocks and fallbacks cannot hold this model's rows: say so, go on.
      req.skipped.push_back(std::string(ft.name) + ": " + e.what());
    }
  };
  if (types == "all") {
    for (const auto& ft : all_file_types()) add(ft);
  } else {
    for (const auto& name : split_names(types)) add(file_type_info(parse_file_type(name)));
  }

  const EstimateResult r = run_estimate(req);
  const std::string out = p.vm.count("json") ? render_estimate_json(r) : render_estimate_markdown(r);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace smolq::cli
