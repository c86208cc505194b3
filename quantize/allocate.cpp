// Candidate types and the multiple-choice knapsack solver of quantize/allocate.h.
#include "quantize/allocate.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <limits>
#include <numeric>

#include "formats/error.h"
#include "quantize/mixtures.h"
#include "quantize/registry.h"

namespace smolq {
namespace {

using G = GgmlType;

// The ladder of types the allocator may give a weight, in increasing bits per weight
// (bpw = 8 * block bytes / block weights). Left out on purpose:
//   - IQ1_S / IQ1_M (1.56 / 1.75 bpw): below the ~2 bpw floor, where small models break down;
//   - TQ1_0 / TQ2_0: ternary formats for models trained ternary;
//   - MXFP4 / NVFP4 / Q1_0 / Q2_0: newer formats that released llama.cpp builds (and so
//     llama-cpp-python) may not run for dense weights on CPU;
//   - BF16 / F32: F16 is the lossless top; BF16 is not faster on CPU and keeps fewer bits.
constexpr std::array kCandidateLadder{
    G::IQ2_XXS,  // 2.06 bpw, needs an imatrix
    G::IQ2_XS,   // 2.31, needs an imatrix
    G::IQ2_S,    // 2.50, needs an imatrix
    G::Q2_K,     // 2.63
    G::IQ3_XXS,  // 3.06, needs an imatrix (llama.cpp's tensor_requires_imatrix)
    G::IQ3_S,    // 3.44
    G::Q3_K,     // 3.44
    G::IQ4_XS,   // 4.25
    G::Q4_0,     // 4.50 (32-element blocks)
    G::IQ4_NL,   // 4.50 (32-element blocks, non-linear grid)
    G::Q4_K,     // 4.50
    G::Q4_1,     // 5.00 (32-element blocks)
    G::Q5_0,     // 5.50 (32-element blocks)
    G::Q5_K,     // 5.50
    G::Q5_1,     // 6.00 (32-element blocks)
    G::Q6_K,     // 6.56
    G::Q8_0,     // 8.50 (32-element blocks)
    G::F16,      // 16
};

// Points of one item's lower convex hull: option indices by increasing bytes, strictly
// decreasing cost, strictly decreasing savings per byte.
std::vector<size_t> lower_hull(const AllocItem& it) {
  std::vector<size_t> idx(it.options.size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    const AllocOption &x = it.options[a], &y = it.options[b];
    if (x.bytes != y.bytes) return x.bytes < y.bytes;
    return x.cost < y.cost;
  });
  // Pareto: each kept option costs strictly less than every smaller one.
  std::vector<size_t> pareto;
  for (size_t i : idx)
    if (pareto.empty() || it.options[i].cost < it.options[pareto.back()].cost) {
      if (!pareto.empty() && it.options[i].bytes == it.options[pareto.back()].bytes) continue;
      pareto.push_back(i);
    }
  // Convexity: drop a middle point that lies on or above the chord of its neighbours
  // (cross product in long double: bytes reach 1e9 and costs 1e-6).
  std::vector<size_t> hull;
  for (size_t i : pareto) {
    while (hull.size() >= 2) {
      const AllocOption &a = it.options[hull[hull.size() - 2]], &b = it.options[hull.back()], &c = it.options[i];
      const long double cross = static_cast<long double>(b.bytes - a.bytes) * (static_cast<long double>(c.cost) - b.cost) -
                                static_cast<long double>(c.bytes - b.bytes) * (static_cast<long double>(b.cost) - a.cost);
      if (cross <= 0) hull.pop_back();  // b is not below the chord a-c
      else break;
    }
    hull.push_back(i);
  }
  return hull;
}

struct State {
  std::span<const AllocItem> items;
  std::vector<size_t> choice;
  uint64_t bytes = 0;
  double cost = 0;

