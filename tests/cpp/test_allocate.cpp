// The mixed-precision allocator (quantize/allocate.h): candidate types per tensor shape, and
// the knapsack solver against exhaustive search on small instances.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "formats/error.h"
#include "quantize/allocate.h"
#include "quantize/registry.h"

using namespace smolq;

namespace {

// A random instance: `n` items of `k` options with increasing bytes and mostly decreasing
// (sometimes non-convex, sometimes dominated) costs, as real profiles look.
std::vector<AllocItem> random_items(std::mt19937& rng, size_t n, size_t k) {
  std::uniform_int_distribution<int> step(1, 40), jitter(0, 9);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<AllocItem> items(n);
  for (size_t t = 0; t < n; ++t) {
    items[t].name = "t" + std::to_string(t);
    uint64_t bytes = 10 + jitter(rng);
    double cost = 1.0 + 4.0 * u(rng);
    for (size_t j = 0; j < k; ++j) {
      items[t].options.push_back({GgmlType::Q4_0, bytes, cost});
      bytes += static_cast<uint64_t>(step(rng));
      // Usually cheaper with more bytes; one time in five a worse (dominated) option.
      cost = u(rng) < 0.2 ? cost * (1.0 + u(rng)) : cost * (0.2 + 0.7 * u(rng));
    }
  }
  return items;
}

uint64_t min_bytes(const std::vector<AllocItem>& items) {
  uint64_t b = 0;
  for (const auto& it : items) {
    uint64_t m = UINT64_MAX;
    for (const auto& o : it.options) m = std::min(m, o.bytes);
    b += m;
  }
  return b;
}

}  // namespace

