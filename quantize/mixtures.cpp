// The engine that reads the mixture tables of mixture_rules.cpp, the fallback for rows that
// do not fit a type's block, and whole-model plans.
#include "quantize/mixtures.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <numeric>
#include <regex>

#include "formats/error.h"
#include "formats/suggest.h"
#include "quantize/registry.h"

namespace smolq {
namespace {

using mixture::Cond;
using mixture::Rule;
using mixture::RuleGroup;

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::toupper(static_cast<unsigned char>(x)) == std::toupper(static_cast<unsigned char>(y));
         });
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view tname(GgmlType t) { return type_info(t).ggml_name; }

bool role_in(mixture::RoleMask m, TensorRole r) { return m == 0 || (m >> static_cast<uint32_t>(r)) & 1u; }
bool ftype_in(mixture::FtypeMask m, FileType f) { return m == 0 || (m >> static_cast<uint32_t>(f)) & 1u; }

bool is_attn_v_like(TensorRole r) {
  return r == TensorRole::kAttnV || r == TensorRole::kAttnQkv || r == TensorRole::kAttnKvB;
}

// ggml_is_quantized: block formats are, plain floats are not. Mixture rules, --tensor-type
// and fallbacks only apply when the file type's default is quantized.
bool is_quantized_type(GgmlType t) { return !type_info(t).is_float; }

// llama.cpp's layer-placement heuristic: the first and last eighth of the layers, and every
// third layer in between, are the most sensitive and get more bits.
bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// Everything a condition may look at.
struct RuleContext {
  const ModelFacts& facts;
  const MixtureOptions& options;
  const TensorShape& tensor;
  TensorRole role;
  GgmlType current;
  int i = 0, n = 0;  // position among the tensor's kind, see mixture::Position
};

bool holds(Cond c, const RuleContext& x) {
  const uint32_t n_expert = x.facts.n_expert;
  switch (c) {
    case Cond::kAlways: return true;
    case Cond::kGqa4: return x.facts.n_gqa() >= 4;
    case Cond::kGqa4OrExperts4: return x.facts.n_gqa() >= 4 || n_expert >= 4;
    case Cond::kEightExperts: return n_expert == 8;
    case Cond::kFalcon: return x.facts.arch == "falcon";
    case Cond::kNotFalcon: return x.facts.arch != "falcon";
    case Cond::kLlama70B: return x.facts.is_llama_70b();
    case Cond::kNoImatrix: return !x.options.has_imatrix;
    case Cond::kHasImatrix: return x.options.has_imatrix;
    case Cond::kFirstEighth: return x.i < x.n / 8;
    case Cond::kFirstSixteenth: return x.i < x.n / 16;
    case Cond::kMoreBits: return use_more_bits(x.i, x.n);
    case Cond::kMiddle: return x.i >= x.n / 8 && x.i < 7 * x.n / 8;
    case Cond::kFirstTwo: return x.i < 2;
    case Cond::kFirstFour: return x.i < 4;
    case Cond::kExpertStack: {
      // bailingmoe3's MLA projections are 3-D too; only its FFN stacks are experts.
      const bool ffn = x.role == TensorRole::kFfnUp || x.role == TensorRole::kFfnGate ||
                       x.role == TensorRole::kFfnDown;
      return x.tensor.ne[2] > 1 && (x.facts.arch != "bailingmoe3" || ffn);
    }
    case Cond::kRowNotBlockMultiple: return x.tensor.ne[0] % type_info(x.current).block_elems != 0;
    case Cond::kCurrentNotQ8_0: return x.current != GgmlType::Q8_0;
    case Cond::kCurrentQ3KOrQ4K: return x.current == GgmlType::Q3_K || x.current == GgmlType::Q4_K;
  }
  return false;
}

bool rule_matches(const Rule& r, FileType ftype, const RuleContext& x) {
  if (!role_in(r.roles, x.role) || !ftype_in(r.file_types, ftype)) return false;
  return std::all_of(r.when.begin(), r.when.end(), [&](Cond c) { return holds(c, x); });
}

