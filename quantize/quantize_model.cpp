#include "quantize/quantize_model.h"

#include <algorithm>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <map>

#include "formats/error.h"
#include "quantize/registry.h"

namespace smolq {
namespace {

bool is_plain_float(GgmlType t) { return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16; }

// llama-quantize matches --include/--exclude-weights with std::string::find.
bool contains_any(const std::vector<std::string>& subs, const std::string& name) {
  for (const auto& s : subs)
    if (name.find(s) != std::string::npos) return true;
  return false;
}

// "a, b, c, ... (N tensors)": at most `shown` names of a list, for one-line messages.
std::string name_list(const std::vector<std::string>& names, size_t shown = 6) {
  std::string list;
  for (size_t i = 0; i < names.size() && i < shown; ++i) list += (i ? ", " : "") + names[i];
  if (names.size() > shown) list += ", ... (" + std::to_string(names.size()) + " tensors)";
  return list;
}

// The allocator's per-tensor types replace the mixture's (a quantizable tensor only; the
// allocator never names norms). Totals are recomputed.
void apply_assigned_types(MixturePlan& plan, const std::map<std::string, GgmlType>& types) {
  plan.total_bytes = 0;
  plan.n_fallback = 0;
  plan.requires_imatrix = false;
  for (PlannedTensor& p : plan.tensors) {
    auto it = types.find(p.tensor.name);
    if (it != types.end()) {
      if (!p.choice.quantized) throw Error("target allocation names '" + p.tensor.name + "', which is not quantized");
      const auto row = row_bytes(it->second, p.tensor.row_length());
      if (!row) throw Error("target allocation gives '" + p.tensor.name + "' a type that does not fit its rows");
      p.choice.type = it->second;
      p.choice.wanted.reset();
      p.choice.requires_imatrix = false;
      p.choice.reason = "target allocation";
      p.bytes = *row * p.tensor.n_rows();
    }
    plan.total_bytes += p.bytes;
    if (p.choice.wanted) ++plan.n_fallback;
    if (p.choice.quantized && p.choice.requires_imatrix) plan.requires_imatrix = true;
  }
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
  if (!opt.include_weights.empty() && !opt.exclude_weights.empty())
    throw UsageError("--include-weights and --exclude-weights cannot be used together (as in llama-quantize)");
  QuantizePlanResult r;
  // The imatrix entries that survive the include/exclude filter (llama-quantize drops the
  // others before quantizing, and counts only these in quantize.imatrix.entries_count).
  auto entry_allowed = [&](const std::string& name) {
    if (!opt.include_weights.empty()) return contains_any(opt.include_weights, name);
    return !contains_any(opt.exclude_weights, name);
  };
  if (opt.imatrix)
    for (const auto& [name, e] : opt.imatrix->entries) r.imatrix_entries += entry_allowed(name) ? 1 : 0;
  // The filters match substrings of tensor names, as llama-quantize's do; a pattern that
  // matches nothing (a regular expression, a typo) would silently change what is weighted.
  for (const auto* list : {&opt.include_weights, &opt.exclude_weights})
    for (const auto& pat : *list) {
      const bool any = std::any_of(sources.begin(), sources.end(),
                                   [&](const SourceTensor& s) { return s.shape.name.find(pat) != std::string::npos; });
      if (!any)
        r.warnings.push_back(std::string(list == &opt.include_weights ? "--include-weights" : "--exclude-weights") +
                             " '" + pat + "' is contained in no tensor name (it matches substrings, not regular expressions)");
    }
  const bool have_imatrix = r.imatrix_entries > 0;

  MixtureOptions mopt = opt.mixture;
  mopt.has_imatrix = have_imatrix;
  std::vector<TensorShape> shapes;
  shapes.reserve(sources.size());
  for (const auto& s : sources) shapes.push_back(s.shape);
  r.plan = plan_mixture(opt.ftype, shapes, facts, mopt);
  if (!opt.assigned_types.empty()) apply_assigned_types(r.plan, opt.assigned_types);

  // --output-tensor-type on a tied embedding reaches token_embd.weight through the output
  // rule and, as in llama-quantize, takes the fallback when its rows do not fit the type
  // (Q6_K on a 576-wide embedding -> Q8_0). Say so rather than change the type quietly.
  for (const auto& pt : r.plan.tensors)
    if (pt.choice.wanted && pt.choice.reason.find("--output-tensor-type") != std::string::npos)
      r.warnings.push_back("--output-tensor-type " + std::string(type_info(*pt.choice.wanted).name) + " cannot hold the rows of '" +
                           pt.tensor.name + "' (" + std::to_string(pt.tensor.row_length()) + " wide): it is written as " +
                           std::string(type_info(pt.choice.type).name) + ", the fallback (as llama-quantize does)");

  std::vector<std::string> need_imatrix, requantized, uncovered;
  std::map<std::string, int> requant_pairs;  // "Q4_1 -> Q5_0" -> tensors
  for (size_t i = 0; i < sources.size(); ++i) {
    const SourceTensor& src = sources[i];
    const PlannedTensor& pt = r.plan.tensors[i];
    OutputTensor o;
    o.name = src.shape.name;
    for (int d = 0; d < 4; ++d)
      if (d == 0 || d < std::max(1, src.shape.n_dims())) o.shape.push_back(src.shape.ne[d]);
    o.type = pt.choice.type;
    // As llama.cpp: a tensor whose planned type equals its current type is copied as it is.
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
      requantized.push_back(o.name);
      ++requant_pairs[std::string(type_info(src.shape.source_type).name) + " -> " + std::string(type_info(o.type).name)];
    }
    o.source = src.rows;
    const ImatrixEntry* e = nullptr;
    if (changes && have_imatrix && entry_allowed(o.name)) e = opt.imatrix->find(o.name);
    if (e && (e->n_mat() != 1 || e->n_cols() != src.shape.ne[0])) {
      const std::string what = "importance matrix entry for '" + o.name + "' has " + std::to_string(e->n_cols()) +
                               " x " + std::to_string(e->n_mat()) + " values; the tensor has rows of " +
                               std::to_string(src.shape.ne[0]);
      // llama.cpp tolerates (and ignores) a mismatched token_embd entry; anything else means
      // the imatrix was made for another model.
      if (classify_role(o.name) != TensorRole::kTokenEmbd)
        throw FormatError(opt.imatrix_path.empty() ? std::string("importance matrix") : opt.imatrix_path,
                          what + " (imatrix from another model?)");
      r.warnings.push_back(what + ": ignored");
      e = nullptr;
    }
    if (e) {
      o.imatrix = e->importance();
      ++r.imatrix_used;
    } else if (changes && pt.choice.requires_imatrix) {
      need_imatrix.push_back(o.name);
    } else if (changes && have_imatrix && entry_allowed(o.name) && !is_plain_float(o.type) &&
               classify_role(o.name) != TensorRole::kTokenEmbd) {
      // token_embd is read with get_rows, not a matrix product: llama-imatrix never has data
      // for it, so its absence is not worth a warning.
      uncovered.push_back(o.name);
    }
    r.outputs.push_back(std::move(o));
  }

