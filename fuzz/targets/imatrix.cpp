// Fuzz target over importance-matrix files (GGUF or legacy .dat, chosen by the magic).
#include <cmath>

#include "formats/error.h"
#include "formats/imatrix.h"
#include "fuzz/targets/fuzz_support.h"
#include "fuzz/targets/fuzz_targets.h"

namespace smolq::fuzz {

int fuzz_imatrix(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("imatrix/input.imatrix", {reinterpret_cast<const char*>(data), size});
  ImatrixData d;
  try {
    d = read_imatrix(path);
  } catch (const Error&) {
    return 0;
  }
  // What the quantizer assumes of an accepted imatrix: whole matrices, finite weights.
  for (const auto& [name, e] : d.entries) {
    if (e.counts.empty() || e.sums.empty() || e.sums.size() != e.n_mat() * e.n_cols())
      fuzz_fail("entry '" + name + "': sums do not split into its matrices");
    for (float w : e.importance())
      if (!std::isfinite(w)) fuzz_fail("entry '" + name + "': non-finite importance");
  }
  return 0;
}

}  // namespace smolq::fuzz
