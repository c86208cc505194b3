#include "cli/commands.h"

#include <array>

namespace smolq::cli {

// Defined in cli/cmd_<name>.cpp.
int run_convert(const std::vector<std::string>& args);
int run_inspect(const std::vector<std::string>& args);
int run_estimate(const std::vector<std::string>& args);

std::span<const Command> commands() {
  static const std::array<Command, 3> kCommands{{
      {"convert", "Hugging Face checkpoint -> GGUF (F32/F16/BF16 and quantized types)", run_convert},
      {"inspect", "show what is inside a GGUF file, safetensors file or HF folder", run_inspect},
      {"estimate", "file size, memory and decode speed of every quant type, without quantizing", run_estimate},
  }};
  return kCommands;
}

}  // namespace smolq::cli
