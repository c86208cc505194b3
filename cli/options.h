// Shared Boost.Program_options plumbing for the subcommands: parse, --help, errors as
// UsageError (exit code 2 in main).
#pragma once
#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "mix/target_mix.h"

namespace smolq::cli {

namespace po = boost::program_options;

struct ParsedArgs {
  po::variables_map vm;
  bool help = false;  // --help was given and printed: the command should return 0
};

// `usage` is the one-line synopsis printed above the option list.
ParsedArgs parse_args(const std::vector<std::string>& args, const std::string& usage,
                      po::options_description& opts,
                      const po::positional_options_description& positional);

// --target-bpw / --target-size and the profile options of `quantize` and `convert`.
void add_target_options(po::options_description& opts, TargetArgs& a);

// Worker threads to use: --threads value, or the machine's cores when 0.
int resolve_threads(int requested);

}  // namespace smolq::cli
