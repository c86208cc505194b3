#include "cli/options.h"

#include <omp.h>

#include <cstdio>
#include <iostream>

#include "formats/error.h"

namespace smolq::cli {

ParsedArgs parse_args(const std::vector<std::string>& args, const std::string& usage,
                      po::options_description& opts,
                      const po::positional_options_description& positional) {
  opts.add_options()("help,h", "show this help");
  ParsedArgs out;
  try {
    po::store(po::command_line_parser(args).options(opts).positional(positional).run(), out.vm);
    if (out.vm.count("help")) {
      std::cout << "Usage: " << usage << "\n\n" << opts << "\n";
      out.help = true;
      return out;
    }
    po::notify(out.vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  return out;
}

int resolve_threads(int requested) {
  if (requested < 0) throw UsageError("--threads must be >= 0");
  return requested > 0 ? requested : omp_get_num_procs();
}

}  // namespace smolq::cli
