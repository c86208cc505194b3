// Absurd sizes in headers are rejected with a FormatError before anything is allocated.
//
// Each case writes a small hostile file and runs the real reader on it in a forked child
// whose address space is capped (RLIMIT_AS) at what it already uses plus kHeadroom: a reader
// that tried to allocate what the header claims would hit the cap (std::bad_alloc, or an
// allocator abort under ASan) instead of throwing FormatError. The child reports how the
// call ended through its exit code. Cases that extend tests/cpp/test_gguf.cpp's hostile
// headers and tests/python/test_convert_errors.py's corrupt checkpoints with the sizes of
// the issue's table: a 2^60-element tensor, a 10^12-entry array, a 1 GB string, a 2^60
// header length, a 2^62-element shape, 2^31 imatrix entries, absurd config.json numbers.
// Chat templates are programs rather than headers: their nesting, loops and growth must end
// in a TemplateError (the limits in text/chat_template_value.h), also in a capped child.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <new>

#include "formats/error.h"
#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "formats/model_config.h"
#include "formats/safetensors.h"
#include "inspect/gguf_scan.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

using namespace smolq;
namespace fs = std::filesystem;

namespace {

// Address space a reader may use beyond what the process already has mapped: enough for
// the parsers' own small tables (simdjson's parser sizes itself to the document), far
// below any of the sizes the hostile headers claim.
// Under AddressSanitizer the allocator's quarantine (freed blocks kept for a while) and its
// bookkeeping need far more, and a failed allocation aborts the child instead of throwing
// std::bad_alloc (counted as a crash below); the ASan build checks memory errors, the plain
// build the exact allocation bounds.
#if defined(__SANITIZE_ADDRESS__)
#define SMOLQ_LIMITS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SMOLQ_LIMITS_ASAN 1
#endif
#endif
#ifdef SMOLQ_LIMITS_ASAN
constexpr uint64_t kHeadroom = 1ull << 30;
#else
constexpr uint64_t kHeadroom = 64ull << 20;
#endif

enum class Outcome { kFormatError = 10, kOtherError = 11, kBadAlloc = 12, kOtherException = 13, kNoError = 14 };

const char* outcome_name(int code) {
  switch (code) {
    case 10: return "FormatError";
    case 11: return "another smolq::Error";
    case 12: return "std::bad_alloc (allocated before checking)";
    case 13: return "a non-smolq exception";
    case 14: return "no error (accepted)";
    default: return "a crash or sanitizer abort";
  }
}

uint64_t mapped_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t pages = 0;
  f >> pages;
  return pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

// Runs fn in a child with capped address space; returns its exit code (see Outcome).
int run_capped(const std::function<void()>& fn) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child dies by its own signals: doctest's handlers would report the parent's test
    // case as crashed from inside the child.
    std::signal(SIGABRT, SIG_DFL);
    std::signal(SIGSEGV, SIG_DFL);
    const rlim_t cap = mapped_bytes() + kHeadroom;
    struct rlimit rl {cap, cap};
    ::setrlimit(RLIMIT_AS, &rl);
    int code = static_cast<int>(Outcome::kNoError);
    try {
      fn();
    } catch (const FormatError&) {
      code = static_cast<int>(Outcome::kFormatError);
    } catch (const Error&) {
      code = static_cast<int>(Outcome::kOtherError);
    } catch (const std::bad_alloc&) {
      code = static_cast<int>(Outcome::kBadAlloc);
    } catch (...) {
      code = static_cast<int>(Outcome::kOtherException);
    }
    ::_exit(code);  // no atexit handlers, no leak check of a child that is half a test
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void expect_outcome(const std::string& what, Outcome want, const std::function<void()>& fn) {
  const int code = run_capped(fn);
  INFO(what << ": ended with " << std::string(outcome_name(code)) << " (exit code " << code << ")");
  CHECK(code == static_cast<int>(want));
}

void expect_format_error(const std::string& what, const std::function<void()>& fn) {
  const int code = run_capped(fn);
  INFO(what << ": ended with " << std::string(outcome_name(code)) << " (exit code " << code << ")");
  CHECK(code == static_cast<int>(Outcome::kFormatError));
}

fs::path tmp_dir() {
  static const fs::path d = [] {
    fs::path p = fs::temp_directory_path() / ("smolq_test_limits_" + std::to_string(::getpid()));
    fs::create_directories(p);
    return p;
  }();
  return d;
}

std::string put_file(const std::string& name, const std::string& bytes) {
  const fs::path p = tmp_dir() / name;
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return p.string();
}

// Little-endian field writers.
template <class T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}
void put_str(std::string& s, const std::string& v) {
  put<uint64_t>(s, v.size());
  s += v;
}

