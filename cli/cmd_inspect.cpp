#include "cli/options.h"
#include "formats/error.h"

namespace smolq::cli {
int run_inspect(const std::vector<std::string>& args) {
  throw Error("inspect: not built yet");
}
}  // namespace smolq::cli
