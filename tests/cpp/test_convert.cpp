// Unit tests of convert/: naming, Q/K permutation, the probe text, rope factors, plain types.
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "formats/rope_layout.h"
#include "convert/converter.h"
#include "convert/naming.h"
#include "convert/tensor_map.h"
#include "text/tokenizer_meta.h"
#include "formats/sha256.h"
#include "text/tokenizer.h"

using namespace smolq;

TEST_SUITE("test_convert") {
  TEST_CASE("size labels as llama.cpp writes them") {
    CHECK(size_label_for(134515008) == "135M");
    CHECK(size_label_for(361821120) == "362M");
    CHECK(size_label_for(1711376384) == "1.7B");
    CHECK(size_label_for(3075098624ull) == "3.1B");
    CHECK(size_label_for(5100000) == "5.1M");
    CHECK(size_label_for(70553706496ull) == "71B");
  }
  TEST_CASE("basename and finetune split around the size token") {
    ModelNaming n = derive_naming("/x/SmolLM2-135M-Instruct", 134515008, "");
    CHECK(n.name == "SmolLM2-135M-Instruct");
    CHECK(n.basename == "SmolLM2");
    CHECK(n.finetune == "Instruct");
    n = derive_naming("/x/my_model/", 1000, "");
    CHECK(n.basename == "my_model");
    CHECK(n.finetune.empty());
  }
  TEST_CASE("Q/K permutation is a bijection that pairs row i with row i + d/2 in each head") {
    const uint64_t heads = 3, hd = 8, rows = heads * hd;
    std::set<uint64_t> seen;
    for (uint64_t r = 0; r < rows; ++r) seen.insert(permuted_source_row(r, rows, heads));
    CHECK(seen.size() == rows);
    // Output rows 2j and 2j+1 of head h come from rows j and j + hd/2 of that head.
    for (uint64_t h = 0; h < heads; ++h)
      for (uint64_t j = 0; j < hd / 2; ++j) {
        CHECK(permuted_source_row(h * hd + 2 * j, rows, heads) == h * hd + j);
        CHECK(permuted_source_row(h * hd + 2 * j + 1, rows, heads) == h * hd + j + hd / 2);
      }
  }
  TEST_CASE("probe text is llama.cpp's, byte for byte") {
    // sha256 of the UTF-8 bytes of llama.cpp's chktxt (431 bytes).
    CHECK(pre_tokenizer_probe_text().size() == 431);
    CHECK(sha256_hex(pre_tokenizer_probe_text()) == "a36179c1e2b1cfcfbfad1dc779addad2ffc778201e4cf0d538bddeafa2c526da");
  }
  TEST_CASE("the real SmolLM2 tokenizer has llama.cpp's 'smollm' probe hash") {
    Tokenizer tok = Tokenizer::from_hf_json(std::string(SMOLQ_SHARED_DIR) + "/assets/smollm2-135m-instruct/tokenizer.json");
    auto ids = tok.encode(pre_tokenizer_probe_text(), true);
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
    s += "]";
    CHECK(sha256_hex(s) == "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249");
  }
  TEST_CASE("llama3 rope factors") {
    ModelConfig c;
    c.rope_dim = 128;
    c.rope_theta = 500000;
    c.rope_scaling.type = "llama3";
    c.rope_scaling.factor = 32;
    c.rope_scaling.low_freq_factor = 1;
    c.rope_scaling.high_freq_factor = 4;
    c.rope_scaling.original_context = 8192;
    auto f = llama3_rope_factors(c);
    REQUIRE(f.size() == 64);
    CHECK(f.front() == 1.0f);          // high frequencies untouched
    CHECK(f.back() == 32.0f);          // low frequencies scaled by the factor
    for (size_t i = 1; i < f.size(); ++i) CHECK(f[i] >= f[i - 1]);  // monotone in between
  }
  TEST_CASE("plain output types keep vectors in F32 and fall back like llama.cpp's converter") {
    CHECK(plain_type_for({576}, GgmlType::Q8_0) == GgmlType::F32);
    CHECK(plain_type_for({576, 1536}, GgmlType::Q8_0) == GgmlType::Q8_0);
    CHECK(plain_type_for({172, 64}, GgmlType::Q8_0) == GgmlType::F16);
    CHECK(plain_type_for({172, 64}, GgmlType::BF16) == GgmlType::BF16);
  }
}