  void set(size_t t, size_t k) {
    const AllocOption &o = items[t].options[choice[t]], &n = items[t].options[k];
    bytes = bytes - o.bytes + n.bytes;
    cost = cost - o.cost + n.cost;
    choice[t] = k;
  }
  void recompute() {
    bytes = 0;
    cost = 0;
    for (size_t t = 0; t < items.size(); ++t) {
      bytes += items[t].options[choice[t]].bytes;
      cost += items[t].options[choice[t]].cost;
    }
  }
};

// Step 2: spend the slack on the upgrade that saves the most cost per byte, repeatedly.
// Ties: the lower item index, then the lower option index (strict comparisons below).
void greedy_fill(State& s, uint64_t budget) {
  for (;;) {
    const uint64_t slack = budget - s.bytes;
    size_t best_t = SIZE_MAX, best_k = 0;
    double best_rate = 0;
    for (size_t t = 0; t < s.items.size(); ++t) {
      const AllocOption& cur = s.items[t].options[s.choice[t]];
      for (size_t k = 0; k < s.items[t].options.size(); ++k) {
        const AllocOption& o = s.items[t].options[k];
        if (o.cost >= cur.cost) continue;
        if (o.bytes > cur.bytes && o.bytes - cur.bytes > slack) continue;
        // A cheaper-and-no-larger option is a free win: rate = infinity.
        const double rate = o.bytes <= cur.bytes ? std::numeric_limits<double>::infinity()
                                                 : (cur.cost - o.cost) / static_cast<double>(o.bytes - cur.bytes);
        if (best_t == SIZE_MAX || rate > best_rate) {
          best_t = t;
          best_k = k;
          best_rate = rate;
        }
      }
    }
    if (best_t == SIZE_MAX) return;
    s.set(best_t, best_k);
  }
}

// Step 3: exact DP over `unit`-byte units of the bytes above each item's smallest option.
// Sizes round up, so every DP answer fits the budget.
std::vector<size_t> dp_solve(std::span<const AllocItem> items, uint64_t capacity, uint64_t unit,
                             const std::vector<size_t>& min_opt) {
  const size_t n = items.size();
  const uint64_t cap = capacity / unit;
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> f(cap + 1, 0.0), g(cap + 1);
  std::vector<uint8_t> pick(n * (cap + 1));
  for (size_t t = 0; t < n; ++t) {
    const AllocItem& it = items[t];
    const uint64_t base = it.options[min_opt[t]].bytes;
    std::fill(g.begin(), g.end(), inf);
    for (size_t k = 0; k < it.options.size(); ++k) {
      const uint64_t w = (it.options[k].bytes - base + unit - 1) / unit;
      if (w > cap) continue;
      const double c = it.options[k].cost;
      uint8_t* p = &pick[t * (cap + 1)];
      for (uint64_t x = w; x <= cap; ++x) {
        const double v = f[x - w] + c;
        if (v < g[x]) {
          g[x] = v;
          p[x] = static_cast<uint8_t>(k);
        }
      }
    }
    f.swap(g);
  }
  std::vector<size_t> choice(n);
  uint64_t x = cap;
  for (size_t t = n; t-- > 0;) {
    const size_t k = pick[t * (cap + 1) + x];
    choice[t] = k;
    const uint64_t w = (items[t].options[k].bytes - items[t].options[min_opt[t]].bytes + unit - 1) / unit;
    x -= w;
  }
  return choice;
}

}  // namespace

std::vector<GgmlType> candidate_types(const TensorShape& t, const CandidateOptions& o) {
  std::vector<GgmlType> out;
  if (why_not_quantized(t, /*quantize_output=*/true)) return out;
  for (GgmlType type : kCandidateLadder) {
    if (type == G::F16 && !o.include_f16) continue;
    const QTypeInfo& q = qtype(type);
    if (!q.can_quantize() || !q.can_dequantize()) continue;
    if (t.row_length() % q.geo->block_elems != 0) continue;  // no fallbacks: the type as is
    if (!o.has_imatrix && (q.geo->needs_imatrix || mixture::type_requires_imatrix(type, FileType::kQ4_K_M))) continue;
    out.push_back(type);
  }
  return out;
}