// tensor_type_fallback: a row that is not a whole number of blocks takes the registry's
// fallback type (256-weight formats -> a 32-weight format of similar precision), and F16 when
// even the fallback does not fit. Types with no fallback cannot be used at all.
GgmlType fit_row(const TensorShape& t, GgmlType type, std::string& why) {
  const uint64_t ncols = t.row_length();
  const uint32_t block = type_info(type).block_elems;
  if (ncols % block == 0) return type;
  const GgmlType fb = qtype(type).fallback;
  if (fb == type)
    throw Error("tensor '" + t.name + "': row length " + std::to_string(ncols) + " is not a multiple of " +
                std::to_string(block) + " and " + std::string(tname(type)) + " has no fallback type");
  char buf[160];
  std::snprintf(buf, sizeof buf, "; row of %llu is not a multiple of %u (%s) -> %s",
                static_cast<unsigned long long>(ncols), block, tname(type).data(), tname(fb).data());
  why += buf;
  if (ncols % type_info(fb).block_elems != 0) {
    std::snprintf(buf, sizeof buf, ", nor of %u -> f16", type_info(fb).block_elems);
    why += buf;
    return GgmlType::F16;
  }
  return fb;
}

// A type forced by an option must still fit the rows (llama.cpp would fail later, while
// quantizing); say so now.
void check_forced_fit(const TensorShape& t, GgmlType type, std::string_view option) {
  if (t.row_length() % type_info(type).block_elems != 0)
    throw UsageError(std::string(option) + " " + std::string(tname(type)) + ": tensor '" + t.name +
                     "' has rows of " + std::to_string(t.row_length()) + ", not a multiple of " +
                     std::to_string(type_info(type).block_elems));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// File types

const FileTypeInfo& file_type_info(FileType t) {
  for (const auto& f : all_file_types())
    if (f.id == t) return f;
  throw Error("unknown file type number " + std::to_string(static_cast<uint32_t>(t)));
}

// Names first (case-insensitive, like llama-quantize's try_parse_ftype), then the aliases,
// then a bare llama_ftype number.
const FileTypeInfo* find_file_type(std::string_view s) {
  // llama-quantize's short aliases pick the _M mix.
  static constexpr std::pair<std::string_view, FileType> kAliases[] = {
      {"Q3_K", FileType::kQ3_K_M}, {"Q4_K", FileType::kQ4_K_M}, {"Q5_K", FileType::kQ5_K_M}};
  for (const auto& f : all_file_types())
    if (iequal(f.name, s)) return &f;
  for (const auto& [alias, ft] : kAliases)
    if (iequal(alias, s)) return &file_type_info(ft);
  uint32_t number = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), number);
  if (ec == std::errc{} && end == s.data() + s.size())
    for (const auto& f : all_file_types())
      if (static_cast<uint32_t>(f.id) == number) return &f;
  return nullptr;
}

FileType parse_file_type(std::string_view s) {
  if (const FileTypeInfo* f = find_file_type(s)) return f->id;
  std::vector<std::string> names;
  for (const auto& f : all_file_types()) names.emplace_back(f.name);
  const std::string near = did_you_mean(s, names);
  if (!near.empty()) throw UsageError("unknown file type '" + std::string(s) + "'" + near);
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  throw UsageError("unknown file type '" + std::string(s) + "' (one of: " + list + ")");
}

// llama-quantize's parse_tensor_type: split at the first '=', lower-case the pattern, look
// the type up by name. The pattern is compiled once here so a bad one is a usage error.
TensorTypeOverride parse_tensor_type_override(std::string_view spec) {
  const size_t eq = spec.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == spec.size())
    throw UsageError("--tensor-type expects REGEX=TYPE, got '" + std::string(spec) + "'");
  const TypeGeometry* g = find_type(spec.substr(eq + 1));
  if (!g || !g->weight_type) {
    std::vector<std::string> names;
    for (const auto& t : all_types())
      if (t.weight_type) names.emplace_back(t.name);
    throw UsageError("--tensor-type: unknown weight type '" + std::string(spec.substr(eq + 1)) + "'" +
                     did_you_mean(spec.substr(eq + 1), names));
  }
  TensorTypeOverride o{lower(spec.substr(0, eq)), g->id};
  try {
    std::regex check(o.pattern);
  } catch (const std::regex_error& e) {
    throw UsageError("--tensor-type: bad regular expression '" + o.pattern + "': " + e.what());
  }
  return o;
}

// ---------------------------------------------------------------------------------------
// Choosing

bool tensor_order_less(std::string_view a, std::string_view b) {
  const int la = layer_of(a).value_or(-1), lb = layer_of(b).value_or(-1);
  if (la != lb) return la < lb;
  return a < b;
}

