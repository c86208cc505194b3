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

// Worker threads to use: --threads value, or the machine's cores when 0. More than
// max_threads() is a UsageError (an OpenMP runtime asked for 100000 threads dies inside
// thread creation, not with an error we could report).
int resolve_threads(int requested);
int max_threads();

// Apply the output policy (formats/output_path.h) to `path` before any work: a refused
// destination or an unwritable folder fails now, not after minutes of quantizing. Notes
// (stale temporary files removed) are printed on stderr.
void prepare_output(const std::string& path);

// An input file or folder that must exist: FormatError "PATH: no such file or folder"
// (exit code 1, as every other unreadable input).
void require_input(const std::string& path);

}  // namespace smolq::cli
