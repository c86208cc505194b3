#include <doctest/doctest.h>

#include "quantize/registry.h"

using namespace smolq;

TEST_SUITE("test_registry") {
  TEST_CASE("every geometry row has a registry row and vice versa") {
    CHECK(all_types().size() == all_qtypes().size());
    for (const auto& g : all_types()) {
      const QTypeInfo& q = qtype(g.id);
      CHECK(q.geo == &g);
      CHECK(find_type(g.name) == &g);
      CHECK(find_type(static_cast<uint32_t>(g.id)) == &g);
      // A fallback is a type with a block that divides 256 (or the type itself).
      const auto& fb = type_info(q.fallback);
      CHECK((fb.id == g.id || fb.block_elems <= 32));
    }
  }
  TEST_CASE("bits per weight of well-known types") {
    CHECK(type_info(GgmlType::Q4_K).bits_per_weight() == 4.5);
    CHECK(type_info(GgmlType::Q6_K).bits_per_weight() == 6.5625);
    CHECK(type_info(GgmlType::IQ2_XXS).bits_per_weight() == 2.0625);
    CHECK(find_type("q4_k") == &type_info(GgmlType::Q4_K));
    CHECK(find_type("nope") == nullptr);
    CHECK(find_type(4u) == nullptr);  // retired id
  }
  TEST_CASE("row_bytes") {
    CHECK(*row_bytes(GgmlType::Q8_0, 576) == 18 * 34);
    CHECK_FALSE(row_bytes(GgmlType::Q4_K, 576).has_value());
    CHECK(*row_bytes(GgmlType::F16, 3) == 6);
  }
}
