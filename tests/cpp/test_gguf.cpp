// GGUF v3 reader/writer: every metadata value type (nested arrays too), alignment, layout
// planning = bytes written, strict validation of hostile headers.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <filesystem>
#include <fstream>

#include "formats/error.h"
#include "formats/gguf.h"
#include "formats/half.h"

using namespace smolq;
namespace fs = std::filesystem;

namespace {

fs::path tmp_dir() {
  fs::path d = fs::temp_directory_path() / ("smolq_test_gguf_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

GgufMetadata all_types_metadata() {
  GgufMetadata m;
  m.set("general.architecture", GgufValue::str("llama"));
  m.set("t.u8", GgufValue::u8(250));
  m.set("t.i8", GgufValue::i8(-100));
  m.set("t.u16", GgufValue::u16(65000));
  m.set("t.i16", GgufValue::i16(-32000));
  m.set("t.u32", GgufValue::u32(4000000000u));
  m.set("t.i32", GgufValue::i32(-2000000000));
  m.set("t.f32", GgufValue::f32(3.25f));
  m.set("t.bool", GgufValue::boolean(true));
  m.set("t.string", GgufValue::str("héllo\nworld"));
  m.set("t.u64", GgufValue::u64(1ull << 60));
  m.set("t.i64", GgufValue::i64(-(1ll << 60)));
  m.set("t.f64", GgufValue::f64(-1e300));
  m.set("t.array.i32", GgufValue::i32_array({1, -2, 3}));
  m.set("t.array.str", GgufValue::string_array({"a", "", "ccc"}));
  m.set("t.array.nested", GgufValue::array(GgufType::ARRAY, {GgufValue::i32_array({1, 2}), GgufValue::i32_array({})}));
  m.set("t.array.empty", GgufValue::array(GgufType::FLOAT32, {}));
  return m;
}

void write_bytes(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST_SUITE("test_gguf") {
  TEST_CASE("round trip of all 13 value types, nested arrays and tensors; layout = bytes written") {
    for (uint32_t alignment : {32u, 64u}) {
      CAPTURE(alignment);
      const fs::path p = tmp_dir() / ("all-" + std::to_string(alignment) + ".gguf");
      std::vector<float> a(3 * 64), b(5);
      for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f - 7;
      for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i);
      uint64_t size;
      {
        GgufWriter w(p.string(), alignment);
        w.metadata() = all_types_metadata();
        w.add_tensor("a", {64, 3}, GgmlType::F32);
        w.add_tensor("b", {5}, GgmlType::F32);
        w.begin_data();
        w.write_tensor("a", std::as_bytes(std::span(a)));
        w.write_tensor("b", std::as_bytes(std::span(b)));
        size = w.commit();
      }
      CHECK(fs::file_size(p) == size);
      auto r = GgufReader::open(p.string());
      CHECK(r->version() == 3);
      CHECK(r->alignment() == alignment);
      CHECK(r->data_offset() % alignment == 0);
      const auto& m = r->metadata();
      const auto want = all_types_metadata();
      for (const auto& [k, v] : want.entries()) {
        CAPTURE(k);
        const GgufValue* got = m.find(k);
        REQUIRE(got);
        CHECK(got->type == v.type);
        CHECK(got->to_display(100) == v.to_display(100));
      }
      CHECK(m.find("t.u64")->as_u64() == (1ull << 60));
      CHECK(m.find("t.i64")->as_i64() == -(1ll << 60));
      CHECK(m.find("t.array.nested")->as_array().items[0].as_array().items[1].as_i64() == 2);
      REQUIRE(r->tensors().size() == 2);
      for (const auto& t : r->tensors()) CHECK(t.offset % alignment == 0);
      ByteView av = r->tensor_data(r->tensor("a"));
      CHECK(std::memcmp(av.data(), a.data(), a.size() * 4) == 0);
      CHECK(r->tensor("a").shape == std::vector<uint64_t>{64, 3});
      // Same metadata and tensors planned without writing: same size.
      GgufMetadata pm = all_types_metadata();
      if (alignment != 32) pm.set("general.alignment", GgufValue::u32(alignment));
      auto L = plan_gguf_layout(pm, {{"a", {64, 3}, GgmlType::F32}, {"b", {5}, GgmlType::F32}}, alignment);
      CHECK(L.file_size == size);
    }
  }

  TEST_CASE("an uncommitted writer leaves nothing behind") {
    const fs::path d = tmp_dir() / "abandon";
    fs::create_directories(d);
    {
      GgufWriter w((d / "x.gguf").string());
      w.add_tensor("a", {4}, GgmlType::F32);
      w.begin_data();
    }
    CHECK(fs::is_empty(d));
  }

  TEST_CASE("tensors placed out of order give the bytes of an in-order write; the output stays atomic") {
    const std::vector<std::pair<std::string, uint64_t>> shapes = {{"a", 5}, {"b", 64}, {"c", 3}, {"d", 7}};
    std::vector<std::vector<float>> data;
    for (size_t t = 0; t < shapes.size(); ++t) {
      data.emplace_back(shapes[t].second);
      for (size_t i = 0; i < data.back().size(); ++i) data.back()[i] = static_cast<float>(t * 100 + i) - 3.5f;
    }
    const auto bytes = [&](size_t t) { return std::as_bytes(std::span(data[t])); };
    for (uint32_t alignment : {32u, 64u}) {
      CAPTURE(alignment);
      const fs::path d = tmp_dir() / ("placed-" + std::to_string(alignment));
      fs::create_directories(d);
      auto writer = [&](const fs::path& p) {
        auto w = std::make_unique<GgufWriter>(p.string(), alignment);
        w->metadata().set("general.architecture", GgufValue::str("llama"));
        for (const auto& [n, len] : shapes) w->add_tensor(n, {len}, GgmlType::F32);
        w->begin_data();
        return w;
      };
      {
        auto w = writer(d / "in-order.gguf");
        for (size_t t = 0; t < shapes.size(); ++t) w->write_tensor(shapes[t].first, bytes(t));
        w->commit();
      }
      // The last tensor and one in the middle first, the others in order around them; then with
      // only the first and last placed (the sequential writer skips at the start and at the end).
      for (const std::vector<size_t>& first : {std::vector<size_t>{3, 1}, std::vector<size_t>{0, 3}}) {
        const fs::path p = d / "placed.gguf";
        auto w = writer(p);
        REQUIRE(w->can_place());
        for (size_t t : first) w->place_tensor(shapes[t].first, bytes(t));
        CHECK(w->placed(first[0]));
        CHECK_FALSE(w->placed(2));
        CHECK_THROWS_AS(w->place_tensor(shapes[first[0]].first, bytes(first[0])), Error);  // twice
        CHECK_THROWS_AS(w->place_tensor("b", bytes(0)), Error);                           // wrong size
        for (size_t t = 0; t < shapes.size(); ++t)
          if (std::find(first.begin(), first.end(), t) == first.end()) w->write_tensor(shapes[t].first, bytes(t));
        w->commit();
        CHECK(slurp(p) == slurp(d / "in-order.gguf"));
        fs::remove(p);
      }
      {
        auto w = writer(d / "abandoned.gguf");  // placed, never committed: nothing remains
        w->place_tensor("d", bytes(3));
        w->write_tensor("a", bytes(0));
        CHECK_THROWS_AS(w->place_tensor("a", bytes(0)), Error);  // already written in order
      }
      CHECK_FALSE(fs::exists(d / "abandoned.gguf"));
      size_t files = 0;
      for ([[maybe_unused]] const auto& e : fs::directory_iterator(d)) ++files;
      CHECK(files == 1);  // no temporary file either
    }
  }

  TEST_CASE("hostile headers are FormatErrors with offsets, before any allocation") {
    // Build a valid small file, then corrupt fields one at a time.
    const fs::path good = tmp_dir() / "good.gguf";
    {
      GgufWriter w(good.string());
      w.metadata().set("general.architecture", GgufValue::str("llama"));
      w.metadata().set("k", GgufValue::i32_array({1, 2, 3}));
      w.add_tensor("t", {8}, GgmlType::F32);
      w.begin_data();
      std::vector<float> z(8, 1.0f);
      w.write_tensor("t", std::as_bytes(std::span(z)));
      w.commit();
    }
    const std::string base = slurp(good);
    auto expect_error = [&](const std::string& bytes, const char* words) {
      const fs::path p = tmp_dir() / "bad.gguf";
      write_bytes(p, bytes);
      try {
        GgufReader::open(p.string());
        FAIL("no error for: " << words);
      } catch (const FormatError& e) {
        CHECK_MESSAGE(std::string(e.what()).find(words) != std::string::npos, e.what());
        CHECK(std::string(e.what()).find(p.string()) == 0);
      }
    };
    auto with_u64 = [&](size_t off, uint64_t v) {
      std::string s = base;
      std::memcpy(s.data() + off, &v, 8);
      return s;
    };
    expect_error("GGUX" + base.substr(4), "bad magic");
    expect_error(base.substr(0, 20), "past end");
    expect_error(with_u64(8, 1ull << 40), "tensor count");       // 2^40 tensors
    expect_error(with_u64(16, 1ull << 50), "metadata count");    // 2^50 keys
    // First key string length -> 1 GiB.
    expect_error(with_u64(24, 1ull << 30), "limit");
    // The array length of key "k" -> 10^12 entries.
    const size_t k_at = base.find(std::string("\x01\x00\x00\x00\x00\x00\x00\x00k", 9));
    REQUIRE(k_at != std::string::npos);
    const size_t count_at = k_at + 9 + 4 + 4;  // key, value type, element type
    expect_error(with_u64(count_at, 1000000000000ull), "array of 1000000000000 items");
    // Tensor dims -> 2^60 elements (and an overflowing product).
    const size_t t_at = base.find(std::string("\x01\x00\x00\x00\x00\x00\x00\x00t", 9));
    REQUIRE(t_at != std::string::npos);
    const size_t dim_at = t_at + 9 + 4;
    expect_error(with_u64(dim_at, 1ull << 61), "overflows");
    expect_error(with_u64(dim_at, 1ull << 40), "ends beyond end of file");
    // Tensor data offset past the file.
    const size_t off_at = dim_at + 8 + 4;
    expect_error(with_u64(off_at, 1ull << 20), "ends beyond end of file");
    expect_error(with_u64(off_at, 3), "not aligned");
  }
}
