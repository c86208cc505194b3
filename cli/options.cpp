#include "cli/options.h"

#include <omp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <iostream>
#include <typeinfo>

#include "cli/progress.h"
#include "formats/error.h"
#include "formats/suggest.h"
#include "formats/output_path.h"

namespace smolq::cli {
namespace {

// llama.cpp's multi-letter single-dash options (Boost reads "-ub" as "-u b"), and the
// spellings smolq used before the vocabulary was unified. docs/cli.md lists them all.
constexpr OptionAlias kAliases[] = {
    {"-ub", "--ubatch-size", ""},
    // No command takes -ngl (docs/cli.md says why); mapped anyway so that it is refused by its
    // name instead of being read as "-n gl" by verify's -n.
    {"-ngl", "--n-gpu-layers", ""},
    {"--gpu-layers", "--n-gpu-layers", ""},
    {"-fa", "--flash-attn", ""},
    {"-ctk", "--cache-type-k", ""},
    {"-ctv", "--cache-type-v", ""},
    {"-np", "--parallel", ""},
    {"--ctx", "--ctx-size", ""},
    {"--out", "--output", ""},
    {"--predict", "--n-predict", ""},
    {"--outfile", "--output", "convert"},  // llama.cpp's convert_hf_to_gguf.py
    {"--model-name", "--name", "convert"},  // convert_hf_to_gguf.py
    // estimate's --batch sized the micro-batch (llama.cpp's -ub); elsewhere it was -b.
    {"--batch", "--ubatch-size", "estimate"},
    {"--batch", "--batch-size", "perplexity,imatrix,verify"},
    {"--from-chunk", "--chunk", "imatrix"},  // llama-imatrix's second spelling
};

bool applies(const OptionAlias& a, std::string_view command) {
  if (a.commands.empty()) return true;
  std::string_view rest = a.commands;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    if (rest.substr(0, comma) == command) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

// Every spelling a user could have meant: the options' long and short names and the aliases.
std::vector<std::string> option_spellings(std::string_view command, const po::options_description& opts) {
  std::vector<std::string> out;
  for (const auto& o : opts.options()) {
    out.push_back("--" + o->long_name());
    const std::string shown = o->format_name();  // "-t [ --threads ]" when a short name exists
    if (shown.size() >= 2 && shown[0] == '-' && shown[1] != '-') out.push_back(shown.substr(0, 2));
  }
  // An alias is offered only where the option it stands for exists.
  for (const auto& a : kAliases)
    if (applies(a, command) && std::find(out.begin(), out.end(), std::string(a.canonical)) != out.end())
      out.emplace_back(a.spelling);
  return out;
}

// An option named as the user typed it: "'-ub' (= --ubatch-size)" when an alias was rewritten
// to `canonical` ("--ubatch-size"), else "'--ubatch-size'".
std::string as_typed(std::string_view command, const std::vector<std::string>& args, const std::string& canonical) {
  for (const auto& a : kAliases)
    if (applies(a, command) && a.canonical == canonical &&
        std::any_of(args.begin(), args.end(), [&](const std::string& x) {
          return x == a.spelling || x.rfind(std::string(a.spelling) + "=", 0) == 0;
        }))
      return "'" + std::string(a.spelling) + "' (= " + canonical + ")";
  return "'" + canonical + "'";
}

// Boost parses "-1" into an unsigned option as 2^64 - 1 (lexical_cast wraps). Every option
// stored in an unsigned type is checked here, before the value is converted.
void reject_negative_unsigned(std::string_view command, const std::vector<std::string>& args,
                              const po::parsed_options& parsed, const po::options_description& opts) {
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
        throw UsageError(as_typed(command, args, "--" + o.string_key) + " must be a non-negative integer (got '" + v + "')");
    }
  }
}

}  // namespace

std::vector<OptionAlias> option_aliases() { return {std::begin(kAliases), std::end(kAliases)}; }

std::vector<std::string> canonical_args(std::string_view command, const std::vector<std::string>& args) {
  std::vector<std::string> out;
  out.reserve(args.size());
  bool rest_positional = false;
  for (const auto& a : args) {
    if (rest_positional || a == "--") {
      rest_positional = true;
      out.push_back(a);
      continue;
    }
    std::string mapped = a;
    for (const auto& al : kAliases) {
      if (!applies(al, command)) continue;
      if (a == al.spelling) {
        mapped = al.canonical;
        break;
      }
      if (a.size() > al.spelling.size() && a.compare(0, al.spelling.size(), al.spelling) == 0 &&
          a[al.spelling.size()] == '=') {
        mapped = std::string(al.canonical) + a.substr(al.spelling.size());
        break;
      }
    }
    out.push_back(std::move(mapped));
  }
  return out;
}

ParsedArgs parse_args(std::string_view command, const std::vector<std::string>& args, const std::string& usage,
                      po::options_description& opts, const po::positional_options_description& positional,
                      po::options_description* visible) {
  opts.add_options()("help,h", "show this help");
  if (visible) visible->add_options()("help,h", "show this help");
  ParsedArgs out;
  // The default style minus allow_guessing: "--thread" is an error with a suggestion, not a
  // silent prefix match that a later option could make ambiguous.
  const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
  try {
    const po::parsed_options parsed = po::command_line_parser(canonical_args(command, args))
                                          .options(opts)
                                          .positional(positional)
                                          .style(style)
                                          .run();
    reject_negative_unsigned(command, args, parsed, opts);
    po::store(parsed, out.vm);
    if (out.vm.count("help")) {
      std::cout << "Usage: " << usage << "\n\n" << (visible ? *visible : opts) << "\n";
      out.help = true;
      return out;
    }
    po::notify(out.vm);
  } catch (const po::unknown_option& e) {
    const std::string name = e.get_option_name();
    // Name the option as the user typed it: "-ngl", not the "--n-gpu-layers" it was rewritten to.
    throw UsageError("unknown option " + as_typed(command, args, name) +
                     did_you_mean(name, option_spellings(command, visible ? *visible : opts)));
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  if (out.vm.count("quiet")) ProgressBar::set_quiet(true);
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

std::string lower_ascii(std::string_view s) {
  std::string o(s);
  for (auto& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
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
