#include "eval/imatrix_stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <regex>
#include <set>

#include "formats/error.h"

namespace smolq {
namespace {

// A column whose mean squared activation is at most this counts as inactive (llama.cpp's).
constexpr float kInactiveThreshold = 1e-5f;

// "blk.3.attn_q.weight" -> layer "3", kind "attn_q"; outside blk.* the layer is "-"; a name
// without a ".weight" part is its own kind.
void split_name(const std::string& name, std::string& layer, std::string& kind) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = name.find('.', start);
    parts.push_back(name.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (size_t i = 0; i + 1 < parts.size(); ++i)
    if (parts[i] == "blk") {
      layer = parts[i + 1];
      break;
    }
  for (size_t i = 1; i < parts.size(); ++i)
    if (parts[i] == "weight") {
      kind = parts[i - 1];
      break;
    }
  if (kind.empty()) kind = name;
  if (layer.empty()) layer = "-";
}

int block_number(const std::string& layer) {
  if (layer.empty() || layer.size() > 9 || !std::all_of(layer.begin(), layer.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoi(layer);
}

// Sequential float sums from 0, as std::accumulate / std::inner_product with a 0.0f start.
float sum_f(std::span<const float> v) {
  float s = 0.0f;
  for (float x : v) s = s + x;
  return s;
}
float dot_f(std::span<const float> a, std::span<const float> b) {
  float s = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) s = s + a[i] * b[i];
  return s;
}

// Statistics of one entry's importances; false when no matrix of it has data.
bool tensor_stats(const std::string& name, const ImatrixEntry& e, ImatrixTensorStats& ts) {
  const size_t n_mat = e.n_mat(), n_cols = e.n_cols();
  std::vector<float> act;
  act.reserve(e.sums.size());
  for (size_t m = 0; m < n_mat; ++m) {
    if (e.counts[m] == 0) continue;  // an expert calibration never reached
    const float count = static_cast<float>(e.counts[m]);
    for (size_t j = 0; j < n_cols; ++j) act.push_back(e.sums[m * n_cols + j] / count);
  }
  if (act.empty()) return false;
  const float n = static_cast<float>(act.size());
  ts.name = name;
  split_name(name, ts.layer, ts.kind);
  ts.block = block_number(ts.layer);
  ts.elements = static_cast<int>(act.size());
  ts.total = sum_f(act);
  ts.max = *std::max_element(act.begin(), act.end());
  ts.min = *std::min_element(act.begin(), act.end());
  ts.mean = ts.total / n;
  const float var = dot_f(act, act) / n - ts.mean * ts.mean;
  ts.stddev = std::sqrt(std::max(0.0f, var));
  const auto inactive = std::count_if(act.begin(), act.end(), [](float v) { return std::fabs(v) <= kInactiveThreshold; });
  ts.active = 1 - static_cast<float>(inactive) / n;
  ts.entropy = 0;
  if (ts.total > 0)
    for (float a : act)
      if (const float p = a / ts.total; p > 0) ts.entropy -= p * std::log2(p);
  int above = 0;  // columns more than one standard deviation above the mean
  if (ts.stddev > 0.0f)
    for (float a : act)
      if ((a - ts.mean) / ts.stddev > 1) ++above;
  ts.zd = static_cast<float>(above) / static_cast<float>(ts.elements);
  return true;
}

// Cosine similarity of each blk.N tensor's raw sums with blk.(N-1)'s of the same kind.
void fill_cossim(std::vector<ImatrixTensorStats>& ts, const ImatrixData& d) {
  static const std::regex kBlock(R"(blk\.(\d+)\.)");
  std::map<std::string, const ImatrixTensorStats*> by_name;
  for (const auto& t : ts) by_name[t.name] = &t;
  for (auto& t : ts) {
    std::smatch m;
    t.cossim = 0;
    if (!std::regex_search(t.name, m, kBlock)) continue;
    std::string prev = t.name;
    prev.replace(static_cast<size_t>(m.position(1)), static_cast<size_t>(m.length(1)), std::to_string(std::stoi(m[1]) - 1));
    if (!by_name.count(prev)) continue;
    const std::vector<float>& a = d.entries.at(t.name).sums;
    const std::vector<float>& b = d.entries.at(prev).sums;
    if (a.size() != b.size()) continue;
    const float dp = dot_f(a, b);
    t.cossim = dp / (std::sqrt(dot_f(a, a)) * std::sqrt(dot_f(b, b)));
  }
}

}  // namespace

ImatrixStatistics imatrix_statistics(const ImatrixData& d) {
  if (d.legacy) throw Error("imatrix statistics need raw sums; merge legacy data first");
  ImatrixStatistics s;
  for (const auto& [name, e] : d.entries) {
    ImatrixTensorStats ts;
    if (tensor_stats(name, e, ts)) s.tensors.push_back(std::move(ts));
    else s.no_data.push_back(name);
  }
  fill_cossim(s.tensors, d);
  std::stable_sort(s.tensors.begin(), s.tensors.end(), [](const ImatrixTensorStats& a, const ImatrixTensorStats& b) {
    return a.kind < b.kind || (a.kind == b.kind && a.total > b.total);
  });
  // Per block, N-weighted means, accumulated in print order.
  struct Weighted {
    float total = 0, zd = 0, cossim = 0;
    int elements = 0;
  };
  std::map<int, Weighted> w;
  for (const auto& t : s.tensors) {
    Weighted& x = w[t.block];
    x.total += static_cast<float>(t.elements) * t.total;
    x.zd += static_cast<float>(t.elements) * t.zd;
    x.cossim += static_cast<float>(t.elements) * t.cossim;
    x.elements += t.elements;
  }
  for (const auto& [block, x] : w) {
    if (block < 0 || x.elements == 0) continue;
    const float n = static_cast<float>(x.elements);
    s.layers.push_back({block, x.total / n, x.zd / n, x.cossim / n});
  }
  return s;
}

std::string format_imatrix_statistics(const ImatrixStatistics& s, const std::string& source) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "\nComputing statistics for %s (%zu tensors)\n\n", source.c_str(), s.tensors.size());
  out += line;
  out += " Layer\t       Tensor\t          Σ(Act²)\t  Min\t            Max\t           μ\t   σ\t % Active\tN\t"
         "   Entropy\tE (norm)\tZD\t  CosSim\n";
  out += std::string(169, '=') + "\n";
  for (const auto& t : s.tensors) {
    // Normalized entropy: the share of the largest possible entropy, log2(N).
    const double e_norm = t.elements > 0 ? 100.0f * (t.entropy / std::log2(static_cast<double>(t.elements))) : 0.0;
    std::snprintf(line, sizeof line,
                  "%5s\t%-20s\t%10.2f\t%8.4f\t%11.4f\t%6.2f\t%6.2f\t%8.2f%%\t%6d\t%10.4f\t%6.2f%%\t%10.2f%%\t%8.4f\n",
                  t.layer.c_str(), t.kind.c_str(), t.total, t.min, t.max, t.mean, t.stddev, t.active * 100.0f,
                  t.elements, t.entropy, e_norm, 100.0f * t.zd, t.cossim);
    out += line;
  }
  std::snprintf(line, sizeof line, "\nComputing weighted average statistics per layer (%zu layers)\n\n", s.layers.size());
  out += line;
  out += "  Layer\t     μΣ(Act²)\t      μZD\tμCosSim\n";
  out += std::string(48, '=') + "\n";
  for (const auto& l : s.layers) {
    std::snprintf(line, sizeof line, "%5d\t%14.2f\t%10.4f%%\t%6.4f\n", l.block, l.total, 100.0f * l.zd, l.cossim);
    out += line;
  }
  for (const auto& n : s.no_data) out += "no data for " + n + " (every count is 0): no statistics\n";
  return out;
}

