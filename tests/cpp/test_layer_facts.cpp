// Cross-checks between layers that must agree on one fact (issue 12): the llama3 rope factors
// a converted file carries (convert/) and the ones the reference forward pass uses when it
// evaluates the Hugging Face folder directly (eval/); the Q/K row permutation as a function and
// as a table.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "convert/model_source.h"
#include "eval/model.h"
#include "formats/error.h"
#include "formats/rope_layout.h"

namespace fs = std::filesystem;
using namespace smolq;

TEST_SUITE("test_layer_facts") {
  TEST_CASE("llama3 rope factors: the converted file's rope_freqs.weight equals what eval uses for the HF folder") {
    const fs::path src = fs::path(SMOLQ_SOURCE_DIR) / "testdata/generated/smollm2-tiny-f32";
    if (!fs::exists(src / "config.json")) {
      MESSAGE("fixture " << src.string() << " not generated (scripts/make_fixtures.py); skipped");
      return;
    }
    const fs::path dir = fs::temp_directory_path() / ("smolq-layer-facts-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::copy(src, dir, fs::copy_options::recursive);
    // The same config with llama3 scaling (a small original context so every band is used).
    std::ifstream in(dir / "config.json");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string cfg = ss.str();
    const std::string scaling = "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                                "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}";
    if (const auto at = cfg.find("\"rope_scaling\": null"); at != std::string::npos) {
      cfg.replace(at, std::string("\"rope_scaling\": null").size(), "\"rope_scaling\": " + scaling);
    } else {
      const auto brace = cfg.rfind('}');
      REQUIRE(brace != std::string::npos);
      cfg.insert(brace, ", \"rope_scaling\": " + scaling + "\n");
    }
    std::ofstream(dir / "config.json", std::ios::trunc) << cfg;

    HfBuildSettings hf;
    hf.weight_type = GgmlType::F32;
    hf.file_type = FileType::kAllF32;
    auto source = ModelSource::open_hf(dir.string(), hf);
    const BuildPlan plan = source->plan(std::nullopt);
    const OutputTensor* rope = nullptr;
    for (const auto& o : plan.outputs)
      if (o.name == "rope_freqs.weight") rope = &o;
    REQUIRE(rope != nullptr);
    std::vector<float> written(rope->shape[0]);
    rope->source(0, 1, written);

    auto model = Model::open(dir.string());
    const auto used = model->rope_freq_factors();
    REQUIRE(used.size() == written.size());
    int scaled = 0;
    for (size_t i = 0; i < written.size(); ++i) {
      CHECK(used[i] == written[i]);  // bit-identical: one definition (formats/rope_layout.h)
      scaled += written[i] != 1.0f;
    }
    CHECK(scaled > 0);  // the scaling really changes some pairs
    fs::remove_all(dir);
  }

  TEST_CASE("Q/K permutation: the table is the function, and it is a permutation") {
    for (uint64_t heads : {1, 3, 9}) {
      for (uint64_t hd : {2, 8, 64}) {
        const auto order = qk_row_order(heads, hd);
        std::vector<bool> seen(order.size());
        for (uint64_t r = 0; r < order.size(); ++r) {
          CHECK(order[r] == permuted_source_row(r, heads * hd, heads));
          REQUIRE(order[r] < order.size());
          seen[order[r]] = true;
        }
        for (bool b : seen) CHECK(b);
      }
    }
  }
}