AllocResult allocate(std::span<const AllocItem> items, uint64_t budget, const AllocLimits& limits) {
  const size_t n = items.size();
  State s{items, std::vector<size_t>(n), 0, 0};
  std::vector<std::vector<size_t>> hulls(n);
  uint64_t min_total = 0;
  for (size_t t = 0; t < n; ++t) {
    assert(!items[t].options.empty() && items[t].options.size() <= 255);
    hulls[t] = lower_hull(items[t]);
    s.choice[t] = hulls[t].front();  // the smallest option (the cheapest among equal sizes)
    min_total += items[t].options[s.choice[t]].bytes;
  }
  s.recompute();
  if (min_total > budget)
    throw UsageError("the target is too small: the smallest types allowed give " + std::to_string(min_total) +
                     " bytes of tensors, over the budget of " + std::to_string(budget));

  // 1. Lagrangian: hull segments by decreasing savings per byte.
  struct Segment {
    double rate;
    size_t t, h;
  };
  std::vector<Segment> segs;
  for (size_t t = 0; t < n; ++t)
    for (size_t h = 0; h + 1 < hulls[t].size(); ++h) {
      const AllocOption &a = items[t].options[hulls[t][h]], &b = items[t].options[hulls[t][h + 1]];
      segs.push_back({(a.cost - b.cost) / static_cast<double>(b.bytes - a.bytes), t, h});
    }
  std::stable_sort(segs.begin(), segs.end(), [](const Segment& a, const Segment& b) {
    if (a.rate != b.rate) return a.rate > b.rate;
    return a.t != b.t ? a.t < b.t : a.h < b.h;
  });
  std::vector<size_t> pos(n, 0);  // hull position per item
  AllocResult r;
  bool blocked = false;
  for (const Segment& g : segs) {
    if (pos[g.t] != g.h) continue;  // an earlier segment of this item did not fit
    const size_t from = hulls[g.t][g.h], to = hulls[g.t][g.h + 1];
    const uint64_t extra = items[g.t].options[to].bytes - items[g.t].options[from].bytes;
    if (s.bytes + extra > budget) {
      if (!blocked) {
        // The Lagrangian solution for λ = this rate; its dual value bounds every solution.
        blocked = true;
        r.stats.lambda = g.rate;
        r.stats.lagrangian_cost = s.cost;
        r.stats.lower_bound = s.cost - g.rate * static_cast<double>(budget - s.bytes);
      }
      continue;  // keep going: later (smaller) segments may still fit (greedy continuation)
    }
    s.set(g.t, to);
    ++pos[g.t];
  }
  if (!blocked) {  // everything fits: the all-best solution is optimal
    r.stats.lagrangian_cost = s.cost;
    r.stats.lower_bound = s.cost;
  }
  // 2. Greedy fill of the slack, with any option.
  greedy_fill(s, budget);

  // 3. Knapsack repair by dynamic programming, when the Lagrangian left a gap.
  if (blocked && s.cost > r.stats.lower_bound) {
    const uint64_t capacity = budget - min_total;
    // Units per row of the table: at most max_dp_cells / n cells per item, and at most
    // kMaxDpUnits (two rows of doubles, 64 MiB) whatever the item count.
    constexpr uint64_t kMaxDpUnits = 1ull << 22;
    const uint64_t max_units = std::clamp<uint64_t>(limits.max_dp_cells / std::max<size_t>(n, 1), 1, kMaxDpUnits);
    const uint64_t unit = std::max<uint64_t>(1, (capacity + max_units) / max_units);  // ceil((capacity + 1) / max_units)
    std::vector<size_t> min_opt(n);
    for (size_t t = 0; t < n; ++t) min_opt[t] = hulls[t].front();
    State d{items, dp_solve(items, capacity, unit, min_opt), 0, 0};
    d.recompute();
    assert(d.bytes <= budget);
    greedy_fill(d, budget);
    r.stats.dp_unit = unit;
    if (d.cost < s.cost) {
      s = std::move(d);
      r.stats.dp_won = true;
    }
  }
  r.choice = s.choice;
  r.bytes = s.bytes;
  r.cost = s.cost;
  return r;
}

AllocResult allocate_brute_force(std::span<const AllocItem> items, uint64_t budget) {
  const size_t n = items.size();
  double combos = 1;
  for (const auto& it : items) combos *= static_cast<double>(it.options.size());
  assert(combos < 1e7);
  std::vector<size_t> cur(n, 0);
  AllocResult best;
  bool found = false;
  for (;;) {
    uint64_t b = 0;
    double c = 0;
    for (size_t t = 0; t < n; ++t) {
      b += items[t].options[cur[t]].bytes;
      c += items[t].options[cur[t]].cost;
    }
    if (b <= budget && (!found || c < best.cost)) {
      found = true;
      best.choice = cur;
      best.bytes = b;
      best.cost = c;
    }
    size_t t = 0;
    while (t < n && ++cur[t] == items[t].options.size()) cur[t++] = 0;
    if (t == n) break;
  }
  if (!found) throw UsageError("no allocation fits the budget");
  return best;
}

}  // namespace smolq
