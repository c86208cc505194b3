// Pieces shared by the commands that write models (convert, quantize): option handling for
// llama-quantize's per-tensor overrides, progress display, closing summary.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "cli/options.h"
#include "quantize/mixtures.h"
#include "quantize/model_writer.h"

namespace smolq::cli {

void print_file_types();
void fill_mixture_options(MixtureOptions& m, const po::variables_map& vm, const std::vector<std::string>& tensor_types,
                          const std::string& output_tensor_type, const std::string& token_embedding_type);
std::function<void(const WriteProgress&)> progress_printer(bool enabled);
void print_write_summary(const std::string& path, const WriteResult& w, double seconds, int threads, int imatrix_used);
// --json: the same summary as one JSON object on stdout, plus `extra` string fields (convert's
// size label and pre-tokenizer), so scripts learn the output name convert chose.
void print_write_summary_json(const std::string& path, const WriteResult& w, double seconds, int threads, int imatrix_used,
                              const std::vector<std::pair<std::string, std::string>>& extra = {});
std::string human_bytes(uint64_t b);

}  // namespace smolq::cli
