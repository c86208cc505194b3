// libFuzzer entry point: one binary per target; SMOLQ_FUZZ_FN names the target function
// (fuzz/CMakeLists.txt sets it). Everything else lives in fuzz/targets.
#include <cstddef>
#include <cstdint>

#include "fuzz/targets/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return SMOLQ_FUZZ_FN(data, size); }