MixtureChooser::MixtureChooser(FileType ftype, ModelFacts facts, MixtureOptions options,
                               std::span<const TensorShape> all_tensors)
    : ftype_(ftype), facts_(std::move(facts)), options_(std::move(options)) {
  for (const auto& t : all_tensors) {
    const TensorRole r = classify_role(t.name);
    if (is_attn_v_like(r)) ++n_attn_v_;
    if (r == TensorRole::kOutput) tied_ = false;
  }
}

// llama_tensor_get_type_impl as a table walk: pick the first group that owns the tensor,
// place the tensor among its kind (for the layer conditions), take the group's first matching
// rule, apply its adjustments, then advance the counters the group keeps. The counters only
// move when the rules run (not for --tensor-type matches or --pure), as in llama.cpp, which
// is why one chooser must see a whole model in order.
GgmlType MixtureChooser::apply_rules(const TensorShape& t, TensorRole role, GgmlType type, std::string& why) {
  // Tied embeddings: the one matrix is also the output layer, so it gets the output's type.
  const bool tied_embd = tied_ && role == TensorRole::kTokenEmbd;
  const TensorRole rule_role = tied_embd ? TensorRole::kOutput : role;

  const RuleGroup* group = nullptr;
  for (const auto& g : mixture::rule_groups())
    if (role_in(g.roles, rule_role) && ftype_in(g.file_types, ftype_)) {
      group = &g;
      break;
    }
  if (!group) return type;  // no rule for this kind of tensor: default

  if (group->honours == mixture::Honours::kOutputTensorType && options_.output_tensor_type) {
    why = "--output-tensor-type" + std::string(tied_embd ? " (tied embedding)" : "");
    return *options_.output_tensor_type;
  }
  if (group->honours == mixture::Honours::kTokenEmbeddingType && options_.token_embedding_type) {
    why = "--token-embedding-type";
    return *options_.token_embedding_type;
  }

  RuleContext x{facts_, options_, t, rule_role, type};
  // Position among the tensor's kind (see mixture::Position).
  int* counter = nullptr;
  switch (role) {
    case TensorRole::kFfnDown: counter = &seen_.ffn_down; break;
    case TensorRole::kFfnGate: counter = &seen_.ffn_gate; break;
    case TensorRole::kFfnUp: counter = &seen_.ffn_up; break;
    default: break;
  }
  if (is_attn_v_like(role)) {
    x.i = seen_.attn_v;
    x.n = n_attn_v_;
  } else if (counter) {
    x.i = *counter;
    x.n = static_cast<int>(facts_.n_layer);
    // With experts, tensors of one role are not one per layer: read the layer from the name.
    if (group->position == mixture::Position::kLayer && facts_.n_expert > 1) {
      const auto layer = layer_of(t.name);
      if (!layer) throw Error("cannot tell the layer of tensor '" + t.name + "'");
      if (*layer < 0 || *layer >= x.n)
        throw Error("tensor '" + t.name + "': layer " + std::to_string(*layer) + " is outside [0, " +
                    std::to_string(x.n) + ")");
      x.i = *layer;
    }
  }

  for (const Rule& r : group->rules) {
    if (!rule_matches(r, ftype_, x)) continue;
    if (r.to) x.current = *r.to;
    why = r.why;
    break;
  }
  for (const Rule& r : group->adjust) {
    if (!rule_matches(r, ftype_, x)) continue;
    x.current = *r.to;
    why += (why.empty() ? "" : "; ") + std::string(r.why);
  }
  if (tied_embd) why = "tied embedding (also the output layer): " + (why.empty() ? std::string("default") : why);

  if (role_in(group->counts, role) && group->counts != 0) {
    if (is_attn_v_like(role)) ++seen_.attn_v;
    else if (counter) ++*counter;
  }
  return x.current;
}

