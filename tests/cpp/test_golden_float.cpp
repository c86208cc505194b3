// Golden vectors for the float types and Q8_0 (exact bytes: deterministic formulas).
#include <doctest/doctest.h>

#include "golden_support.h"
#include "quantize/registry.h"

using namespace smolq;
using namespace smolq::test;

TEST_SUITE("test_golden_float") {
  TEST_CASE("F16, BF16 and Q8_0 match ggml byte for byte, and decode exactly") {
    const auto& g = Golden::get();
    for (const char* name : {"F16", "BF16", "Q8_0"}) {
      CAPTURE(name);
      const QTypeInfo& q = *find_qtype(name);
      for (const char* var : {"plain", "imat"}) {
        const std::string tname = std::string("q.") + name + "." + var;
        auto ref = g.bytes(tname);
        std::vector<std::byte> mine(ref.size());
        quantize_rows(q.id(), g.input(), mine, Golden::kCols,
                      std::string(var) == "imat" ? std::span<const float>(g.imatrix()) : std::span<const float>());
        CHECK(std::memcmp(mine.data(), ref.data(), ref.size()) == 0);
        std::vector<float> dq(g.input().size());
        dequantize_rows(q.id(), ref, dq);
        auto want = g.floats(std::string("dq.") + name + "." + var);
        CHECK(std::memcmp(dq.data(), want.data(), dq.size() * 4) == 0);
      }
    }
  }
}
