// `smolq inspect` as a gate: the checks llama.cpp's loader makes before it runs a llama or
// smollm3 model, applied to an InspectReport, so a file inspect passes is one llama.cpp loads.
//
// GGUF (what llama_model_loader / llm_build_* / llama_vocab check):
//  - hyperparameters readable and consistent (positive sizes, heads divisible by KV heads,
//    head width, training context > 0, finite epsilon and RoPE base);
//  - every tensor the architecture needs, with exactly the shape llama.cpp creates it with,
//    for every layer below block_count; no tensor llama.cpp would not create (its "wrong number
//    of tensors" error), in particular no blk.N at or past block_count;
//  - tokenizer: tokenizer.ggml.model and tokens present, token_type / scores as long as tokens,
//    merges for BPE, token_embd rows = vocabulary size, special token ids inside it.
// Hugging Face folder (what `smolq convert` and the Python converters need):
//  - config.json readable and supported; the weights it describes present with its shapes
//    (layer count, widths, vocabulary), lm_head.weight when tie_word_embeddings is false, no
//    weight the converter would not map; tokenizer.json with a vocabulary no larger than the
//    embedding.
// Findings are appended to the report (kError: llama.cpp or the converter would refuse).
#pragma once
#include <cstdint>
#include <string>

#include "inspect/model_report.h"

namespace smolq {

void check_model(InspectReport& r);

// `smolq inspect --check-data`: read every tensor and report NaN/Inf values, one finding per
// tensor naming the first bad element (quantized tensors are dequantised block by block).
// Returns the number of tensors scanned.
uint64_t check_tensor_data(InspectReport& r);

// Files up to this size are scanned by default (`--check-data auto`): about a second of reading.
constexpr uint64_t kAutoCheckDataBytes = 2ull << 30;

}  // namespace smolq
