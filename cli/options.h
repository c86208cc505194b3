// Shared Boost.Program_options plumbing for the subcommands, and smolq's option vocabulary
// (docs/cli.md): llama.cpp's names wherever llama.cpp has the concept, the same name for the
// same thing in every command.
//
// The vocabulary lives here, in one place:
//   - kOpt* below: the Boost spellings ("long,s") every command uses for the shared concepts;
//   - kAliases (options.cpp): spellings Boost cannot parse itself (llama.cpp's multi-letter
//     single-dash options -ub, -ngl, -ctk, -ctv, -fa, -np) and older smolq spellings kept
//     working (--ctx, --batch, --out, ...), rewritten to the long names before Boost sees them;
//   - parse_args: --help, unknown options with the nearest valid name, -q/--quiet.
// Abbreviated long options are not guessed: an option is accepted under its documented
// spellings only, so the table in docs/cli.md is the whole truth (tests/python/test_cli_options.py).
#pragma once
#include <boost/program_options.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "mix/target_mix.h"

namespace smolq::cli {

namespace po = boost::program_options;

// Shared concepts, as llama.cpp spells them.
inline constexpr const char* kOptModel = "model,m";          // the model (also positional)
inline constexpr const char* kOptOutput = "output,o";        // the output file or folder
inline constexpr const char* kOptFile = "file,f";            // the text to read
inline constexpr const char* kOptCtxSize = "ctx-size,c";     // tokens of context / per chunk
inline constexpr const char* kOptBatchSize = "batch-size,b"; // logical batch
inline constexpr const char* kOptUbatchSize = "ubatch-size"; // physical micro-batch (-ub)
inline constexpr const char* kOptThreads = "threads,t";
inline constexpr const char* kOptImatrix = "imatrix";
inline constexpr const char* kOptQuiet = "quiet,q";          // no progress bar
inline constexpr const char* kOptJson = "json";              // machine-readable stdout
inline constexpr const char* kOptGpuLayers = "n-gpu-layers"; // -ngl
inline constexpr const char* kOptFlashAttn = "flash-attn";   // -fa
inline constexpr const char* kOptCacheTypeK = "cache-type-k";  // -ctk
inline constexpr const char* kOptCacheTypeV = "cache-type-v";  // -ctv

// A spelling rewritten to a long option before parsing. `commands`: comma-separated command
// names it applies to, or "" for every command.
struct OptionAlias {
  std::string_view spelling;   // "-ub", "--out"
  std::string_view canonical;  // "--ubatch-size", "--output"
  std::string_view commands;
};
std::vector<OptionAlias> option_aliases();

// `args` with every alias of `command` rewritten ("-ub 256" -> "--ubatch-size 256",
// "--ctx=1024" -> "--ctx-size=1024"); nothing after a bare "--" is touched.
std::vector<std::string> canonical_args(std::string_view command, const std::vector<std::string>& args);

struct ParsedArgs {
  po::variables_map vm;
  bool help = false;  // --help was given and printed: the command should return 0
};

// `command`: the subcommand's name (selects its aliases); `usage`: the one-line synopsis
// printed above the option list. Unknown options raise a UsageError naming the nearest valid
// option; --quiet (when the command has it) silences every progress bar. `visible`: what
// --help lists when `opts` also holds hidden options (positional collectors).
ParsedArgs parse_args(std::string_view command, const std::vector<std::string>& args, const std::string& usage,
                      po::options_description& opts, const po::positional_options_description& positional,
                      po::options_description* visible = nullptr);

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

// Lower-cased copy (type names and on/off values are case-insensitive everywhere).
std::string lower_ascii(std::string_view s);

}  // namespace smolq::cli
