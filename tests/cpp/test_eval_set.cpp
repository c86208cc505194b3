// Evaluation sets (eval/eval_set.h): the manifest reader's fields and its errors, chat turns,
// and the bundled default set (every category readable, tokenized with the real tokenizer).
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "eval/eval_set.h"
#include "formats/error.h"

using namespace smolq;
namespace fs = std::filesystem;

namespace {

std::string fresh_dir(const std::string& name) {
  const std::string d =
      (fs::temp_directory_path() / ("smolq_test_eval_set_" + std::to_string(::getpid()) + "_" + name)).string();
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// The message of the FormatError/Error reading `manifest_text` throws ("" when none).
std::string error_of(const std::string& dir, const std::string& manifest_text) {
  write(dir + "/evalset.json", manifest_text);
  try {
    read_eval_set(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_SUITE("test_eval_set") {
  TEST_CASE("a manifest's fields, files and folders") {
    const std::string d = fresh_dir("fields");
    write(d + "/prose.txt", "Some prose.\n");
    write(d + "/code/b.py", "print(2)\n");
    write(d + "/code/a.c", "int main(void) { return 0; }\n");
    write(d + "/code/.hidden", "not read\n");
    write(d + "/calib.txt", "calibration\n");
    write(d + "/evalset.json", R"({"name": "mine", "categories": [
      {"name": "prose", "path": "prose.txt", "calib": "calib.txt", "ctx": 128, "chunks": 3, "description": "d"},
      {"name": "code", "path": "code", "chat": true}]})");
    const EvalSet s = read_eval_set(d);
    CHECK(s.name == "mine");
    REQUIRE(s.categories.size() == 2);
    CHECK(s.categories[0].name == "prose");
    CHECK(s.categories[0].n_ctx == 128);
    CHECK(s.categories[0].n_chunks == 3);
    CHECK(s.categories[0].chat == false);
    CHECK(s.categories[0].calib_files == std::vector<std::string>{d + "/calib.txt"});
    CHECK(s.categories[1].files == std::vector<std::string>{d + "/code/a.c", d + "/code/b.py"});
    CHECK(s.categories[1].n_ctx == 512);
    CHECK(s.categories[1].n_chunks == -1);
    CHECK(s.categories[1].chat);
    // The manifest file itself may be given.
    CHECK(read_eval_set(d + "/evalset.json").categories.size() == 2);
  }

  TEST_CASE("bad manifests: one error naming the file and the field") {
    const std::string d = fresh_dir("bad");
    write(d + "/t.txt", "text\n");
    const std::string m = d + "/evalset.json";
    struct Case {
      const char* json;
      const char* expect;
    };
    const Case cases[] = {
        {"{", "not valid JSON"},
        {"[]", "expected a JSON object"},
        {R"({"name": "x"})", "missing field \"categories\""},
        {R"({"categories": []})", "the list is empty"},
        {R"({"categories": [{"path": "t.txt"}]})", "categories[0]: missing field \"name\""},
        {R"({"categories": [{"name": "a"}]})", "categories[0] (a): missing field \"path\""},
        {R"({"categories": [{"name": "a", "path": "t.txt", "ctxx": 5}]})", "categories[0].ctxx: unknown field"},
        {R"({"categories": [{"name": "a", "path": "t.txt", "ctx": 8}]})", "categories[0].ctx: 8 is outside"},
        {R"({"categories": [{"name": "a", "path": "t.txt", "ctx": "512"}]})", "categories[0].ctx: expected an integer"},
        {R"({"categories": [{"name": "a", "path": "t.txt", "chunks": 0}]})", "categories[0].chunks: must be at least 1"},
        {R"({"categories": [{"name": "a", "path": "t.txt", "chat": 1}]})", "categories[0].chat: expected true or false"},
        {R"({"categories": [{"name": "a b", "path": "t.txt"}]})", "categories[0].name: 'a b' must be"},
        {R"({"categories": [{"name": "a", "path": "../t.txt"}]})", "categories[0].path: '../t.txt' leaves"},
        {R"({"categories": [{"name": "a", "path": "/etc/passwd"}]})", "must be relative"},
        {R"({"categories": [{"name": "a", "path": "t.txt"}, {"name": "a", "path": "t.txt"}]})", "'a' is used twice"},
        {R"({"categories": [{"name": "a", "path": "t.txt"}], "extra": 1})", "extra: unknown field"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.json);
      const std::string e = error_of(d, c.json);
      CHECK(contains(e, m));
      CHECK(contains(e, c.expect));
    }
    // A missing text names the file and the field.
    const std::string e = error_of(d, R"({"categories": [{"name": "a", "path": "missing.txt"}]})");
    CHECK(contains(e, d + "/missing.txt: no such file or folder (categories[0].path in " + m));
    CHECK_THROWS_WITH_AS(read_eval_set(d + "/nowhere"), doctest::Contains("no such file or folder"), Error);
  }

  TEST_CASE("chat turns: --- lines separate alternating user / assistant turns") {
    const auto t = parse_chat_turns("What is zlib?\n---\nA library.\n\nIt compresses.\n---\nThanks\n---\n");
    REQUIRE(t.size() == 3);
    CHECK(t[0].role == "user");
    CHECK(t[0].content == "What is zlib?");
    CHECK(t[1].role == "assistant");
    CHECK(t[1].content == "A library.\n\nIt compresses.");
    CHECK(t[2].role == "user");
    CHECK(t[2].content == "Thanks");
    CHECK(parse_chat_turns("one turn only").size() == 1);
    const auto convs = parse_chat_file("Q1\n---\nA1\n===\nQ2\n---\nA2\n---\nQ3\n===\n");
    REQUIRE(convs.size() == 2);
    CHECK(convs[0].size() == 2);
    CHECK(convs[1].size() == 3);
    CHECK(convs[1][2].content == "Q3");
  }

  TEST_CASE("calibration chunks interleave the categories") {
    const std::vector<std::vector<int32_t>> streams{{1, 2, 3, 4, 5}, {10, 11}, {20, 21, 22, 23}};
    CHECK(interleave_chunks(streams, 2) == std::vector<int32_t>{1, 2, 10, 11, 20, 21, 3, 4, 22, 23});
    CHECK(interleave_chunks(streams, 8).empty());
  }

  TEST_CASE("the bundled default set reads, with the categories the issue asks for") {
    const EvalSet s = read_eval_set("default");
    CHECK(s.categories.size() >= 7);
    bool chat = false, long_ctx = false;
    for (const auto& c : s.categories) {
      CAPTURE(c.name);
      CHECK(!c.files.empty());
      CHECK(!c.calib_files.empty());  // every bundled category can calibrate an imatrix
      chat = chat || c.chat;
      long_ctx = long_ctx || c.n_ctx >= 4096;
    }
    CHECK(chat);
    CHECK(long_ctx);
  }
}
