// smolq release's pieces that need no model: the llama.cpp recipe (patterns matched the way
// llama-quantize matches them), the atomic release folder, the destination policy and the card's
// front matter read back by the same YAML reader convert uses.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "convert/model_card.h"
#include "formats/atomic_dir.h"
#include "formats/error.h"
#include "formats/gguf.h"
#include "formats/mapped_file.h"
#include "release/card.h"
#include "release/recipe.h"
#include "release/release.h"

using namespace smolq;
namespace fs = std::filesystem;

namespace {

fs::path tmp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("smolq_test_release_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

// llama-quantize's rule: the first pattern std::regex_search finds in the name wins.
std::string llama_type_for(const std::string& recipe, const std::string& name) {
  std::istringstream in(recipe);
  for (std::string word; in >> word;) {
    const size_t eq = word.find('=');
    if (std::regex_search(name, std::regex(word.substr(0, eq)))) return word.substr(eq + 1);
  }
  return "";
}

}  // namespace

TEST_SUITE("test_release") {
  TEST_CASE("a recipe line names exactly one tensor, as llama-quantize matches it") {
    CHECK(tensor_name_regex("blk.1.attn_q.weight") == "^blk\\.1\\.attn_q\\.weight$");
    const fs::path p = tmp_dir("recipe") / "m.gguf";
    {
      GgufWriter w(p.string());
      w.metadata().set("general.architecture", GgufValue::str("llama"));
      w.add_tensor("token_embd.weight", {64, 4}, GgmlType::Q8_0);
      w.add_tensor("blk.1.attn_norm.weight", {64}, GgmlType::F32);
      w.add_tensor("blk.1.attn_q.weight", {64, 2}, GgmlType::Q4_1);
      w.add_tensor("blk.11.attn_q.weight", {64, 2}, GgmlType::Q5_0);
      w.add_tensor("blk.1x1.attn_q.weight", {64, 2}, GgmlType::F16);  // '.' must not match any character
      w.begin_data();
      w.write_tensor("token_embd.weight", std::vector<std::byte>(2 * 34 * 4));
      w.write_tensor("blk.1.attn_norm.weight", std::vector<std::byte>(64 * 4));
      w.write_tensor("blk.1.attn_q.weight", std::vector<std::byte>(2 * 20 * 2));
      w.write_tensor("blk.11.attn_q.weight", std::vector<std::byte>(2 * 22 * 2));
      w.write_tensor("blk.1x1.attn_q.weight", std::vector<std::byte>(64 * 2 * 2));
      w.commit();
    }
    const std::string recipe = tensor_type_recipe(*GgufReader::open(p.string()));
    CHECK(recipe ==
          "^token_embd\\.weight$=q8_0\n"
          "^blk\\.1\\.attn_q\\.weight$=q4_1\n"
          "^blk\\.11\\.attn_q\\.weight$=q5_0\n"
          "^blk\\.1x1\\.attn_q\\.weight$=f16\n");
    CHECK(llama_type_for(recipe, "blk.1.attn_q.weight") == "q4_1");
    CHECK(llama_type_for(recipe, "blk.11.attn_q.weight") == "q5_0");
    CHECK(llama_type_for(recipe, "blk.1x1.attn_q.weight") == "f16");
    CHECK(llama_type_for(recipe, "blk.1.attn_norm.weight").empty());  // 1-D: left as it is
  }

  TEST_CASE("the release folder appears whole, replaces the old one in one step, or not at all") {
    const fs::path d = tmp_dir("atomic");
    const std::string dest = (d / "rel").string();
    {
      AtomicDir a(dest);
      write(a.file("x.txt"), "one");
      CHECK(!fs::exists(dest));
      a.commit();
    }
    CHECK(read_text_file(dest + "/x.txt") == "one");
    {
      AtomicDir a(dest);
      write(a.file("y.txt"), "two");
      // destroyed without commit: the old folder stays, the staging folder goes
    }
    CHECK(fs::exists(dest + "/x.txt"));
    CHECK(!fs::exists(dest + "/y.txt"));
    {
      AtomicDir a(dest);
      write(a.file("y.txt"), "two");
      a.commit();
    }
    CHECK(!fs::exists(dest + "/x.txt"));
    CHECK(read_text_file(dest + "/y.txt") == "two");
    size_t entries = 0;
    for (const auto& e : fs::directory_iterator(d)) entries += e.path().filename() != "rel";
    CHECK(entries == 0);  // no staging or old folder left
    // A staging folder of a dead process is removed by the next run.
    const fs::path stale = d / ".rel.smolq-tmp-999999999";
    fs::create_directories(stale);
    {
      AtomicDir a(dest);
      CHECK(a.notes().size() == 1);
    }
    CHECK(!fs::exists(stale));
    write(d / "file", "");
    CHECK_THROWS_AS(AtomicDir((d / "file").string()), UsageError);
  }

  TEST_CASE("only an empty folder or an earlier release may be replaced") {
    const fs::path d = tmp_dir("policy");
    CHECK_NOTHROW(check_release_destination((d / "new").string()));
    fs::create_directories(d / "empty");
    CHECK_NOTHROW(check_release_destination((d / "empty").string()));
    fs::create_directories(d / "old");
    write(d / "old" / "a.gguf", "x");
    write(d / "old" / "SHA256SUMS", std::string(64, '0') + "  a.gguf\n");
    CHECK_NOTHROW(check_release_destination((d / "old").string()));
    fs::create_directories(d / "old" / ".git");
    CHECK_THROWS_WITH_AS(check_release_destination((d / "old").string()), doctest::Contains(".git"), UsageError);
    fs::create_directories(d / "clone");
    write(d / "clone" / "notes.txt", "mine");
    CHECK_THROWS_AS(check_release_destination((d / "clone").string()), UsageError);
  }

  TEST_CASE("the card's front matter reads back as written") {
    CardFacts f;
    f.model_name = "SmolLM2-135M-Instruct";
    f.base_model = "HuggingFaceTB/SmolLM2-135M-Instruct";
    f.license = "apache-2.0";
    f.tags = {"gguf", "smollm", "yes", "1.0"};  // "yes" and "1.0" must stay strings
    f.languages = {"en"};
    const fs::path d = tmp_dir("card");
    write(d / "README.md", write_front_matter(card_front_matter(f)) + "\n# body\n");
    const MetaTree t = read_model_card(d.string());
    REQUIRE(t.is_map());
    CHECK(t.get("base_model")->scalar == f.base_model);
    CHECK(t.get("base_model_relation")->scalar == "quantized");
    CHECK(t.get("license")->scalar == "apache-2.0");
    CHECK(t.get("quantized_by")->scalar == "smolq");
    CHECK(t.get("library_name")->scalar == "gguf");
    CHECK(t.get("pipeline_tag")->scalar == "text-generation");
    const MetaTree* tags = t.get("tags");
    REQUIRE(tags->is_list());
    std::vector<std::string> got;
    for (const auto& i : tags->items) got.push_back(i.scalar);
    CHECK(got == std::vector<std::string>{"gguf", "llama.cpp", "quantized", "smolq", "smollm", "yes", "1.0"});
    CHECK(t.get("language")->items.at(0).scalar == "en");
    const std::string text = read_text_file((d / "README.md").string());
    CHECK(text.find("- \"yes\"") != std::string::npos);  // quoted: YAML 1.1 readers take yes for true
  }
}
