// Replays the fuzz corpora through the fuzz target functions in the normal (non-libFuzzer)
// build: every seed in fuzz/corpus/<target>/ and every crash ever found, saved in
// fuzz/regressions/<target>/. A target aborts on a broken invariant and lets any exception
// other than smolq::Error escape, so a regression that comes back fails here (and under the
// ASan+UBSan build of scripts/ci_extras.sh, memory errors fail too).
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "fuzz/targets/fuzz_support.h"
#include "fuzz/targets/fuzz_targets.h"

namespace fs = std::filesystem;
using namespace smolq::fuzz;

namespace {

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename().string()[0] != '.') out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

size_t replay(const Target& t, const fs::path& dir) {
  size_t n = 0;
  for (const fs::path& p : files_in(dir)) {
    CAPTURE(p.string());
    const std::string bytes = slurp(p);
    t.fn(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ++n;
  }
  return n;
}

const fs::path kFuzzDir = fs::path(SMOLQ_SOURCE_DIR) / "fuzz";

}  // namespace

TEST_SUITE("test_fuzz_regressions") {
  TEST_CASE("every target has a seed corpus, and every seed and saved crash replays cleanly") {
    size_t total_regressions = 0;
    for (const Target& t : all_targets()) {
      CAPTURE(std::string(t.name));
      const size_t seeds = replay(t, kFuzzDir / "corpus" / std::string(t.name));
      CHECK(seeds > 0);
      total_regressions += replay(t, kFuzzDir / "regressions" / std::string(t.name));
      // The empty input and a lone byte are the first things a fuzzer tries.
      t.fn(nullptr, 0);
      const uint8_t one = 0;
      t.fn(&one, 1);
    }
    MESSAGE("replayed " << total_regressions << " saved crash inputs");
  }

  TEST_CASE("split_parts: separator-joined files, missing parts empty") {
    const std::string sep(kPartSeparator);
    const std::string in = "a" + sep + "bb" + sep + "ccc" + sep + "d";
    std::vector<bool> present;
    auto p = split_parts(reinterpret_cast<const uint8_t*>(in.data()), in.size(), 3, &present);
    REQUIRE(p.size() == 3);
    CHECK(p[0] == "a");
    CHECK(p[1] == "bb");
    CHECK(p[2] == "ccc" + sep + "d");  // the last part keeps the rest
    CHECK(present == std::vector<bool>{true, true, true});
    p = split_parts(reinterpret_cast<const uint8_t*>("x"), 1, 3, &present);
    CHECK(p[0] == "x");
    CHECK(p[1].empty());
    CHECK(present == std::vector<bool>{true, false, false});
  }
}
