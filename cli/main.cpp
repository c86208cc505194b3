// smolq entry point: dispatches to subcommands; the only place that catches errors and
// chooses exit codes (see formats/error.h for the policy).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <unistd.h>

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

// OpenMP threads that wait for work sleep instead of spinning, unless the user set
// OMP_WAIT_POLICY. The forward pass opens a parallel region per matrix product and the
// quantizer's sensitivity pass one per tensor; between regions libgomp's default keeps idle
// threads spinning for milliseconds, and on a machine shared with other jobs the spinning
// threads take the CPU from the working one: `smolq perplexity` (F16 SmolLM2-135M, 2 x 256
// tokens, 2 threads, load average 18) took 27.6 s wall / 8.2 s CPU spinning and 3.5 s / 1.8 s
// sleeping. libgomp reads the variable once, before main(), so the process sets it and
// re-executes itself (same pid, same arguments; if exec fails it simply goes on spinning).
void passive_openmp_waits(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (setenv("OMP_WAIT_POLICY", "PASSIVE", 0) != 0) return;
  execv("/proc/self/exe", argv);
}

}  // namespace

int main(int argc, char** argv) {
  passive_openmp_waits(argv);
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
