#include "cli/options.h"

#include <omp.h>
#include <sys/stat.h>

#include <algorithm>
#include <typeinfo>

#include <cstdio>
#include <iostream>

#include "formats/error.h"
#include "formats/output_path.h"

namespace smolq::cli {
namespace {

// Boost parses "-1" into an unsigned option as 2^64 - 1 (lexical_cast wraps). Every option
// stored in an unsigned type is checked here, before the value is converted.
void reject_negative_unsigned(const po::parsed_options& parsed, const po::options_description& opts) {
  for (const auto& o : parsed.options) {
    if (o.string_key.empty() || o.value.empty()) continue;
    const po::option_description* d = opts.find_nothrow(o.string_key, false);
    if (!d) continue;
    const auto* typed = dynamic_cast<const po::typed_value_base*>(d->semantic().get());
    if (!typed) continue;
    const std::type_info& t = typed->value_type();
    const bool is_unsigned = t == typeid(unsigned) || t == typeid(unsigned long) || t == typeid(unsigned long long) ||
                             t == typeid(uint32_t) || t == typeid(uint64_t) || t == typeid(size_t);
    if (!is_unsigned) continue;
    for (const auto& v : o.value) {
      size_t i = v.find_first_not_of(" \t");
      if (i == std::string::npos || v[i] < '0' || v[i] > '9')
        throw UsageError("--" + o.string_key + " must be a non-negative integer (got '" + v + "')");
    }
  }
}

}  // namespace

ParsedArgs parse_args(const std::vector<std::string>& args, const std::string& usage,
                      po::options_description& opts,
                      const po::positional_options_description& positional) {
  opts.add_options()("help,h", "show this help");
  ParsedArgs out;
  try {
    const po::parsed_options parsed = po::command_line_parser(args).options(opts).positional(positional).run();
    reject_negative_unsigned(parsed, opts);
    po::store(parsed, out.vm);
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

int max_threads() {
  constexpr int kHardCap = 1024;
  return std::min(kHardCap, std::max(64, 4 * omp_get_num_procs()));
}

int resolve_threads(int requested) {
  if (requested < 0) throw UsageError("--threads must be >= 0");
  if (requested > max_threads())
    throw UsageError("--threads " + std::to_string(requested) + " is more than " + std::to_string(max_threads()) +
                     " (4 x the " + std::to_string(omp_get_num_procs()) + " cores, at least 64, at most 1024)");
  return requested > 0 ? requested : omp_get_num_procs();
}

void prepare_output(const std::string& path) {
  for (const auto& note : check_output_path(path)) std::fprintf(stderr, "note: %s\n", note.c_str());
}

void require_input(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw FormatError(path, "no such file or folder");
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
