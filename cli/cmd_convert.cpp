#include "cli/options.h"
#include "formats/error.h"

namespace smolq::cli {
int run_convert(const std::vector<std::string>& args) {
  throw Error("convert: not built yet");
}
}  // namespace smolq::cli