  if (!uncovered.empty())
    r.warnings.push_back("no importance data for " + name_list(uncovered) + ": quantized with the default weighting");
  if (!requantized.empty()) {
    std::string pairs;
    for (const auto& [k, n] : requant_pairs) pairs += (pairs.empty() ? "" : ", ") + k + ": " + std::to_string(n);
    const std::string what = std::to_string(requantized.size()) + " tensor(s) already quantized (" + pairs + ")";
    if (!opt.allow_requantize && !opt.dry_run)
      throw UsageError("requantizing is disabled: " + what + " — quantize from the F16/BF16/F32 model, or pass "
                       "--allow-requantize to do it anyway (quality is lower)");
    r.warnings.push_back("requantizing " + what + "; quality is lower than quantizing from F16/BF16/F32");
  }
  if (!need_imatrix.empty() && !opt.importance_from_calibration) {
    const std::string what = std::string(file_type_info(opt.ftype).name) +
                             " puts very low-bit types on tensors that need an importance matrix, and " +
                             (have_imatrix ? "the imatrix has no data for: " : "none was given (--imatrix FILE): ") +
                             name_list(need_imatrix);
    if (!opt.dry_run) throw UsageError(what);
    r.warnings.push_back(what);
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
    errno = 0;
    long long v = std::strtoll(val.c_str(), &end, 10);
    if (val.empty() || *end) throw UsageError("--override-kv '" + spec + "': '" + val + "' is not an integer");
    // llama-quantize stores |value| as u32 (llama.cpp PR 14182: GGUF readers expect u32 keys).
    const unsigned long long mag = v < 0 ? 0ull - static_cast<unsigned long long>(v) : static_cast<unsigned long long>(v);
    if (errno == ERANGE || mag > UINT32_MAX)
      throw UsageError("--override-kv '" + spec + "': llama-quantize stores integers as u32; " + val + " does not fit");
    return {key, GgufValue::u32(static_cast<uint32_t>(mag))};
  }
  if (type == "float") {
    double v = std::strtod(val.c_str(), &end);
    if (val.empty() || *end) throw UsageError("--override-kv '" + spec + "': '" + val + "' is not a number");
    return {key, GgufValue::f32(static_cast<float>(v))};  // llama-quantize writes f32
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
  if (opt.imatrix && r.imatrix_entries > 0) {
    // llama-quantize passes these as kv overrides, so integers land as u32 (see parse_override_kv).
    meta.set("quantize.imatrix.file", GgufValue::str(opt.imatrix_path));
    if (!opt.imatrix->datasets.empty()) meta.set("quantize.imatrix.dataset", GgufValue::str(opt.imatrix->datasets.front()));
    meta.set("quantize.imatrix.entries_count", GgufValue::u32(static_cast<uint32_t>(r.imatrix_entries)));
    if (opt.imatrix->chunk_count > 0)
      meta.set("quantize.imatrix.chunks_count", GgufValue::u32(static_cast<uint32_t>(opt.imatrix->chunk_count)));
  }
  meta.set("general.quantized_by", GgufValue::str(std::string("smolq ") + SMOLQ_VERSION));
  for (const auto& spec : opt.override_kv) {
    auto [k, v] = parse_override_kv(spec);
    meta.set(k, v);
  }
}

}  // namespace smolq
