// Fuzz target over the data-safety checks (issue 13): `smolq inspect` as a gate and the
// non-finite scans, on arbitrary GGUF bytes.
//
// Properties checked, beyond "no crash, no exception that is not a smolq::Error":
//  - inspect_gguf + check_model + check_tensor_data never throw on content;
//  - the --json rendering of any report is valid JSON and valid UTF-8 (simdjson validates
//    both), whatever bytes the metadata strings hold;
//  - the vectorised scans agree with a scalar reference (std::isfinite on every value) on the
//    input bytes read as F32, F16 and BF16 arrays, first bad index included.
#include <simdjson.h>

#include <cmath>
#include <cstring>

#include "formats/error.h"
#include "formats/finite_scan.h"
#include "formats/half.h"
#include "fuzz/targets/fuzz_support.h"
#include "fuzz/targets/fuzz_targets.h"
#include "inspect/inspect_render.h"
#include "inspect/model_check.h"
#include "inspect/model_report.h"

namespace smolq::fuzz {
namespace {

template <typename T, typename ToFloat>
std::optional<uint64_t> reference_scan(const uint8_t* data, size_t n, ToFloat to_float) {
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, data + i * sizeof(T), sizeof(T));
    if (!std::isfinite(to_float(v))) return i;
  }
  return std::nullopt;
}

void check_scans(const uint8_t* data, size_t size) {
  const auto bytes = std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size);
  const auto f32 = find_non_finite_plain(GgmlType::F32, bytes, size / 4);
  if (f32 != reference_scan<float>(data, size / 4, [](float v) { return v; })) fuzz_fail("F32 scan disagrees with std::isfinite");
  const auto f16 = find_non_finite_plain(GgmlType::F16, bytes, size / 2);
  if (f16 != reference_scan<uint16_t>(data, size / 2, f16_to_f32)) fuzz_fail("F16 scan disagrees with std::isfinite");
  const auto bf16 = find_non_finite_plain(GgmlType::BF16, bytes, size / 2);
  if (bf16 != reference_scan<uint16_t>(data, size / 2, bf16_to_f32)) fuzz_fail("BF16 scan disagrees with std::isfinite");
}

}  // namespace

int fuzz_inspect_gate(const uint8_t* data, size_t size) {
  check_scans(data, size);
  const std::string path = write_scratch("gate.gguf", {reinterpret_cast<const char*>(data), size});
  InspectReport r = inspect_gguf(path);  // the scanner never throws on content
  check_model(r);
  if (!r.has_errors()) check_tensor_data(r);
  const std::string json = render_inspect_json(r, InspectView{});
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto err = parser.parse(json).get(root))
    fuzz_fail(std::string("inspect --json is not valid JSON/UTF-8: ") + simdjson::error_message(err));
  return 0;
}

}  // namespace smolq::fuzz