// llama_tensor_get_type: the shape/name filter, then the user's options, then the rules, then
// the fallback. The two type options return early and skip the fallback in llama.cpp; a type
// that cannot hold the rows would only fail later, while quantizing, so we reject it here.
TensorChoice MixtureChooser::choose(const TensorShape& t) {
  TensorChoice c;
  if (auto no = why_not_quantized(t, !options_.leave_output_tensor)) {
    c.type = t.source_type;
    c.reason = *no;
    return c;
  }
  c.quantized = true;
  const TensorRole role = classify_role(t.name);
  const GgmlType default_type = file_type_info(ftype_).default_type;

  // The embedding / output options win over everything, without a fallback.
  if (role == TensorRole::kTokenEmbd && options_.token_embedding_type) {
    check_forced_fit(t, *options_.token_embedding_type, "--token-embedding-type");
    c.type = *options_.token_embedding_type;
    c.reason = "--token-embedding-type";
  } else if (role == TensorRole::kOutput && options_.output_tensor_type) {
    check_forced_fit(t, *options_.output_tensor_type, "--output-tensor-type");
    c.type = *options_.output_tensor_type;
    c.reason = "--output-tensor-type";
  } else if (!is_quantized_type(default_type)) {
    // F32 / F16 / BF16 files: every weight in the default type, no rules, no overrides.
    c.type = default_type;
    c.reason = "default " + std::string(tname(default_type));
  } else {
    GgmlType type = default_type;
    std::string why;
    bool manual = false;
    for (const auto& o : options_.tensor_types) {
      if (std::regex_search(t.name, std::regex(o.pattern))) {
        type = o.type;
        why = "--tensor-type " + o.pattern + "=" + std::string(tname(o.type));
        manual = true;
        break;
      }
    }
    if (!manual && !options_.pure) type = apply_rules(t, role, type, why);
    if (why.empty()) why = options_.pure ? "--pure: default" : "default";
    const GgmlType fitted = fit_row(t, type, why);
    if (fitted != type) c.wanted = type;
    c.type = fitted;
    c.reason = why;
  }
  c.requires_imatrix = role != TensorRole::kTokenEmbd && role != TensorRole::kOutput &&
                       mixture::type_requires_imatrix(c.type, ftype_);
  return c;
}

// ---------------------------------------------------------------------------------------
// Plans

// Bytes are the tensor data only (GGUF pads each tensor to the alignment, at most 31 bytes
// each); the bits per weight are over every element, as llama-quantize prints them.
MixturePlan plan_mixture(FileType ftype, std::span<const TensorShape> tensors, const ModelFacts& facts,
                         const MixtureOptions& options) {
  MixturePlan plan;
  plan.ftype = ftype;
  plan.tensors.resize(tensors.size());
  // Counters make the choice order-dependent: visit tensors in llama.cpp's order.
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return tensor_order_less(tensors[a].name, tensors[b].name); });
  MixtureChooser chooser(ftype, facts, options, tensors);
  for (size_t i : order) {
    const TensorShape& t = tensors[i];
    PlannedTensor& p = plan.tensors[i];
    p.tensor = t;
    p.choice = chooser.choose(t);
    const auto row = row_bytes(p.choice.type, t.row_length());
    if (!row)
      throw Error("tensor '" + t.name + "': rows of " + std::to_string(t.row_length()) + " do not fit type " +
                  std::string(tname(p.choice.type)));
    p.bytes = *row * t.n_rows();
    plan.total_bytes += p.bytes;
    plan.total_elements += t.n_elements();
    plan.source_bytes += row_bytes(t.source_type, t.row_length()).value_or(0) * t.n_rows();
    if (p.choice.wanted) ++plan.n_fallback;
    if (p.choice.quantized && p.choice.requires_imatrix) plan.requires_imatrix = true;
  }
  return plan;
}

std::string format_plan(const MixturePlan& plan) {
  std::string out;
  char line[512];
  for (const auto& p : plan.tensors) {
    std::string shape;
    for (int d = 0; d < p.tensor.n_dims(); ++d) shape += (d ? " x " : "") + std::to_string(p.tensor.ne[d]);
    std::snprintf(line, sizeof line, "%-34s %-20s %-7s -> %-7s %12llu  %s\n", p.tensor.name.c_str(), shape.c_str(),
                  tname(p.tensor.source_type).data(), tname(p.choice.type).data(),
                  static_cast<unsigned long long>(p.bytes), p.choice.reason.c_str());
    out += line;
  }
  std::snprintf(line, sizeof line,
                "%s: %zu tensors, %llu weights, %llu bytes (%.2f MiB), %.2f bits per weight; "
                "%d fallback(s)%s\n",
                std::string(file_type_info(plan.ftype).name).c_str(), plan.tensors.size(),
                static_cast<unsigned long long>(plan.total_elements), static_cast<unsigned long long>(plan.total_bytes),
                static_cast<double>(plan.total_bytes) / (1024.0 * 1024.0), plan.bits_per_weight(), plan.n_fallback,
                plan.requires_imatrix ? "; needs an importance matrix" : "");
  out += line;
  return out;
}

}  // namespace smolq
