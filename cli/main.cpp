// smolq entry point: dispatches to subcommands; the only place that catches errors and
// chooses exit codes (see formats/error.h for the policy).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "formats/error.h"
#include "formats/suggest.h"

namespace {

void print_usage(FILE* out) {
  std::fprintf(out,
               "smolq %s — Hugging Face checkpoints to GGUF, every llama.cpp quant, measured.\n\n"
               "Usage: smolq <command> [options]\n\nCommands:\n",
               SMOLQ_VERSION);
  for (const auto& c : smolq::cli::commands()) std::fprintf(out, "  %-12s %s\n", c.name, c.summary);
  std::fprintf(out, "\nRun `smolq <command> --help` (or `smolq help <command>`) for a command's options;\n"
                   "docs/cli.md lists every option with its llama.cpp spelling.\n");
}

const smolq::cli::Command* find_command(const std::string& name) {
  for (const auto& c : smolq::cli::commands())
    if (name == c.name) return &c;
  return nullptr;
}

std::string nearest_command(const std::string& typed) {
  std::vector<std::string> names;
  for (const auto& c : smolq::cli::commands()) names.emplace_back(c.name);
  return smolq::did_you_mean(typed, names);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if ((cmd == "help" || cmd == "--help" || cmd == "-h") && !args.empty()) {
    // `smolq help CMD` is `smolq CMD --help`.
    cmd = args[0];
    args = {"--help"};
    if (!find_command(cmd)) {
      std::fprintf(stderr, "smolq: unknown command '%s'%s\n", cmd.c_str(), nearest_command(cmd).c_str());
      return 2;
    }
  } else if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    print_usage(stdout);
    return 0;
  }
  if (cmd == "--version" || cmd == "-V") {
    std::printf("smolq %s\n", SMOLQ_VERSION);
    return 0;
  }
  if (const smolq::cli::Command* found = find_command(cmd)) {
    const auto& c = *found;
    try {
      return c.run(args);
    } catch (const smolq::Interrupted& e) {
      std::fprintf(stderr, "smolq %s: interrupted, nothing was written\n", c.name);
      return 128 + e.signal();
    } catch (const smolq::UsageError& e) {
      std::fprintf(stderr, "smolq %s: %s (see `smolq %s --help`)\n", c.name, e.what(), c.name);
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "smolq %s: error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "smolq: unknown command '%s'%s\n\n", cmd.c_str(), nearest_command(cmd).c_str());
  print_usage(stderr);
  return 2;
}
