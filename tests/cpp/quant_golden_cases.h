// Shared golden-vector test cases for a family of block formats. Case names carry the suite
// name: doctest keeps one case per (file, line, name), so without it the second family's
// cases would silently not register. A test file defines the
// family and includes this header once:
//
//   #define SMOLQ_QUANT_SUITE "test_quants_k"
//   namespace { const char* const kTypes[] = {"Q2_K", ...}; }
//   #include "quant_golden_cases.h"
//
// Cases: exact golden decoding, quantization error against ggml's golden figures (whole
// matrix and per row group, plain and imatrix), the imatrix's effect, round trips on
// structured rows, fast == ref, and determinism.
#pragma once
#ifndef SMOLQ_QUANT_SUITE
#error "define SMOLQ_QUANT_SUITE and kTypes before including quant_golden_cases.h"
#endif
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "golden_support.h"
#include "quantize/registry.h"

using namespace smolq;
using namespace smolq::test;

namespace {

const char* const kGroupNames = "abcdefgh";
constexpr int kTinyGroup = 5;  // (f): 1e-6 values, at the f16 noise floor

std::span<const float> imat_for(bool imat) {
  return imat ? std::span<const float>(Golden::get().imatrix()) : std::span<const float>();
}

// Quantize then dequantize rows of `ncols` through the registry.
std::vector<float> round_trip(const QTypeInfo& q, std::span<const float> x, int64_t ncols,
                              std::span<const float> imat = {}, std::vector<std::byte>* bytes_out = nullptr) {
  std::vector<std::byte> bytes(*row_bytes(q.id(), ncols) * (x.size() / ncols));
  quantize_rows(q.id(), x, bytes, ncols, imat);
  std::vector<float> y(x.size());
  dequantize_rows(q.id(), bytes, y);
  if (bytes_out) *bytes_out = std::move(bytes);
  return y;
}

double rel_rmse(std::span<const float> x, std::span<const float> y) {
  double se = 0, s2 = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    se += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
    s2 += double(x[i]) * x[i];
  }
  return s2 > 0 ? std::sqrt(se / s2) : std::sqrt(se / x.size());
}

// Tolerances of the "no worse than ggml" comparison (ratios ours / ggml):
//  - whole matrix, rmse and wrmse, both variants: at most 1% worse;
//  - per row group: 2.5% (our search minimises the weighted error; the imatrix variant trades
//    a little unweighted rmse for it, exactly as ggml's does, and per-group figures of 8 rows
//    move by about that much with any change of search);
//  - noise-floor groups (f: 1e-6 values, or groups where ggml's error is ~0): 5%;
//  - plain-variant wrmse per group: 20%. A plain quantizer never sees the importance vector,
//    and in these data 8 of 512 columns carry 35% of the importance; on the identical rows of
//    groups d and h, and in blocks with one heavy-tail value, which of those 8 elements lands
//    near a level is luck. We check it loosely and report the numbers (MESSAGE table).
//  - plain-variant wrmse of the whole matrix: 10% (it is dominated by the ramp rows, see above).
constexpr double kWholeSlack = 1.01, kGroupSlack = 1.025, kNoiseSlack = 1.05, kPlainWeightedSlack = 1.20;
constexpr double kPlainWeightedWholeSlack = 1.10;

bool no_worse(double ours, double ggml, int group, bool plain_weighted) {
  double slack = (group == kTinyGroup || ggml < 1e-7) ? kNoiseSlack : kGroupSlack;
  if (plain_weighted) slack = std::max(slack, kPlainWeightedSlack);
  return ours <= ggml * slack + 1e-9;
}

}  // namespace

