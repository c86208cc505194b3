// Fuzz targets over GGUF bytes: the strict reader (and what is built on its metadata) and
// the tolerant scanner of `smolq inspect`.
#include "formats/error.h"
#include "formats/gguf.h"
#include "formats/model_config.h"
#include "fuzz/targets/fuzz_support.h"
#include "fuzz/targets/fuzz_targets.h"
#include "inspect/gguf_scan.h"
#include "text/tokenizer.h"

namespace smolq::fuzz {
namespace {

// Touches the first and last byte of a view: ASan reports it if the view leaves the mapping.
uint8_t touch(const ByteView& v) {
  if (v.size() == 0) return 0;
  return static_cast<uint8_t>(v.data()[0]) ^ static_cast<uint8_t>(v.data()[v.size() - 1]);
}

}  // namespace

int fuzz_gguf(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("input.gguf", {reinterpret_cast<const char*>(data), size});
  std::unique_ptr<GgufReader> r;
  try {
    r = GgufReader::open(path);
  } catch (const Error&) {
    return 0;
  }
  // A file the reader accepted must keep its promises: every tensor inside the file, sizes
  // consistent with type and shape.
  volatile uint8_t sink = 0;
  for (const GgufTensorInfo& t : r->tensors()) {
    ByteView v = r->tensor_data(t);  // must not throw: the reader validated the extent
    if (v.size() != t.n_bytes) fuzz_fail("tensor '" + t.name + "' view size differs from n_bytes");
    if (r->data_offset() + t.offset + t.n_bytes > r->file_size()) fuzz_fail("tensor '" + t.name + "' ends past the file");
    sink = sink ^ touch(v);
  }
  for (const auto& [key, value] : r->metadata().entries()) {
    if (value.to_display().size() > (1u << 20)) fuzz_fail("display of '" + key + "' is unbounded");
  }
  try {
    (void)config_from_gguf(r->metadata(), path);
  } catch (const Error&) {
  }
  try {
    const Tokenizer tok = Tokenizer::from_gguf(r->metadata(), path);
    const std::vector<int32_t> ids = tok.encode("Hello, world! 123 <|im_start|>user\n", true, true);
    (void)tok.decode(ids);
  } catch (const Error&) {
  }
  return 0;
}

int fuzz_gguf_scan(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("scan.gguf", {reinterpret_cast<const char*>(data), size});
  // The scanner reports problems as findings; only an unopenable file may throw, and ours
  // always opens. So any exception at all is a finding here.
  const GgufScan s = scan_gguf(path);
  if (s.header_complete && s.tensors.size() != s.declared_tensors) fuzz_fail("complete header with a missing tensor");
  for (const auto& f : s.findings) (void)severity_name(f.severity);
  for (const auto& [key, value] : s.metadata.entries()) (void)value.to_display();
  return 0;
}

}  // namespace smolq::fuzz