// GGUF v3 header: magic, version, counts (kv pairs and tensor infos follow).
std::string gguf_header(uint64_t n_tensors, uint64_t n_kv) {
  std::string s = "GGUF";
  put<uint32_t>(s, 3);
  put<uint64_t>(s, n_tensors);
  put<uint64_t>(s, n_kv);
  return s;
}

std::string gguf_with_tensor(const std::vector<uint64_t>& dims, uint32_t ggml_type) {
  std::string s = gguf_header(1, 0);
  put_str(s, "t");
  put<uint32_t>(s, static_cast<uint32_t>(dims.size()));
  for (uint64_t d : dims) put<uint64_t>(s, d);
  put<uint32_t>(s, ggml_type);
  put<uint64_t>(s, 0);
  s.resize((s.size() + 31) / 32 * 32, '\0');
  return s + std::string(64, '\0');  // a little tensor data, far from what is claimed
}

void read_gguf(const std::string& path) {
  (void)GgufReader::open(path);
}

// safetensors: u64 header length + JSON header + data.
std::string safetensors_file(const std::string& header_json, const std::string& data, uint64_t claimed_len = 0) {
  std::string s;
  put<uint64_t>(s, claimed_len ? claimed_len : header_json.size());
  return s + header_json + data;
}

std::string config_json(const std::string& overrides) {
  return "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":49152,\"hidden_size\":576,"
         "\"num_attention_heads\":9,\"num_key_value_heads\":3,\"intermediate_size\":1536," +
         overrides + "}";
}

}  // namespace