TEST_SUITE(SMOLQ_QUANT_SUITE) {
  // ggml's own bytes through our decoder must give ggml's own floats, bit for bit: same
  // operations in the same order (no FMA, no reordering of the scale products).
  TEST_CASE(SMOLQ_QUANT_SUITE ": golden q.* tensors decode bit-exactly to ggml's dq.*") {
    const auto& g = Golden::get();
    for (const char* name : kTypes)
      for (const char* var : {"plain", "imat"}) {
        const std::string tname = name, vname = var;
        CAPTURE(tname);
        CAPTURE(vname);
        const QTypeInfo& q = *find_qtype(name);
        REQUIRE(q.can_dequantize());
        const std::string suffix = std::string(name) + "." + var;
        const auto bytes = g.bytes("q." + suffix);
        const auto want = g.floats("dq." + suffix);
        std::vector<float> got(want.size());
        dequantize_rows(q.id(), bytes, got);
        CHECK(std::memcmp(got.data(), want.data(), want.size() * 4) == 0);
      }
  }

  // Our encoder on the golden input against ggml's error figures (tolerances above). The
  // MESSAGE table (run with -s) shows ours/ggml for every metric and group.
  TEST_CASE(SMOLQ_QUANT_SUITE ": quantization error is no worse than ggml's, whole matrix and per row group") {
    const auto& g = Golden::get();
    std::ostringstream table;
    table << "\n type  var   metric  whole(ours/ggml)      a          b          c          d          e          f          g          h   (ours/ggml ratio)\n";
    for (const char* name : kTypes)
      for (bool imat : {false, true}) {
        const std::string var = imat ? "imat" : "plain", tname = name;
        CAPTURE(tname);
        CAPTURE(var);
        const QTypeInfo& q = *find_qtype(name);
        const GoldenStats ours = measure(round_trip(q, g.input(), Golden::kCols, imat_for(imat)));
        const GoldenStats ref = g.stats(std::string("q.") + name + "." + var);
        for (int metric = 0; metric < 2; ++metric) {
          const double o = metric ? ours.wrmse : ours.rmse, r = metric ? ref.wrmse : ref.rmse;
          const auto& og = metric ? ours.wrmse_by_group : ours.rmse_by_group;
          const auto& rg = metric ? ref.wrmse_by_group : ref.rmse_by_group;
          char line[512];
          int n = std::snprintf(line, sizeof line, " %-5s %-5s %-6s %9.3e/%9.3e", name, var.c_str(), metric ? "wrmse" : "rmse", o, r);
          CHECK_MESSAGE(o <= r * (metric && !imat ? kPlainWeightedWholeSlack : kWholeSlack) + 1e-9,
                        (tname + " " + var + (metric ? " wrmse " : " rmse ") + std::to_string(o) + " > ggml " + std::to_string(r)));
          for (int grp = 0; grp < 8; ++grp) {
            n += std::snprintf(line + n, sizeof line - n, " %10.3f", rg[grp] > 0 ? og[grp] / rg[grp] : (og[grp] > 0 ? 99.0 : 1.0));
            CHECK_MESSAGE(no_worse(og[grp], rg[grp], grp, metric && !imat),
                          (tname + " " + var + (metric ? " wrmse" : " rmse") + " group " + kGroupNames[grp] + ": " +
                           std::to_string(og[grp]) + " > ggml " + std::to_string(rg[grp])));
          }
          table << line << "\n";
        }
      }
    MESSAGE(table.str());
  }

  // The importance vector must buy weighted accuracy on the random groups (ramp and constant
  // rows can go either way, see the golden README).
  TEST_CASE(SMOLQ_QUANT_SUITE ": the imatrix lowers weighted error on groups a, b, c, e, g") {
    const auto& g = Golden::get();
    for (const char* name : kTypes) {
      const std::string tname = name;
      CAPTURE(tname);
      const QTypeInfo& q = *find_qtype(name);
      const GoldenStats plain = measure(round_trip(q, g.input(), Golden::kCols));
      const GoldenStats imat = measure(round_trip(q, g.input(), Golden::kCols, imat_for(true)));
      for (int grp : {0, 1, 2, 4, 6}) {
        const std::string group(1, kGroupNames[grp]);
        CAPTURE(group);
        CHECK(imat.wrmse_by_group[grp] < plain.wrmse_by_group[grp]);
      }
    }
  }

  // Structured rows through the registry: zeros stay exact zeros, a constant row is (nearly)
  // exact, ramp / gaussian / one-outlier rows stay within the registry's max_rel_rmse, and the
  // outlier itself survives.
  TEST_CASE(SMOLQ_QUANT_SUITE ": round trips of structured rows") {
    constexpr int64_t kCols = 512;
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> gauss(4 * kCols), ramp(kCols), outlier(kCols), constant(kCols, -0.37f), zeros(2 * kCols, 0.0f);
    for (auto& v : gauss) v = 0.05f * normal(rng);
    for (int64_t i = 0; i < kCols; ++i) ramp[i] = -2.0f + 4.0f * i / (kCols - 1);
    for (int64_t i = 0; i < kCols; ++i) outlier[i] = 0.01f * normal(rng);
    outlier[100] = 3.0f;
    for (const char* name : kTypes) {
      const std::string tname = name;
      CAPTURE(tname);
      const QTypeInfo& q = *find_qtype(name);
      for (float v : round_trip(q, zeros, kCols)) CHECK(v == 0.0f);
      CHECK(rel_rmse(gauss, round_trip(q, gauss, kCols)) <= q.max_rel_rmse);
      CHECK(rel_rmse(ramp, round_trip(q, ramp, kCols)) <= q.max_rel_rmse);
      CHECK(rel_rmse(constant, round_trip(q, constant, kCols)) <= 1e-3);
      // One outlier: it must survive (within 5%), and the rest of the row stays bounded.
      const auto y = round_trip(q, outlier, kCols);
      CHECK(std::fabs(y[100] - 3.0f) <= 0.05f * 3.0f);
      CHECK(rel_rmse(outlier, y) <= q.max_rel_rmse);
    }
  }

  // The registry's fast quantizer (AVX2-scored search where available) must reproduce the
  // scalar reference byte for byte, with and without an imatrix, on golden and heavy-tailed rows.
  TEST_CASE(SMOLQ_QUANT_SUITE ": the fast quantizer writes the reference quantizer's bytes") {
    const auto& g = Golden::get();
    std::mt19937 rng(11);
    std::student_t_distribution<float> heavy(3.0f);
    std::vector<float> x(8 * 1024);
    for (auto& v : x) v = 0.02f * heavy(rng);
    for (const char* name : kTypes)
      for (bool imat : {false, true}) {
        const std::string tname = name;
        CAPTURE(tname);
        CAPTURE(imat);
        const QTypeInfo& q = *find_qtype(name);
        REQUIRE(static_cast<bool>(q.quantize_ref));
        for (int set = 0; set < 2; ++set) {
          const std::span<const float> src = set ? std::span<const float>(x) : std::span<const float>(g.input());
          const int64_t ncols = set ? 1024 : Golden::kCols;
          std::vector<float> im(ncols, 1.0f);
          if (imat) std::copy(g.imatrix().begin(), g.imatrix().end(), im.begin());
          std::vector<std::byte> a(*row_bytes(q.id(), ncols) * (src.size() / ncols)), b(a.size());
          q.quantize_ref(src, a, ncols, imat ? std::span<const float>(im) : std::span<const float>());
          q.quantize(src, b, ncols, imat ? std::span<const float>(im) : std::span<const float>());
          CHECK(a == b);
        }
      }
  }

  // Degenerate inputs: importance zero on most columns (all weights of a group zero), huge
  // values near the f16 range and values far below it. Output must stay finite, huge rows
  // keep their relative accuracy, and sub-f16 rows decode to (near) zero.
  TEST_CASE(SMOLQ_QUANT_SUITE ": degenerate importance and extreme magnitudes") {
    constexpr int64_t kCols = 512;
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(2 * kCols), huge(kCols), tiny(kCols), sparse_imat(kCols, 0.0f);
    for (auto& v : x) v = 0.03f * normal(rng);
    for (auto& v : huge) v = 2000.0f * normal(rng);
    for (auto& v : tiny) v = 1e-30f * normal(rng);
    for (int64_t i = 0; i < kCols; i += 97) sparse_imat[i] = 3.0f;
    for (const char* name : kTypes) {
      const std::string tname = name;
      CAPTURE(tname);
      const QTypeInfo& q = *find_qtype(name);
      for (float v : round_trip(q, x, kCols, sparse_imat)) CHECK(std::isfinite(v));
      CHECK(rel_rmse(huge, round_trip(q, huge, kCols)) <= q.max_rel_rmse);
      for (float v : round_trip(q, tiny, kCols)) CHECK(std::fabs(v) < 1e-20f);
    }
  }

  // Same input, same bytes (no hidden state, no dependence on earlier calls).
  TEST_CASE(SMOLQ_QUANT_SUITE ": quantization is deterministic") {
    const auto& g = Golden::get();
    for (const char* name : kTypes) {
      const std::string tname = name;
      CAPTURE(tname);
      const QTypeInfo& q = *find_qtype(name);
      std::vector<std::byte> a, b;
      round_trip(q, g.input(), Golden::kCols, imat_for(true), &a);
      round_trip(q, g.input(), Golden::kCols, imat_for(true), &b);
      CHECK(a == b);
    }
  }
}
