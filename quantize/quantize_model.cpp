#include "quantize/quantize_model.h"

#include <cstdlib>

#include "formats/error.h"
#include "quantize/registry.h"

namespace smolq {
namespace {

bool is_plain_float(GgmlType t) { return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16; }

std::vector<std::regex> compile(const std::vector<std::string>& pats, const char* option) {
  std::vector<std::regex> out;
  for (const auto& p : pats) {
    try {
      out.emplace_back(p);
    } catch (const std::regex_error& e) {
      throw UsageError(std::string(option) + " '" + p + "' is not a valid regular expression");
    }
  }
  return out;
}

bool any_match(const std::vector<std::regex>& rs, const std::string& name) {
  for (const auto& r : rs)
    if (std::regex_search(name, r)) return true;
  return false;
}

}  // namespace

ModelFacts facts_from_gguf(const GgufMetadata& meta) {
  ModelFacts f;
  f.arch = meta.opt_string("general.architecture").value_or("llama");
  const std::string a = f.arch + ".";
  f.n_layer = static_cast<uint32_t>(meta.opt_u64(a + "block_count").value_or(0));
  f.n_head = static_cast<uint32_t>(meta.opt_u64(a + "attention.head_count").value_or(0));
  f.n_head_kv = static_cast<uint32_t>(meta.opt_u64(a + "attention.head_count_kv").value_or(f.n_head));
  f.n_expert = static_cast<uint32_t>(meta.opt_u64(a + "expert_count").value_or(0));
  return f;
}

QuantizePlanResult plan_quantization(const std::vector<SourceTensor>& sources, const ModelFacts& facts,
                                     const QuantizeOptions& opt) {
  QuantizePlanResult r;
  MixtureOptions mopt = opt.mixture;
  mopt.has_imatrix = opt.imatrix != nullptr;
  std::vector<TensorShape> shapes;
  shapes.reserve(sources.size());
  for (const auto& s : sources) shapes.push_back(s.shape);
  r.plan = plan_mixture(opt.ftype, shapes, facts, mopt);

  const auto include = compile(opt.include_weights, "--include-weights");
  const auto exclude = compile(opt.exclude_weights, "--exclude-weights");
  std::vector<std::string> need_imatrix;
  for (size_t i = 0; i < sources.size(); ++i) {
    const SourceTensor& src = sources[i];
    const PlannedTensor& pt = r.plan.tensors[i];
    OutputTensor o;
    o.name = src.shape.name;
    for (int d = 0; d < 4; ++d)
      if (d == 0 || d < std::max(1, src.shape.n_dims())) o.shape.push_back(src.shape.ne[d]);
    o.type = pt.choice.type;
    const bool changes = pt.choice.quantized && pt.choice.type != src.shape.source_type;
    if (!changes && !src.encoded.empty()) {
      o.type = src.shape.source_type;
      o.passthrough = src.encoded;
      r.outputs.push_back(std::move(o));
      continue;
    }
    // Not quantized (norms...) and no encoded bytes to copy: written in the source type.
    if (!changes) o.type = pt.choice.quantized ? pt.choice.type : src.shape.source_type;
    if (changes && !is_plain_float(src.shape.source_type)) {
      if (!opt.allow_requantize)
        throw UsageError("tensor '" + o.name + "' is already quantized (" +
                         std::string(type_info(src.shape.source_type).name) +
                         "); requantizing loses quality — pass --allow-requantize to do it anyway");
      r.warnings.push_back("requantizing '" + o.name + "' from " + std::string(type_info(src.shape.source_type).name) +
                           " to " + std::string(type_info(o.type).name));
    }
    o.source = src.rows;
    if (changes && opt.imatrix) {
      const bool use = (include.empty() || any_match(include, o.name)) && !any_match(exclude, o.name);
      const ImatrixEntry* e = use ? opt.imatrix->find(o.name) : nullptr;
      if (e) {
        if (e->n_mat() != 1 || e->n_cols() != src.shape.ne[0])
          throw Error("importance matrix entry for '" + o.name + "' has " + std::to_string(e->n_cols()) + " x " +
                      std::to_string(e->n_mat()) + " values; the tensor has rows of " + std::to_string(src.shape.ne[0]) +
                      " (imatrix from another model?)");
        o.imatrix = e->importance();
        ++r.imatrix_used;
      } else if (use && pt.choice.requires_imatrix) {
        need_imatrix.push_back(o.name);
      } else if (use && !is_plain_float(o.type)) {
        r.warnings.push_back("no importance data for '" + o.name + "': using the default weighting");
      }
    }
    if (changes && !opt.imatrix && pt.choice.requires_imatrix) need_imatrix.push_back(o.name);
    r.outputs.push_back(std::move(o));
  }
  if (!need_imatrix.empty()) {
    std::string list;
    for (size_t i = 0; i < need_imatrix.size() && i < 6; ++i) list += (i ? ", " : "") + need_imatrix[i];
    if (need_imatrix.size() > 6) list += ", ... (" + std::to_string(need_imatrix.size()) + " tensors)";
    throw UsageError(std::string(file_type_info(opt.ftype).name) +
                     " puts very low-bit types on tensors that need an importance matrix, and " +
                     (opt.imatrix ? "the imatrix has no data for: " : "none was given (--imatrix FILE): ") + list);
  }
  return r;
}

std::pair<std::string, GgufValue> parse_override_kv(const std::string& spec) {
  const auto eq = spec.find('=');
  const auto colon = eq == std::string::npos ? std::string::npos : spec.find(':', eq);
  if (eq == std::string::npos || eq == 0 || colon == std::string::npos)
    throw UsageError("--override-kv '" + spec + "' is not KEY=TYPE:VALUE (TYPE: int, float, bool, str)");
  const std::string key = spec.substr(0, eq), type = spec.substr(eq + 1, colon - eq - 1), val = spec.substr(colon + 1);
  char* end = nullptr;
  if (type == "int") {
    long long v = std::strtoll(val.c_str(), &end, 10);
    if (val.empty() || *end) throw UsageError("--override-kv '" + spec + "': '" + val + "' is not an integer");
    return {key, GgufValue::i64(v)};
  }
  if (type == "float") {
    double v = std::strtod(val.c_str(), &end);
    if (val.empty() || *end) throw UsageError("--override-kv '" + spec + "': '" + val + "' is not a number");
    return {key, GgufValue::f64(v)};
  }
  if (type == "bool") {
    if (val != "true" && val != "false") throw UsageError("--override-kv '" + spec + "': bool values are true or false");
    return {key, GgufValue::boolean(val == "true")};
  }
  if (type == "str") return {key, GgufValue::str(val)};
  throw UsageError("--override-kv '" + spec + "': unknown type '" + type + "' (int, float, bool, str)");
}

void stamp_quantize_metadata(GgufMetadata& meta, const QuantizeOptions& opt, const QuantizePlanResult& r) {
  std::vector<std::string> drop;
  for (const auto& [k, v] : meta.entries())
    if (k.rfind("split.", 0) == 0) drop.push_back(k);
  for (const auto& k : drop) meta.erase(k);
  meta.set("general.quantization_version", GgufValue::u32(2));
  meta.set("general.file_type", GgufValue::u32(static_cast<uint32_t>(opt.ftype)));
  if (opt.imatrix) {
    meta.set("quantize.imatrix.file", GgufValue::str(opt.imatrix_path));
    if (!opt.imatrix->datasets.empty()) meta.set("quantize.imatrix.dataset", GgufValue::str(opt.imatrix->datasets.front()));
    meta.set("quantize.imatrix.entries_count", GgufValue::i32(static_cast<int32_t>(opt.imatrix->entries.size())));
    meta.set("quantize.imatrix.chunks_count", GgufValue::i32(opt.imatrix->chunk_count));
  }
  meta.set("general.quantized_by", GgufValue::str(std::string("smolq ") + SMOLQ_VERSION));
  for (const auto& spec : opt.override_kv) {
    auto [k, v] = parse_override_kv(spec);
    meta.set(k, v);
  }
}

}  // namespace smolq
