// Facts about Llama-family attention weights that both the converter (convert/) and the
// reference forward pass (eval/) need, defined once so the file and its evaluation agree:
//   - llama3-style rope scaling factors (the values llama.cpp reads from rope_freqs.weight);
//   - the row order of Q and K: Hugging Face stores each head's rotary pairs as halves
//     (rotate-half: dimension i pairs with i + head_dim/2), llama.cpp as neighbours (2i, 2i+1).
#pragma once
#include <cstdint>
#include <vector>

#include "formats/model_config.h"

namespace smolq {

// Llama-3 rope scaling: one frequency factor per rotary pair (rope_dim / 2 values). Computed
// with float32 frequencies, as llama.cpp's converter does, so a converted file's
// rope_freqs.weight and an evaluation of the Hugging Face folder use the same numbers.
std::vector<float> llama3_rope_factors(const ModelConfig& c);

// Source (Hugging Face) row of output (llama.cpp) row `r` of a Q/K weight of `rows` rows and
// `n_heads` heads: within each head, output rows (2i, 2i+1) come from rows (i, i + head_dim/2).
uint64_t permuted_source_row(uint64_t r, uint64_t rows, uint64_t n_heads);

// The same permutation as a table: element r is permuted_source_row(r, n_head * head_dim, n_head).
std::vector<uint32_t> qk_row_order(uint64_t n_head, uint64_t head_dim);

}  // namespace smolq
