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

void add_target_options(po::options_description& opts, TargetArgs& a) {
  opts.add_options()
      ("target-bpw", po::value<std::string>(&a.target_bpw), "measured mixed precision: choose every weight's type for at most B bits per weight (all tensor bytes x 8 / all elements)")
      ("target-size", po::value<std::string>(&a.target_size), "measured mixed precision: the whole file at most S (94371840, 90MiB, 94.4MB)")
      ("calib", po::value<std::string>(&a.calib), "calibration text for the sensitivity profile (default $SMOLQ_CALIB; not your evaluation text)")
      ("profile", po::value<std::string>(&a.profile), "sensitivity profile file (default: <output folder>/<model>.smolq-profile.json); reused when it matches")
      ("calib-ctx", po::value<int64_t>(&a.calib_ctx)->default_value(256), "profile: calibration tokens per chunk")
      ("calib-chunks", po::value<int64_t>(&a.calib_chunks)->default_value(1), "profile: chunks of the calibration text")
      ("profile-groups", po::value<int>(&a.profile_groups)->default_value(40), "profile: gain measurements at most (layers are grouped in bands to fit)")
      ("exclude-types", po::value<std::string>(&a.exclude_types), "types the allocator may not use, comma-separated (e.g. IQ4_NL,Q2_K); the profile is unchanged");
}

}  // namespace smolq::cli
