#include "cli/commands.h"

#include <array>

namespace smolq::cli {

// Defined in cli/cmd_<name>.cpp.
int run_convert(const std::vector<std::string>& args);
int run_quantize(const std::vector<std::string>& args);
int run_inspect(const std::vector<std::string>& args);
int run_estimate(const std::vector<std::string>& args);
int run_perplexity(const std::vector<std::string>& args);
int run_imatrix(const std::vector<std::string>& args);
int run_verify(const std::vector<std::string>& args);
int run_release(const std::vector<std::string>& args);

std::span<const Command> commands() {
  static const std::array<Command, 8> kCommands{{
      {"convert", "Hugging Face checkpoint -> GGUF (F32/F16/BF16 and quantized types)", run_convert},
      {"quantize", "GGUF -> GGUF in another file type (Q4_K_M, IQ4_XS, ...), with importance matrices", run_quantize},
      {"inspect", "show what is inside a GGUF file, safetensors file or HF folder", run_inspect},
      {"estimate", "file size, memory and decode speed of every quant type, without quantizing", run_estimate},
      {"perplexity", "perplexity of a text (llama.cpp's protocol), or KL divergence from a base model", run_perplexity},
      {"imatrix", "collect an importance matrix (llama.cpp's GGUF or .dat format) from a calibration text", run_imatrix},
      {"verify", "build several quants, measure each against the full model, write a report (md/json/html)", run_verify},
      {"release", "a folder ready to publish: the quant ladder, imatrix, model card with measurements, llama.cpp recipes, SHA256SUMS", run_release},
  }};
  return kCommands;
}

}  // namespace smolq::cli
