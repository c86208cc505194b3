// Measured mixed precision around the solver: target parsing, exact budgets with GGUF padding
// (quantize/allocate_plan.h), and the profile file's round trip (mix/profile_io.h).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "formats/error.h"
#include "quantize/allocate_plan.h"
#include "mix/profile_io.h"

using namespace smolq;

namespace {

uint64_t align32(uint64_t v) { return (v + 31) / 32 * 32; }

// A small decoder's file: token_embd, a norm, and two 256-wide matrices with made-up costs
// that fall with bits per weight.
MixInput small_input() {
  MixInput in;
  in.data_offset = 4096;
  in.alignment = 32;
  in.tensors = {{"token_embd.weight", {256, 1000}, GgmlType::F16},
                {"blk.0.attn_norm.weight", {256}, GgmlType::F32},
                {"blk.0.attn_q.weight", {256, 256}, GgmlType::F16},
                {"blk.0.ffn_down.weight", {768, 256}, GgmlType::F16}};
  const double gains[] = {3.0, 1.0, 2.0};
  const char* names[] = {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_down.weight"};
  for (int i = 0; i < 3; ++i) {
    MixCosts c;
    for (GgmlType t : {GgmlType::Q2_K, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q8_0, GgmlType::F16}) {
      c.types.push_back(t);
      c.cost.push_back(t == GgmlType::F16 ? 0.0 : gains[i] * std::exp2(-2.0 * type_info(t).bits_per_weight()));
    }
    in.costs[names[i]] = c;
  }
  return in;
}

}  // namespace

TEST_SUITE("test_allocate_plan") {
  TEST_CASE("target sizes and bits per weight parse with their units") {
    CHECK(parse_target_size("94371840").file_size == 94371840);
    CHECK(parse_target_size("90MiB").file_size == 90ull << 20);
    CHECK(parse_target_size("90M").file_size == 90ull << 20);
    CHECK(parse_target_size("94.4MB").file_size == 94400000);
    CHECK(parse_target_size("1.5GiB").file_size == 3ull << 29);
    CHECK(parse_target_size("512KiB").file_size == 512ull << 10);
    CHECK(parse_target_size("2mb").file_size == 2000000);
    CHECK(parse_target_size("90MiB").by_size);
    for (const char* bad : {"", "MiB", "-5M", "12 MiB", "3XB", "0"}) CHECK_THROWS_AS(parse_target_size(bad), UsageError);
    CHECK(parse_target_bpw("4.5").bpw == 4.5);
    CHECK(!parse_target_bpw("4.5").by_size);
    for (const char* bad : {"", "0.5", "40", "4.5x"}) CHECK_THROWS_AS(parse_target_bpw(bad), UsageError);
  }

  TEST_CASE("a size target counts header and padding exactly and is never exceeded") {
    const MixInput in = small_input();
    for (uint64_t size = 100000; size <= 700000; size += 7919) {
      MixPlan p;
      try {
        p = plan_mix(in, parse_target_size(std::to_string(size)));
      } catch (const UsageError&) {
        continue;  // below the smallest allocation
      }
      // The file is the header plus every tensor padded to 32 bytes (the writer's layout).
      uint64_t padded = 0;
      for (const auto& t : in.tensors) {
        const auto it = p.types.find(t.name);
        padded += align32(tensor_nbytes(it == p.types.end() ? t.type : it->second, t.shape, t.name));
      }
      CHECK(p.file_size == in.data_offset + padded);
      CHECK(p.file_size <= size);
      CHECK(p.types.size() == 3);
      CHECK(p.rows.size() == 3);
    }
    // Too small: a usage error that names the smallest possible file.
    try {
      plan_mix(in, parse_target_size("20000"));
      FAIL("expected a usage error");
    } catch (const UsageError& e) {
      CHECK(std::string(e.what()).find("the smallest file") != std::string::npos);
    }
  }

  TEST_CASE("a bits-per-weight target bounds tensor bytes over all elements, norms included") {
    const MixInput in = small_input();
    for (double bpw : {3.0, 4.0, 5.0, 6.5, 9.0, 16.5}) {
      const MixPlan p = plan_mix(in, parse_target_bpw(std::to_string(bpw)));
      CHECK(p.bits_per_weight() <= bpw);
      CHECK(p.elements == 256ull * 1000 + 256 + 256 * 256 + 768 * 256);
    }
    // More bits never predict more divergence.
    CHECK(plan_mix(in, parse_target_bpw("6")).predicted_kld <= plan_mix(in, parse_target_bpw("4")).predicted_kld);
  }

  TEST_CASE("the metadata specs are the same size whatever the numbers") {
    const MixTarget t = parse_target_size("90MiB");
    const auto a = mix_metadata_kv(t, "0123456789abcdef", "wiki.valid.raw, first 256 tokens", 0.0, 0.0);
    const auto b = mix_metadata_kv(t, "0123456789abcdef", "wiki.valid.raw, first 256 tokens", 0.01234, 5.4321);
    REQUIRE(a.size() == b.size());
    // Strings are identical; the numbers are f32 values (fixed size in GGUF).
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i].find("=float:") == std::string::npos) CHECK(a[i] == b[i]);
  }

  TEST_CASE("a profile survives the file round trip bit for bit; a broken one is a FormatError") {
    SensitivityProfile p;
    p.model_fp = 0x0123456789abcdefull;
    p.calib_fp = 42;
    p.settings_fp = profile_settings_fp(p.settings, false);
    p.model_desc = "a \"test\" model";
    p.calib_desc = "wiki.valid.raw, first 256 tokens";
    p.calib_positions = 256;
    p.groups = {{"token_embd", {0}, 0.0123}, {"attn_q L0-5", {1}, 1.0 / 3.0}};
    ProfileTensor e{"token_embd.weight", 1000, 256, {GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::F16},
                    {1.0 / 7.0, 2e-300, 0.0}, {0.0123, 1e-5, -1.0}, 0, 0, 0.1};
    ProfileTensor q{"blk.0.attn_q.weight", 256, 256, {GgmlType::Q2_K, GgmlType::Q4_K}, {3.14159, 1e-9}, {-1, -1}, 1, 1,
                    std::nextafter(1.0, 2.0)};
    p.tensors = {e, q};
    p.single_checks = {{"blk.0.attn_q.weight at Q2_K", 1e-4, 1.1e-4}};
    p.model_checks = {{"every tensor at its reference type", 0.3, 0.4}};
    p.log_correlation = 0.99;
    p.median_ratio = 1.1;
    const auto dir = std::filesystem::temp_directory_path() / "smolq_test_allocate_plan";
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "p.json").string();
    save_profile(path, p);
    const SensitivityProfile r = load_profile(path);
    CHECK(r.model_fp == p.model_fp);
    CHECK(r.settings_fp == p.settings_fp);
    CHECK(r.model_desc == p.model_desc);
    REQUIRE(r.tensors.size() == 2);
    for (size_t t = 0; t < 2; ++t) {
      CHECK(r.tensors[t].types == p.tensors[t].types);
      CHECK(r.tensors[t].ref == p.tensors[t].ref);
      CHECK(r.tensors[t].gain == p.tensors[t].gain);  // exact: 17 significant digits
      for (size_t k = 0; k < p.tensors[t].types.size(); ++k) {
        CHECK(r.tensors[t].error[k] == p.tensors[t].error[k]);
        CHECK(r.predict(t, k) == p.predict(t, k));
      }
    }
    CHECK(r.predict(0, 0) == 0.0123);  // measured directly
    CHECK(r.predict(0, 2) == 0.0);     // F16: gain x error
    CHECK(r.predict(1, 0) == q.gain * 3.14159);
    CHECK(r.groups[1].dkld == 1.0 / 3.0);
    CHECK(r.single_checks.size() == 1);
    CHECK(profile_to_json(r) == profile_to_json(p));

    // Damaged or foreign files.
    auto write = [&](const std::string& text) {
      std::ofstream(path, std::ios::binary) << text;
    };
    std::string good = profile_to_json(p);
    write(good.substr(0, good.size() / 2));
    CHECK_THROWS_AS(load_profile(path), FormatError);
    write("{\"format\": \"something-else\", \"version\": 1}");
    CHECK_THROWS_AS(load_profile(path), FormatError);
    std::string v2 = good;
    v2.replace(v2.find("\"version\": 1"), 12, "\"version\": 9");
    write(v2);
    CHECK_THROWS_AS(load_profile(path), FormatError);
    std::string badtype = good;
    badtype.replace(badtype.find("\"Q8_0\""), 6, "\"Q9_9\"");
    write(badtype);
    CHECK_THROWS_AS(load_profile(path), FormatError);
    std::filesystem::remove_all(dir);
  }
}