TEST_SUITE("test_limits") {
  TEST_CASE("the capped child itself: a real allocation beyond the headroom is caught") {
    // Guards the method: if the cap did not bite, every case below would pass vacuously.
    const int code = run_capped([] {
      std::vector<char> big(kHeadroom * 4, 1);
      if (big[12345] != 1) throw std::runtime_error("unreachable");
    });
    const bool caught = code == static_cast<int>(Outcome::kBadAlloc) || code >= 128 || code == 1;
    INFO("exit code " << code << " (" << std::string(outcome_name(code)) << ")");
    CHECK(caught);
  }

  TEST_CASE("GGUF: absurd tensor, array, string and count sizes") {
    // 2^60 elements of F32 (= 2^62 bytes): within the element cap, far beyond the file.
    expect_format_error("2^60-element F32 tensor", [] {
      read_gguf(put_file("g1.gguf", gguf_with_tensor({1ull << 30, 1ull << 30}, 0)));
    });
    expect_format_error("2^62-element tensor (element count overflow)", [] {
      read_gguf(put_file("g2.gguf", gguf_with_tensor({1ull << 31, 1ull << 31}, 0)));
    });
    expect_format_error("10^12-entry u8 array", [] {
      std::string s = gguf_header(0, 1);
      put_str(s, "k");
      put<uint32_t>(s, static_cast<uint32_t>(GgufType::ARRAY));
      put<uint32_t>(s, static_cast<uint32_t>(GgufType::UINT8));
      put<uint64_t>(s, 1000000000000ull);
      read_gguf(put_file("g3.gguf", s + std::string(16, '\0')));
    });
    expect_format_error("array of 2^26 (the cap) strings in a 60-byte file", [] {
      std::string s = gguf_header(0, 1);
      put_str(s, "k");
      put<uint32_t>(s, static_cast<uint32_t>(GgufType::ARRAY));
      put<uint32_t>(s, static_cast<uint32_t>(GgufType::STRING));
      put<uint64_t>(s, GgufLimits::kMaxArrayItems);
      read_gguf(put_file("g4.gguf", s + std::string(16, '\0')));
    });
    expect_format_error("1 GB key string", [] {
      std::string s = gguf_header(0, 1);
      put<uint64_t>(s, 1ull << 30);
      read_gguf(put_file("g5.gguf", s + "abc"));
    });
    expect_format_error("1 GB string value", [] {
      std::string s = gguf_header(0, 1);
      put_str(s, "k");
      put<uint32_t>(s, static_cast<uint32_t>(GgufType::STRING));
      put<uint64_t>(s, 1ull << 30);
      read_gguf(put_file("g6.gguf", s + "abc"));
    });
    expect_format_error("2^64-1 tensors declared", [] {
      read_gguf(put_file("g7.gguf", gguf_header(~0ull, 0)));
    });
    expect_format_error("2^20 tensors (the cap) declared in a 24-byte file", [] {
      read_gguf(put_file("g8.gguf", gguf_header(GgufLimits::kMaxTensors, 0)));
    });
    expect_format_error("2^20 key/value pairs (the cap) declared in a 24-byte file", [] {
      read_gguf(put_file("g9.gguf", gguf_header(0, GgufLimits::kMaxKv)));
    });
  }

  TEST_CASE("GGUF scanner (inspect): the same headers are findings, not allocations") {
    // scan_gguf never throws on content: it must end normally with an error finding.
    const std::vector<std::pair<std::string, std::string>> files = {
        {"s1.gguf", gguf_with_tensor({1ull << 30, 1ull << 30}, 0)},
        {"s2.gguf", gguf_header(GgufLimits::kMaxTensors, 0)},
        {"s3.gguf", gguf_header(0, GgufLimits::kMaxKv)},
    };
    for (const auto& [name, bytes] : files) {
      const std::string path = put_file(name, bytes);
      const int code = run_capped([&] {
        if (scan_gguf(path).has_errors()) throw FormatError(path, "scan found errors");  // the expected end
      });
      INFO(name << ": ended with " << std::string(outcome_name(code)));
      CHECK(code == static_cast<int>(Outcome::kFormatError));
    }
  }

  TEST_CASE("safetensors: header length 2^60, 2^62-element shapes, huge offsets") {
    expect_format_error("header length 2^60", [] {
      SafetensorsCheckpoint::open(put_file("st1.safetensors", safetensors_file("{}", "", 1ull << 60)));
    });
    expect_format_error("header length 99 MB (under the cap) in a small file", [] {
      SafetensorsCheckpoint::open(put_file("st2.safetensors", safetensors_file("{}", "", 99ull << 20)));
    });
    expect_format_error("shape with 2^62 BF16 elements", [] {
      SafetensorsCheckpoint::open(put_file(
          "st3.safetensors",
          safetensors_file(R"({"w":{"dtype":"BF16","shape":[4611686018427387904],"data_offsets":[0,4]}})", "abcd")));
    });
    expect_format_error("shape [2^31, 2^31] F32 whose byte size overflows", [] {
      SafetensorsCheckpoint::open(put_file(
          "st4.safetensors",
          safetensors_file(R"({"w":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,0]}})", "")));
    });
    expect_format_error("data_offsets claiming 2^62 bytes", [] {
      SafetensorsCheckpoint::open(put_file(
          "st5.safetensors",
          safetensors_file(R"({"w":{"dtype":"F32","shape":[1152921504606846976],"data_offsets":[0,4611686018427387904]}})",
                           "abcd")));
    });
  }

  TEST_CASE("imatrix .dat and GGUF: 2^31 entries, huge value counts and names, absurd counts") {
    auto dat = [](int32_t n_entries, int32_t name_len, const std::string& name, int32_t ncall, int32_t nval) {
      std::string s;
      put<int32_t>(s, n_entries);
      put<int32_t>(s, name_len);
      s += name;
      put<int32_t>(s, ncall);
      put<int32_t>(s, nval);
      return s + std::string(16, '\0');
    };
    expect_format_error("2^31-1 entries", [&] { read_imatrix(put_file("i1.dat", dat(INT32_MAX, 1, "w", 1, 4))); });
    expect_format_error("2^31-1 values in one entry", [&] { read_imatrix(put_file("i2.dat", dat(1, 1, "w", 1, INT32_MAX))); });
    expect_format_error("2^26 values (the cap) in a 40-byte file", [&] {
      read_imatrix(put_file("i3.dat", dat(1, 1, "w", 1, static_cast<int32_t>(ImatrixLimits::kMaxValues))));
    });
    expect_format_error("2^31-1-byte name", [&] { read_imatrix(put_file("i4.dat", dat(1, INT32_MAX, "w", 1, 4))); });
    expect_format_error("negative call count", [&] { read_imatrix(put_file("i5.dat", dat(1, 1, "w", -5, 4))); });
    expect_format_error("2^31-1-byte dataset name in the trailer", [&] {
      std::string s = dat(1, 1, "w", 1, 4);
      put<int32_t>(s, 10);
      put<int32_t>(s, INT32_MAX);
      read_imatrix(put_file("i6.dat", s));
    });
    expect_format_error("GGUF imatrix with an absurd count (1e30)", [] {
      const std::string path = (tmp_dir() / "i7.gguf").string();
      {
        GgufWriter w(path);
        w.metadata().set("general.type", GgufValue::str("imatrix"));
        w.add_tensor("w.in_sum2", {4}, GgmlType::F32);
        w.add_tensor("w.counts", {1}, GgmlType::F32);
        w.begin_data();
        const float sums[4] = {1, 2, 3, 4}, counts[1] = {1e30f};
        w.write_tensor("w.in_sum2", std::as_bytes(std::span(sums)));
        w.write_tensor("w.counts", std::as_bytes(std::span(counts)));
        w.commit();
      }
      read_imatrix(path);
    });
  }

  TEST_CASE("config.json: absurd layer, width, vocabulary and head sizes") {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"10^15 layers", R"("num_hidden_layers":1000000000000000)"},
        {"2^64-1 layers", R"("num_hidden_layers":18446744073709551615)"},
        {"10^12-token vocabulary", R"("vocab_size":1000000000000)"},
        {"2^40 head_dim", R"("head_dim":1099511627776)"},
        {"2^62 hidden size", R"("hidden_size":4611686018427387904)"},
        {"10^6-entry no_rope_layers for 30 layers",
         R"("architectures":["SmolLM3ForCausalLM"],"no_rope_layers":[)" +
             [] {
               std::string s = "1";
               for (int i = 1; i < 1000000; ++i) s += ",1";
               return s;
             }() + "]"},
    };
    for (const auto& [what, fields] : cases) {
      // simdjson's object lookup finds the first of duplicate keys: overrides go in front.
      const std::string base = config_json("\"num_hidden_layers\":30");
      const std::string json = "{" + fields + "," + base.substr(1);
      const std::string path = put_file("cfg/" + std::to_string(std::hash<std::string>{}(what)) + ".json", json);
      expect_format_error(what, [&] { parse_hf_config(path); });
    }
  }

  TEST_CASE("tokenizer.json: a token id of 2^31-2 is refused, not allocated") {
    // A byte-level vocabulary needs the printable ASCII tokens; give it those, then one id
    // near INT32_MAX so that a dense id table would need 2^31 entries.
    std::string vocab;
    for (int c = '!'; c <= '~'; ++c) {
      std::string t(1, static_cast<char>(c));
      if (c == '"' || c == '\\') t = "\\" + t;
      vocab += "\"" + t + "\":" + std::to_string(c - '!') + ",";
    }
    vocab += "\"far\":2147483646";
    const std::string tj =
        R"({"model":{"type":"BPE","vocab":{)" + vocab +
        R"(},"merges":[]},"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":true},)"
        R"("decoder":{"type":"ByteLevel"}})";
    const std::string path = put_file("tok/tokenizer.json", tj);
    expect_format_error("vocab id 2^31-2", [&] { Tokenizer::from_hf_json(path); });
  }

  TEST_CASE("chat template: hostile nesting, loops and growth end in TemplateError") {
    // A model's chat template is a program (text/chat_template.h); each of these once
    // overflowed the stack, hung or grew without bound (fuzz/regressions/chat_template/).
    const std::string deep(20000, '(');
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"parentheses 20000 deep", "{{ " + deep + "1" + std::string(20000, ')') + " }}"},
        {"a chain of 30000 '+'", [] {
           std::string s = "{{ 1";
           for (int i = 0; i < 30000; ++i) s += "+1";
           return s + " }}";
         }()},
        {"if blocks 5000 deep", [] {
           std::string s;
           for (int i = 0; i < 5000; ++i) s += "{% if true %}";
           for (int i = 0; i < 5000; ++i) s += "{% endif %}";
           return s;
         }()},
        {"10^15 loop iterations",
         "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}"
         "{% endfor %}{% endfor %}{% endfor %}"},
        {"a string doubled 100 times",
         "{% set ns = namespace(x='ab') %}{% for i in range(100) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}"},
        {"a string times 10^12", "{{ 'ab' * 1000000000000 }}"},
        {"a list nested 100000 deep",
         "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}"},
        {"a namespace holding itself", "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns|tojson }}"},
        {"int64 overflow", "{{ 9223372036854775807 + 1 }}"},
        {"int() of 1e300", "{{ 1e300|int }}"},
        {"tojson indent 10^9", "{{ messages|tojson(indent=1000000000) }}"},
    };
    const std::vector<ChatMessage> msgs = {{"user", "hi"}, {"assistant", "hello"}};
    for (const auto& [what, source] : cases)
      // The expected end is a TemplateError: a smolq::Error, not a FormatError.
      expect_outcome(what, Outcome::kOtherError, [&] { (void)ChatTemplate(source).apply(msgs, true, "<s>", "</s>"); });
    // The limits are far above what real templates use: 64 nested lists, a long loop, a
    // chain of 100 operators and 20 nested parentheses still render.
    std::string ok = "{% set ns = namespace(x=[]) %}{% for i in range(60) %}{% set ns.x = [ns.x] %}{% endfor %}"
                     "{% for i in range(100000) %}{% endfor %}{{ 0";
    for (int i = 0; i < 100; ++i) ok += "+1";
    ok += " }}{{ " + std::string(20, '(') + "7" + std::string(20, ')') + " }}";
    CHECK(ChatTemplate(ok).apply(msgs, false, "", "") == "1007");
  }
}
