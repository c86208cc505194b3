// Every entry of our IQ / FP4 constant tables against testdata/iq_tables_ref.txt, which
// scripts/dev/extract_iq_tables.py writes from the gguf Python package's copy of the same
// tables. Our grids were generated from ggml's compiled decoder (scripts/dev/gen_iq_tables.py),
// so this compares two independent transcriptions of the format's data.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "quantize/iq_tables.h"

using namespace smolq;

namespace {

using RefTable = std::map<std::string, std::vector<std::vector<int>>>;

RefTable load_reference() {
  const std::string path = std::string(SMOLQ_SOURCE_DIR) + "/testdata/iq_tables_ref.txt";
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  RefTable t;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string name;
    size_t index = 0;
    ls >> name >> index;
    auto& rows = t[name];
    REQUIRE_MESSAGE(index == rows.size(), "rows out of order in " << name);
    std::vector<int> v;
    int x;
    while (ls >> x) v.push_back(x);
    rows.push_back(std::move(v));
  }
  return t;
}

template <typename Word>
void check_grid(const RefTable& ref, const char* name, const Word* grid, size_t n, int dim, bool is_signed) {
  CAPTURE(name);
  const auto it = ref.find(name);
  REQUIRE(it != ref.end());
  REQUIRE(it->second.size() == n);
  int mismatches = 0;
  for (size_t i = 0; i < n; ++i) {
    REQUIRE(it->second[i].size() == static_cast<size_t>(dim));
    for (int j = 0; j < dim; ++j) {
      const int ours = is_signed ? iq::grid_sbyte(grid[i], j) : iq::grid_byte(grid[i], j);
      if (ours != it->second[i][j]) {
        if (++mismatches <= 5) MESSAGE(name << "[" << i << "][" << j << "] = " << ours << ", reference " << it->second[i][j]);
      }
    }
  }
  CHECK(mismatches == 0);
}

template <size_t N>
void check_values(const RefTable& ref, const char* name, const std::array<int8_t, N>& ours) {
  CAPTURE(name);
  const auto it = ref.find(name);
  REQUIRE(it != ref.end());
  REQUIRE(it->second.size() == N);
  for (size_t i = 0; i < N; ++i) CHECK(ours[i] == it->second[i][0]);
}

}  // namespace

TEST_SUITE("test_iq_tables") {
  TEST_CASE("IQ grids match the gguf package entry by entry") {
    const RefTable ref = load_reference();
    check_grid(ref, "iq2xxs_grid", iq::kIq2xxsGrid, 256, 8, false);
    check_grid(ref, "iq2xs_grid", iq::kIq2xsGrid, 512, 8, false);
    check_grid(ref, "iq2s_grid", iq::kIq2sGrid, 1024, 8, false);
    check_grid(ref, "iq3xxs_grid", iq::kIq3xxsGrid, 256, 4, false);
    check_grid(ref, "iq3s_grid", iq::kIq3sGrid, 512, 4, false);
    check_grid(ref, "iq1s_grid", iq::kIq1sGrid, 2048, 8, true);
  }

  TEST_CASE("sign codes and value tables match the gguf package") {
    const RefTable ref = load_reference();
    const auto it = ref.find("ksigns_iq2xs");
    REQUIRE(it != ref.end());
    REQUIRE(it->second.size() == 128);
    for (int i = 0; i < 128; ++i) CHECK(iq::kSignsIq2[i] == it->second[i][0]);
    check_values(ref, "kvalues_iq4nl", iq::kValuesIq4nl);
    check_values(ref, "kvalues_mxfp4", iq::kValuesMxfp4);
  }

  TEST_CASE("grid points are distinct (an index is a code, not a duplicate)") {
    auto distinct = [](const auto* g, size_t n) {
      std::vector<uint64_t> v(g, g + n);
      std::sort(v.begin(), v.end());
      return std::adjacent_find(v.begin(), v.end()) == v.end();
    };
    CHECK(distinct(iq::kIq2xxsGrid, 256));
    CHECK(distinct(iq::kIq2xsGrid, 512));
    CHECK(distinct(iq::kIq2sGrid, 1024));
    CHECK(distinct(iq::kIq3xxsGrid, 256));
    CHECK(distinct(iq::kIq3sGrid, 512));
    CHECK(distinct(iq::kIq1sGrid, 2048));
  }
}
