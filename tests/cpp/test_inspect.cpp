// inspect: the tolerant GGUF scanner on a table of corrupt files (each must be reported, never
// thrown), reports for GGUF and HF folders, and the JSON writer.
#include <doctest/doctest.h>
#include <simdjson.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "inspect/gguf_scan.h"
#include "inspect/inspect_render.h"
#include "formats/json_writer.h"
#include "inspect/model_report.h"
#include "temp_dir.h"

using namespace smolq;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("smolq-test-inspect-") {}
};

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void write_all(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A small valid GGUF: two keys with equal-length names (so one can be renamed onto the
// other), an unknown key, and two tensors (F32 and Q8_0).
fs::path write_small_gguf(const fs::path& dir) {
  const fs::path p = dir / "small.gguf";
  GgufWriter w(p.string());
  w.metadata().set("general.architecture", GgufValue::str("llama"));
  w.metadata().set("general.name", GgufValue::str("tiny"));
  w.metadata().set("zz.keyaa", GgufValue::u32(7));
  w.metadata().set("zz.keybb", GgufValue::u32(8));
  w.metadata().set("tokenizer.ggml.tokens", GgufValue::string_array({"<s>", "a", "b"}));
  w.add_tensor("tensor_a.weight", {32, 2}, GgmlType::F32);
  w.add_tensor("tensor_b.weight", {64, 2}, GgmlType::Q8_0);
  w.begin_data();
  std::vector<std::byte> a(32 * 2 * 4, std::byte{0}), b(2 * 2 * 34, std::byte{0});
  w.write_tensor("tensor_a.weight", a);
  w.write_tensor("tensor_b.weight", b);
  w.commit();
  return p;
}

size_t find(const std::string& hay, const std::string& needle) {
  const size_t at = hay.find(needle);
  REQUIRE(at != std::string::npos);
  return at;
}
template <class T>
void put(std::string& s, size_t at, T v) {
  std::memcpy(&s[at], &v, sizeof v);
}

bool has_finding(const GgufScan& s, Severity sev, const std::string& fragment) {
  for (const auto& f : s.findings)
    if (f.severity == sev && f.message.find(fragment) != std::string::npos) return true;
  return false;
}

// Offset of the tensor-info fields that follow a tensor's name (n_dims, dims, type, offset).
size_t after_name(const std::string& bytes, const std::string& name) { return find(bytes, name) + name.size(); }

}  // namespace

TEST_SUITE("test_inspect") {
  TEST_CASE("a valid file scans clean and matches the strict reader") {
    TempDir tmp;
    const fs::path p = write_small_gguf(tmp.path);
    const GgufScan s = scan_gguf(p.string());
    auto strict = GgufReader::open(p.string());
    CHECK(s.header_complete);
    CHECK_FALSE(s.has_errors());
    CHECK(s.count(Severity::kWarning) == 0);
    CHECK(has_finding(s, Severity::kInfo, "unknown metadata key 'zz.keyaa'"));
    REQUIRE(s.tensors.size() == strict->tensors().size());
    for (size_t i = 0; i < s.tensors.size(); ++i) {
      CHECK(s.tensors[i].info.name == strict->tensors()[i].name);
      CHECK(s.tensors[i].info.n_bytes == strict->tensors()[i].n_bytes);
      CHECK(s.tensors[i].info.offset == strict->tensors()[i].offset);
      CHECK(s.tensors[i].in_file);
    }
    CHECK(s.data_offset == strict->data_offset());
    CHECK(s.metadata.size() == strict->metadata().size());
  }

  TEST_CASE("every truncation is reported, never thrown") {
    TempDir tmp;
    const std::string good = read_all(write_small_gguf(tmp.path));
    auto strict = GgufReader::open((tmp.path / "small.gguf").string());
    const auto& last = strict->tensors().back();
    const uint64_t data_end = strict->data_offset() + last.offset + last.n_bytes;
    const fs::path p = tmp.path / "cut.gguf";
    for (size_t n = 0; n < good.size(); n += (n < 200 ? 1 : 13)) {
      write_all(p, good.substr(0, n));
      GgufScan s;
      CHECK_NOTHROW(s = scan_gguf(p.string()));
      // Cutting only the alignment padding after the last tensor loses nothing.
      if (n < data_end) {
        CHECK_MESSAGE(s.has_errors(), "prefix of " << n << " bytes not reported");
      } else {
        CHECK_FALSE(s.has_errors());
      }
    }
  }

  TEST_CASE("a table of corruptions, each reported with the right message") {
    TempDir tmp;
    const std::string good = read_all(write_small_gguf(tmp.path));
    struct Case {
      const char* name;
      std::function<void(std::string&)> corrupt;
      const char* expect;  // fragment of an error finding
      bool header_complete;
    };
    const std::vector<Case> cases = {
        {"bad magic", [](std::string& s) { s[0] = 'X'; }, "not a GGUF file", false},
        {"unknown version", [](std::string& s) { put<uint32_t>(s, 4, 7); }, "unsupported GGUF version 7", false},
        {"absurd key count", [](std::string& s) { put<uint64_t>(s, 16, uint64_t{1} << 40); }, "metadata count", false},
        {"absurd tensor count", [](std::string& s) { put<uint64_t>(s, 8, uint64_t{1} << 40); }, "tensor count", false},
        {"unknown value type",
         [](std::string& s) { put<uint32_t>(s, find(s, "zz.keyaa") + 8, 99); }, "unknown value type 99", false},
        {"array longer than the file",
         [](std::string& s) {
           // tokens array: key, u32 type (9), u32 element type (8), u64 count
           put<uint64_t>(s, find(s, "tokenizer.ggml.tokens") + 21 + 8, uint64_t{1} << 25);
         },
         "runs past the end of the file", false},
        {"string longer than the file",
         [](std::string& s) { put<uint64_t>(s, find(s, "tiny") - 8, uint64_t{1} << 30); }, "string value", false},
        {"duplicate key", [](std::string& s) { std::memcpy(&s[find(s, "zz.keybb")], "zz.keyaa", 8); },
         "duplicate metadata key 'zz.keyaa'", true},
        {"unknown ggml type",
         [](std::string& s) { put<uint32_t>(s, after_name(s, "tensor_b.weight") + 4 + 16, 99); },
         "unknown ggml type 99", true},
        {"row not a multiple of the block",
         [](std::string& s) { put<uint64_t>(s, after_name(s, "tensor_b.weight") + 4, 48); },
         "not a multiple of Q8_0's block", true},
        {"misaligned data offset",
         [](std::string& s) {
           const size_t off = after_name(s, "tensor_b.weight") + 4 + 16 + 4;
           uint64_t v;
           std::memcpy(&v, &s[off], 8);
           put<uint64_t>(s, off, v + 4);
         },
         "is not aligned to 32", true},
        {"overlapping tensors",
         [](std::string& s) { put<uint64_t>(s, after_name(s, "tensor_b.weight") + 4 + 16 + 4, 0); }, "overlaps", true},
        {"tensor past the end",
         [](std::string& s) { put<uint64_t>(s, after_name(s, "tensor_b.weight") + 4 + 16 + 4, 1u << 20); },
         "past the end of the file", true},
        {"zero dimension", [](std::string& s) { put<uint64_t>(s, after_name(s, "tensor_a.weight") + 4 + 8, 0); },
         "zero-sized dimension", true},
        {"too many dimensions", [](std::string& s) { put<uint32_t>(s, after_name(s, "tensor_a.weight"), 9); },
         "9 dimensions", false},
    };
    for (const auto& c : cases) {
      CAPTURE(c.name);
      std::string bytes = good;
      c.corrupt(bytes);
      const fs::path p = tmp.path / "bad.gguf";
      write_all(p, bytes);
      // The strict reader refuses every one of these ...
      CHECK_THROWS_AS(GgufReader::open(p.string()), FormatError);
      // ... the scanner reports it and keeps what it could read.
      GgufScan s;
      REQUIRE_NOTHROW(s = scan_gguf(p.string()));
      CHECK(s.has_errors());
      CHECK_MESSAGE(has_finding(s, Severity::kError, c.expect), "no error mentioning '" << c.expect << "'");
      CHECK(s.header_complete == c.header_complete);
      // A report and both renderings work on the damaged file.
      InspectReport r;
      REQUIRE_NOTHROW(r = inspect_gguf(p.string()));
      CHECK(r.has_errors());
      CHECK(render_inspect_text(r, {}).find(c.expect) != std::string::npos);
      simdjson::dom::parser parser;
      simdjson::dom::element root;
      const std::string js = render_inspect_json(r, {});
      CHECK(parser.parse(js).get(root) == simdjson::SUCCESS);
    }
  }

  TEST_CASE("a file that is not GGUF at all, and an empty one") {
    TempDir tmp;
    write_all(tmp.path / "x.gguf", "hello world, certainly not a model");
    write_all(tmp.path / "empty.gguf", "");
    for (const char* n : {"x.gguf", "empty.gguf"}) {
      GgufScan s;
      REQUIRE_NOTHROW(s = scan_gguf((tmp.path / n).string()));
      CHECK(s.has_errors());
      CHECK_FALSE(s.is_gguf);
    }
  }

  TEST_CASE("report sums: per type, per layer, bits per weight") {
    std::vector<TensorRow> rows = {
        {"token_embd.weight", {64, 10}, "Q8_0", 640, 680, true, std::nullopt},
        {"blk.0.attn_q.weight", {64, 64}, "Q4_K", 4096, 2304, true, 0},
        {"blk.0.attn_norm.weight", {64}, "F32", 64, 256, true, 0},
        {"blk.1.attn_q.weight", {64, 64}, "Q6_K", 4096, 3360, true, 1},
    };
    auto types = totals_by_type(rows);
    REQUIRE(types.size() == 4);
    CHECK(types[0].type == "Q6_K");  // most bytes first
    auto layers = totals_by_layer(rows);
    REQUIRE(layers.size() == 3);
    CHECK_FALSE(layers[0].layer.has_value());
    CHECK(*layers[1].layer == 0);
    CHECK(layers[1].n_bytes == 2304 + 256);
    CHECK(layers[1].bpw() == doctest::Approx(8.0 * 2560 / 4160));
    CHECK(layers[1].types == "Q4_K, F32");
    CHECK(tensor_layer("blk.12.ffn_up.weight") == 12);
    CHECK(tensor_layer("model.layers.3.mlp.up_proj.weight") == 3);
    CHECK_FALSE(tensor_layer("blk.x.ffn_up").has_value());
    CHECK_FALSE(tensor_layer("output.weight").has_value());
  }

  TEST_CASE("HF folder: config and tokenizer summary from the real SmolLM2-135M files") {
    const std::string dir = std::string(SMOLQ_SHARED_DIR) + "/assets/smollm2-135m-instruct";
    if (!fs::exists(dir + "/tokenizer.json")) return;
    InspectReport r = inspect_path(dir);
    CHECK(r.kind == SourceKind::kHfFolder);
    REQUIRE(r.config.has_value());
    CHECK(r.config->n_layer == 30);
    CHECK(r.config->n_head_kv == 3);
    REQUIRE(r.tokenizer.has_value());
    CHECK(r.tokenizer->model == "BPE");
    CHECK(r.tokenizer->vocab_size == 49152);
    CHECK(r.tokenizer->n_merges == 48900);
    CHECK(r.tokenizer->pre == "Sequence[Digits, ByteLevel]");
    bool bos = false;
    for (const auto& s : r.tokenizer->special)
      if (s.role == "bos") bos = s.id == 1 && s.text == "<|im_start|>";
    CHECK(bos);
    CHECK(r.tensors.empty());  // no weights in that folder
    CHECK_FALSE(r.has_errors());
  }

  TEST_CASE("JSON writer: nesting, commas, escaping round-trip through a parser") {
    JsonWriter j;
    j.begin_object().field("s", "a\"b\\c\n\x01").field("n", uint64_t{18446744073709551615ull}).field("i", int64_t{-3});
    j.key("d").value(0.1, 17);
    j.key("nan").value(std::numeric_limits<double>::quiet_NaN());
    j.key("arr").begin_array().value(true).null().begin_object().end_object().begin_array().end_array().end_array();
    j.end_object();
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    REQUIRE(parser.parse(j.str()).get(root) == simdjson::SUCCESS);
    std::string_view s;
    CHECK(root["s"].get(s) == simdjson::SUCCESS);
    CHECK(s == "a\"b\\c\n\x01");
    uint64_t n;
    CHECK(root["n"].get(n) == simdjson::SUCCESS);
    CHECK(n == 18446744073709551615ull);
    double d;
    CHECK(root["d"].get(d) == simdjson::SUCCESS);
    CHECK(d == 0.1);
    CHECK(root["nan"].is_null());
    simdjson::dom::array a;
    CHECK(root["arr"].get(a) == simdjson::SUCCESS);
    CHECK(a.size() == 4);
  }
}
