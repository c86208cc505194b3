// The subcommand table. Each command lives in its own cli/cmd_<name>.cpp, parses its
// options with Boost.Program_options and calls into the library layers.
#pragma once
#include <span>
#include <string>
#include <vector>

namespace smolq::cli {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const std::vector<std::string>& args);
};

std::span<const Command> commands();

}  // namespace smolq::cli
