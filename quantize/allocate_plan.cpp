#include "quantize/allocate_plan.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "formats/error.h"

namespace smolq {
namespace {

// GGUF pads every tensor's data (the last one too) to general.alignment (plan_gguf_layout).
uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

std::string fmt(const char* f, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, f, args...);
  return buf;
}

std::string mib(uint64_t b) { return fmt("%.2f MiB", static_cast<double>(b) / (1024.0 * 1024.0)); }

}  // namespace

MixTarget parse_target_bpw(const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end || !(v >= 1.0 && v <= 32.0))
    throw UsageError("--target-bpw '" + s + "': give bits per weight between 1 and 32 (e.g. 4.5)");
  MixTarget t;
  t.bpw = v;
  t.text = "bpw " + s;
  return t;
}

MixTarget parse_target_size(const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  std::string unit(end ? end : "");
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double mult = 0;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kib") mult = 1024.0;
  else if (unit == "m" || unit == "mib") mult = 1024.0 * 1024.0;
  else if (unit == "g" || unit == "gib") mult = 1024.0 * 1024.0 * 1024.0;
  else if (unit == "kb") mult = 1e3;
  else if (unit == "mb") mult = 1e6;
  else if (unit == "gb") mult = 1e9;
  if (s.empty() || end == s.c_str() || mult == 0 || !(v > 0) || v * mult > 1e15)
    throw UsageError("--target-size '" + s + "': give a size such as 94371840, 90MiB, 90M, 94.4MB or 1.5GiB");
  MixTarget t;
  t.by_size = true;
  t.file_size = static_cast<uint64_t>(std::floor(v * mult));
  t.text = "size " + std::to_string(t.file_size) + " bytes";
  return t;
}

MixPlan plan_mix(const MixInput& in, const MixTarget& target) {
  MixPlan p;
  std::vector<AllocItem> items;
  std::vector<size_t> item_tensor;  // index into in.tensors
  uint64_t fixed = 0;               // bytes of tensors the allocator does not choose for (as counted)
  size_t found = 0;
  // What a tensor costs against the budget: its padded bytes for a file-size target (the file
  // holds them), its plain bytes for a bits-per-weight target (the definition excludes padding).
  auto counted = [&](uint64_t nb) { return target.by_size ? align_up(nb, in.alignment) : nb; };
  for (size_t i = 0; i < in.tensors.size(); ++i) {
    const GgufPlannedTensor& t = in.tensors[i];
    uint64_t n = 1;
    for (uint64_t d : t.shape) n *= d;
    p.elements += n;
    auto it = in.costs.find(t.name);
    if (it == in.costs.end()) {
      fixed += counted(tensor_nbytes(t.type, t.shape, "tensor '" + t.name + "'"));
      continue;
    }
    ++found;
    AllocItem item;
    item.name = t.name;
    for (size_t k = 0; k < it->second.types.size(); ++k) {
      const uint64_t nb = tensor_nbytes(it->second.types[k], t.shape, "tensor '" + t.name + "'");
      item.options.push_back({it->second.types[k], counted(nb), it->second.cost[k]});
    }
    items.push_back(std::move(item));
    item_tensor.push_back(i);
  }
  if (found != in.costs.size()) throw Error("the sensitivity profile names tensors this model does not have");

  // Bytes the allocated tensors may take: the target minus everything the allocator does not
  // choose (header and metadata up to the aligned data offset, norms and other fixed tensors).
  // Because the header was planned with the final keys at their final sizes, and padding is
  // counted per tensor, a solution within `limit` is a file within the target, to the byte.
  uint64_t limit = 0;
  if (target.by_size) {
    limit = target.file_size;
    if (limit < in.data_offset + fixed)
      throw UsageError("--target-size " + std::to_string(target.file_size) + " bytes is below the header and " +
                       "unquantized tensors alone (" + std::to_string(in.data_offset + fixed) + " bytes)");
    limit -= in.data_offset + fixed;
  } else {
    // bpw x elements / 8, rounded down: the largest tensor total whose bpw is <= the target.
    const uint64_t total = static_cast<uint64_t>(std::floor(target.bpw * static_cast<double>(p.elements) / 8.0));
    if (total < fixed) throw UsageError("--target-bpw " + fmt("%g", target.bpw) + " is below the unquantized tensors alone");
    limit = total - fixed;
  }
  p.budget = limit;
  AllocResult r;
  try {
    r = allocate(items, limit);
  } catch (const UsageError&) {
    // Say what the smallest achievable target is, in the user's own unit.
    uint64_t least = 0;
    for (const auto& it : items) {
      uint64_t m = UINT64_MAX;
      for (const auto& o : it.options) m = std::min(m, o.bytes);
      least += m;
    }
    if (target.by_size)
      throw UsageError("--target-size " + std::to_string(target.file_size) + " bytes is too small: the smallest file " +
                       "the candidate types allow is " + std::to_string(in.data_offset + fixed + least) + " bytes (" +
                       mib(in.data_offset + fixed + least) + ")");
    throw UsageError("--target-bpw " + fmt("%g", target.bpw) + " is too small: the candidate types allow at least " +
                     fmt("%.4f", 8.0 * static_cast<double>(fixed + least) / static_cast<double>(p.elements)) + " bpw");
  }
  p.stats = r.stats;
  p.predicted_kld = r.cost;

  // Totals and rows; the label is the file type whose default is the commonest type by weights.
  std::map<GgmlType, uint64_t> by_type;
  std::vector<GgmlType> chosen(in.tensors.size());
  for (size_t i = 0; i < in.tensors.size(); ++i) chosen[i] = in.tensors[i].type;
  for (size_t j = 0; j < items.size(); ++j) chosen[item_tensor[j]] = items[j].options[r.choice[j]].type;
  uint64_t padded = 0;
  size_t j = 0;
  for (size_t i = 0; i < in.tensors.size(); ++i) {
    const GgufPlannedTensor& t = in.tensors[i];
    const uint64_t nb = tensor_nbytes(chosen[i], t.shape, "tensor '" + t.name + "'");
    p.tensor_bytes += nb;
    padded += align_up(nb, in.alignment);
    if (j < item_tensor.size() && item_tensor[j] == i) {
      const AllocOption& o = items[j].options[r.choice[j]];
      uint64_t n = 1;
      for (uint64_t d : t.shape) n *= d;
      MixRow row{t.name, n, o.type, nb, o.cost, items[j].options.size()};
      by_type[o.type] += n;
      p.types[t.name] = o.type;
      p.rows.push_back(std::move(row));
      ++j;
    }
  }
  p.file_size = in.data_offset + padded;
  GgmlType common = GgmlType::Q8_0;
  uint64_t most = 0;
  for (const auto& [t, n] : by_type)
    if (n > most) {
      most = n;
      common = t;
    }
  for (const FileTypeInfo& f : all_file_types())
    if (f.default_type == common) {
      p.label = f.id;
      break;
    }
  return p;
}