TEST_SUITE("test_allocate") {
  TEST_CASE("candidates respect the row width, the imatrix rule and the ladder order") {
    // SmolLM-135M: rows of 576 take only 32-element formats.
    const TensorShape q = make_tensor("blk.0.attn_q.weight", {576, 576}, GgmlType::BF16);
    const std::vector<GgmlType> c576 = candidate_types(q, {});
    const std::vector<GgmlType> want576{GgmlType::Q4_0, GgmlType::IQ4_NL, GgmlType::Q4_1, GgmlType::Q5_0,
                                        GgmlType::Q5_1, GgmlType::Q8_0,   GgmlType::F16};
    CHECK(c576 == want576);
    // ffn_down of 1536 takes K and IQ types; the imatrix-only ones only with an imatrix.
    const TensorShape d = make_tensor("blk.0.ffn_down.weight", {1536, 576}, GgmlType::BF16);
    const std::vector<GgmlType> plain = candidate_types(d, {.has_imatrix = false});
    const std::vector<GgmlType> imat = candidate_types(d, {.has_imatrix = true});
    for (GgmlType t : {GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ2_S, GgmlType::IQ3_XXS}) {
      CHECK(std::find(plain.begin(), plain.end(), t) == plain.end());
      CHECK(std::find(imat.begin(), imat.end(), t) != imat.end());
    }
    for (GgmlType t : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS})
      CHECK(std::find(plain.begin(), plain.end(), t) != plain.end());
    for (size_t i = 1; i < imat.size(); ++i)
      CHECK(type_info(imat[i - 1]).bits_per_weight() <= type_info(imat[i]).bits_per_weight());
    CHECK(imat.front() == GgmlType::IQ2_XXS);
    CHECK(!candidate_types(d, {.has_imatrix = false, .include_f16 = false}).empty());
    CHECK(candidate_types(d, {.has_imatrix = false, .include_f16 = false}).back() == GgmlType::Q8_0);
    // Norms and other 1-D tensors are never quantized.
    CHECK(candidate_types(make_tensor("blk.0.attn_norm.weight", {576}), {}).empty());
    // The tied embedding is a candidate like any other weight.
    CHECK(!candidate_types(make_tensor("token_embd.weight", {576, 49152}, GgmlType::BF16), {}).empty());
  }

  TEST_CASE("the solver is optimal on small instances (exhaustive search)") {
    std::mt19937 rng(1234);
    for (int trial = 0; trial < 60; ++trial) {
      const size_t n = 2 + trial % 5, k = 2 + trial % 4;
      const auto items = random_items(rng, n, k);
      const uint64_t lo = min_bytes(items);
      for (uint64_t extra : {0ull, 7ull, 23ull, 60ull, 150ull, 1000ull}) {
        const uint64_t budget = lo + extra;
        const AllocResult a = allocate(items, budget);
        const AllocResult b = allocate_brute_force(items, budget);
        CAPTURE(trial);
        CAPTURE(budget);
        CHECK(a.bytes <= budget);
        CHECK(a.cost == doctest::Approx(b.cost).epsilon(1e-12));
        CHECK(a.stats.lower_bound <= a.cost + 1e-12);
        // The reported totals are those of the choice.
        uint64_t bytes = 0;
        double cost = 0;
        for (size_t t = 0; t < n; ++t) {
          bytes += items[t].options[a.choice[t]].bytes;
          cost += items[t].options[a.choice[t]].cost;
        }
        CHECK(bytes == a.bytes);
        CHECK(cost == doctest::Approx(a.cost));
      }
    }
  }

  TEST_CASE("a coarse dynamic programme still respects the budget and is near optimal") {
    std::mt19937 rng(99);
    for (int trial = 0; trial < 20; ++trial) {
      const auto items = random_items(rng, 6, 5);
      const uint64_t budget = min_bytes(items) + 40 + static_cast<uint64_t>(trial) * 7;
      const AllocResult a = allocate(items, budget, AllocLimits{.max_dp_cells = 24});  // 4 units per item
      const AllocResult b = allocate_brute_force(items, budget);
      CHECK(a.bytes <= budget);
      CHECK(a.cost >= b.cost - 1e-12);
      CHECK(a.stats.lower_bound <= b.cost + 1e-12);
    }
  }

  TEST_CASE("ties are broken the same way every time: lowest tensor index first") {
    std::vector<AllocItem> items(3);
    for (auto& it : items) it.options = {{GgmlType::Q4_0, 100, 2.0}, {GgmlType::Q8_0, 200, 1.0}};
    // Room for exactly one upgrade among three identical tensors.
    const AllocResult a = allocate(items, 400);
    CHECK(a.choice == std::vector<size_t>{1, 0, 0});
    CHECK(a.bytes == 400);
    for (int i = 0; i < 3; ++i) CHECK(allocate(items, 400).choice == a.choice);
    // Equal-size options: the cheaper one, whatever its index.
    std::vector<AllocItem> eq(1);
    eq[0].options = {{GgmlType::Q4_0, 100, 2.0}, {GgmlType::IQ4_NL, 100, 1.5}};
    CHECK(allocate(eq, 100).choice == std::vector<size_t>{1});
  }

  TEST_CASE("a budget below the smallest allocation is a usage error; a huge one takes the best options") {
    std::vector<AllocItem> items(2);
    for (auto& it : items) it.options = {{GgmlType::Q4_0, 100, 2.0}, {GgmlType::Q8_0, 200, 1.0}, {GgmlType::F16, 400, 0.0}};
    CHECK_THROWS_AS(allocate(items, 199), UsageError);
    const AllocResult a = allocate(items, 1u << 20);
    CHECK(a.choice == std::vector<size_t>{2, 2});
    CHECK(a.cost == 0.0);
    CHECK(a.stats.lower_bound == 0.0);
  }

  TEST_CASE("realistic size: 211 tensors, budgets across the range, always within budget") {
    std::mt19937 rng(7);
    std::vector<AllocItem> items;
    for (int t = 0; t < 211; ++t) {
      AllocItem it;
      const uint64_t elems = t == 0 ? 28311552ull : (t % 7 == 6 ? 884736ull : 331776ull);
      const double gain = std::uniform_real_distribution<double>(0.1, 10.0)(rng);
      for (GgmlType ty : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0}) {
        const double bpw = type_info(ty).bits_per_weight();
        it.options.push_back({ty, static_cast<uint64_t>(elems * bpw / 8), gain * elems * std::exp2(-2 * bpw)});
      }
      items.push_back(std::move(it));
    }
    const uint64_t lo = min_bytes(items);
    double prev = 1e300;
    for (double f : {1.0, 1.05, 1.2, 1.5, 1.8}) {
      const uint64_t budget = static_cast<uint64_t>(lo * f);
      const AllocResult a = allocate(items, budget);
      CHECK(a.bytes <= budget);
      CHECK(a.cost <= prev);  // more bytes never hurt
      CHECK(a.stats.lower_bound <= a.cost * (1 + 1e-12));
      // Near the Lagrangian bound (the gap is at most one tensor's step).
      CHECK(a.cost <= a.stats.lower_bound * 1.05 + 1e-9);
      prev = a.cost;
    }
  }
}
