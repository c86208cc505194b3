// Llama rope scaling factors and the Q/K row permutation (see rope_layout.h).
#include "formats/rope_layout.h"

#include <cmath>
#include <numbers>

namespace smolq {

std::vector<float> llama3_rope_factors(const ModelConfig& c) {
  const auto& rs = c.rope_scaling;
  const double factor = rs.factor;
  const double lo = rs.low_freq_factor, hi = rs.high_freq_factor;
  const double old_ctx = rs.original_context ? static_cast<double>(rs.original_context) : 8192.0;
  const double lo_wavelen = old_ctx / lo, hi_wavelen = old_ctx / hi;
  std::vector<float> out;
  for (uint64_t i = 0; i < c.rope_dim; i += 2) {
    // Frequencies as float32, the way the reference computes them.
    const float freq = 1.0f / std::pow(static_cast<float>(c.rope_theta), static_cast<float>(i) / static_cast<float>(c.rope_dim));
    const double wavelen = 2 * std::numbers::pi / freq;
    if (wavelen < hi_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > lo_wavelen) {
      out.push_back(static_cast<float>(factor));
    } else {
      const double smooth = (old_ctx / wavelen - lo) / (hi - lo);
      out.push_back(static_cast<float>(1.0 / ((1 - smooth) / factor + smooth)));
    }
  }
  return out;
}

uint64_t permuted_source_row(uint64_t r, uint64_t rows, uint64_t n_heads) {
  const uint64_t hd = rows / n_heads;  // rows per head
  const uint64_t half = hd / 2;
  const uint64_t h = r / hd, within = r % hd;
  const uint64_t i = within / 2, j = within % 2;  // output (h, i, j) <- input (h, j, i)
  return h * hd + j * half + i;
}

std::vector<uint32_t> qk_row_order(uint64_t n_head, uint64_t head_dim) {
  const uint64_t rows = n_head * head_dim;
  std::vector<uint32_t> order(rows);
  for (uint64_t r = 0; r < rows; ++r) order[r] = static_cast<uint32_t>(permuted_source_row(r, rows, n_head));
  return order;
}

}  // namespace smolq