// f32 values: 9 significant digits are all an f32 holds, and the key sizes stay fixed.
std::vector<std::string> mix_metadata_kv(const MixTarget& t, const std::string& profile_id, const std::string& calib,
                                         double predicted_kld, double bpw) {
  return {"smolq.mix.target=str:" + t.text,
          "smolq.mix.predicted_kld=float:" + fmt("%.9g", predicted_kld),
          "smolq.mix.bpw=float:" + fmt("%.9g", bpw),
          "smolq.mix.profile=str:" + profile_id,
          "smolq.mix.calibration=str:" + calib};
}

std::string format_mix_plan(const MixPlan& p, const MixTarget& t) {
  std::string out = fmt("%-34s %12s %-8s %12s %14s\n", "tensor", "weights", "type", "bytes", "pred. ΔKLD");
  for (const MixRow& r : p.rows)
    out += fmt("%-34s %12llu %-8s %12llu %14.3e\n", r.name.c_str(), static_cast<unsigned long long>(r.elements),
               std::string(type_info(r.type).name).c_str(), static_cast<unsigned long long>(r.bytes), r.predicted);
  std::map<GgmlType, std::pair<int, uint64_t>> tally;
  for (const MixRow& r : p.rows) {
    tally[r.type].first += 1;
    tally[r.type].second += r.bytes;
  }
  out += "types:";
  for (const auto& [ty, v] : tally)
    out += fmt(" %s x%d (%s)", std::string(type_info(ty).name).c_str(), v.first, mib(v.second).c_str());
  out += "\n";
  out += fmt("target %s: file %llu bytes (%s), tensor data %llu bytes, %.4f bits per weight, predicted KLD %.6f\n",
             t.text.c_str(), static_cast<unsigned long long>(p.file_size), mib(p.file_size).c_str(),
             static_cast<unsigned long long>(p.tensor_bytes), p.bits_per_weight(), p.predicted_kld);
  out += fmt("solver: Lagrangian bound %.6f (lambda %.3e per byte)%s\n", p.stats.lower_bound, p.stats.lambda,
             p.stats.dp_unit ? (p.stats.dp_won ? fmt(", knapsack repair (unit %llu bytes) improved it",
                                                     static_cast<unsigned long long>(p.stats.dp_unit)).c_str()
                                               : fmt(", knapsack repair (unit %llu bytes) found nothing better",
                                                     static_cast<unsigned long long>(p.stats.dp_unit)).c_str())
                             : "");
  return out;
}

}  // namespace smolq