ImatrixCoverage imatrix_coverage(const ImatrixData& d, std::span<const std::string> expected) {
  ImatrixCoverage c;
  c.n_entries = d.entries.size();
  for (const auto& [name, e] : d.entries)
    for (int64_t n : e.counts) c.max_count = std::max(c.max_count, n);
  for (const auto& [name, e] : d.entries) {
    const size_t with_data = static_cast<size_t>(std::count_if(e.counts.begin(), e.counts.end(), [](int64_t n) { return n > 0; }));
    if (with_data < e.n_mat()) c.partial.push_back({name, with_data, e.n_mat()});
    const int64_t most = e.counts.empty() ? 0 : *std::max_element(e.counts.begin(), e.counts.end());
    if (with_data > 0 && most < c.max_count) c.short_count.push_back({name, most});
  }
  const std::set<std::string> want(expected.begin(), expected.end());
  for (const auto& name : want)
    if (!d.entries.count(name)) c.missing.push_back(name);
  return c;
}

std::string format_imatrix_coverage(const ImatrixCoverage& c) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "coverage: %zu entries, at most %lld tokens each", c.n_entries,
                static_cast<long long>(c.max_count));
  out += line;
  if (c.complete()) return out + "; every entry has full data\n";
  std::snprintf(line, sizeof line, "; %zu partial, %zu with fewer tokens, %zu missing\n", c.partial.size(),
                c.short_count.size(), c.missing.size());
  out += line;
  for (const auto& p : c.partial) {
    std::snprintf(line, sizeof line, "  partial data: %s (%zu of %zu matrices, %.2f%%)\n", p.name.c_str(), p.with_data,
                  p.n_mat, 100.0 * static_cast<double>(p.with_data) / static_cast<double>(p.n_mat));
    out += line;
  }
  for (const auto& s : c.short_count) {
    std::snprintf(line, sizeof line, "  fewer tokens: %s (%lld of %lld)\n", s.name.c_str(), static_cast<long long>(s.count),
                  static_cast<long long>(c.max_count));
    out += line;
  }
  for (const auto& m : c.missing) out += "  no entry:     " + m + " (a weight of the model)\n";
  return out;
}

}  // namespace smolq
