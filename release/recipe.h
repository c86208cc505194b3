// The llama.cpp recipe of a mixed-precision file: a text file `llama-quantize
// --tensor-type-file` accepts, so that stock llama.cpp rebuilds the same per-tensor types from
// the F16 file and the same importance matrix:
//
//   llama-quantize --imatrix M.imatrix.gguf --tensor-type-file M-Q4_K_M-target.tensor-types.txt
//                  M-F16.gguf M-Q4_K_M-target.gguf Q4_K_M
//
// What llama-quantize does with the file (tools/quantize/quantize.cpp, src/llama-quant.cpp of
// the pinned llama.cpp; facts, not code):
//   - the file is read as whitespace-separated words, each `PATTERN=TYPE`; there is no comment
//     syntax (a word without '=' stops the tool), so the recipe holds nothing else;
//   - PATTERN is lower-cased and compiled as a std::regex; a tensor takes the TYPE of the first
//     pattern that std::regex_search finds in its name, and then skips the file type's mixture
//     rules. We anchor every pattern (^...$) and escape its dots, so one line names one tensor;
//   - TYPE is a ggml type name, compared without regard to case;
//   - after an override, llama-quantize still applies its own fallback when the row length is
//     not a multiple of the type's block (Q4_K -> Q5_0 on SmolLM2-135M's 576-wide rows). The
//     recipe names the types the file really holds (after smolq's own fallbacks), which all
//     fit their rows, so that fallback never fires and the types come out as listed;
//   - 1-D tensors (norms) and tensors llama-quantize never quantizes are left as they are; the
//     recipe lists only the 2-D (and higher) weights, every one of them.
#pragma once
#include <string>

#include "formats/gguf.h"

namespace smolq {

// `^blk\.0\.attn_q\.weight$`: the name as an anchored regex matching only itself.
std::string tensor_name_regex(const std::string& name);

// The recipe of the file `r`: one `^name$=type` line per weight with two or more dimensions,
// in file order, ggml type names in lower case.
std::string tensor_type_recipe(const GgufReader& r);

}  // namespace smolq
