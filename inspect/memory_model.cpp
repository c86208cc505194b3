// Memory model of llama.cpp's allocations (see memory_model.h and docs/estimate.md).
//
// Calibration: the compute-buffer terms below reproduce, to the printed 0.01 MiB, what
// llama.cpp's CPU backend reports for SmolLM2-135M (llama-cpp-python 0.3.x, n_ubatch 128 and
// 512, n_ctx 512-8192, flash attention off); tests/python/test_estimate_llama.py checks
// every buffer against the live load log.
#include "inspect/memory_model.h"

#include <algorithm>

#include "formats/error.h"

namespace smolq {
namespace {

constexpr uint64_t kF32 = 4;  // activations, logits, KQ scores and the f32 mask
constexpr uint64_t kF16 = 2;  // the KQ mask is f16 when flash attention is on

uint64_t round_up(uint64_t v, uint64_t m) { return (v + m - 1) / m * m; }

}  // namespace

const char* const kDecodeFormula =
    "tok/s = bandwidth x 0.55 / (weight bytes read per token + KV bytes at the context)";

uint64_t ComputeBreakdown::peak() const { return std::max({attention, ffn, output}); }

std::string ComputeBreakdown::dominant() const {
  const uint64_t p = peak();
  if (p == output) return "output";
  if (p == attention) return "attention";
  return "ffn";
}

bool is_valid_kv_type(GgmlType t) {
  switch (t) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q8_0: case GgmlType::Q4_0:
    case GgmlType::Q4_1: case GgmlType::IQ4_NL: case GgmlType::Q5_0: case GgmlType::Q5_1:
      return true;
    default:
      return false;
  }
}

uint64_t kv_cache_bytes(GgmlType t, uint64_t n) {
  auto b = row_bytes(t, n);
  if (!b) throw UsageError("a KV cache row of " + std::to_string(n) + " elements does not fill whole " +
                           std::string(type_info(t).name) + " blocks");
  return *b;
}

MemoryEstimate estimate_memory(const MemoryModelShape& m, const std::vector<GgufPlannedTensor>& tensors,
                               const RunParams& p_in) {
  MemoryEstimate e;
  e.params = p_in;
  RunParams& p = e.params;
  if (p.n_ctx == 0 || p.n_ubatch == 0 || p.n_seq == 0) throw UsageError("context, micro-batch and sequences must be positive");
  for (GgmlType t : {p.kv_type, p.v_type()})
    if (!is_valid_kv_type(t)) throw UsageError("llama.cpp has no KV cache of type " + std::string(type_info(t).name));
  // A quantized V cache only works inside the flash-attention kernel; llama.cpp turns it on
  // (or refuses to run), so the estimate assumes it.
  if (!type_info(p.v_type()).is_float) p.flash_attn = true;
  p.n_ubatch = std::min(p.n_ubatch, p.n_batch);

  e.n_ctx_cells = round_up(p.n_ctx, kKvCellPadding);
  e.n_tokens = std::min(e.n_ctx_cells, p.n_ubatch);
  const uint64_t n_kv = e.n_ctx_cells;
  const uint64_t T = e.n_tokens;

  // Model buffer: the tensor bytes (llama.cpp maps the data section; alignment padding between
  // tensors is not counted in its buffer size).
  for (const auto& t : tensors) e.weights += tensor_nbytes(t.type, t.shape, "tensor '" + t.name + "'");

  // KV cache: per layer, K and V rows of n_embd_k_gqa = n_head_kv x head_dim elements per cell.
  const uint64_t k_layer = kv_cache_bytes(p.kv_type, m.kv_dim()) * n_kv;
  const uint64_t v_layer = kv_cache_bytes(p.v_type(), m.kv_dim()) * n_kv;  // same width as K in these models
  e.kv_per_layer.assign(m.n_layer, k_layer + v_layer);
  e.kv_k = k_layer * m.n_layer;
  e.kv_v = v_layer * m.n_layer;

  // Compute buffer, phase by phase (f32 activations of T tokens):
  // - activations live during attention: the layer input and its norm (2 x n_embd), Q, the
  //   attention output before and after merging heads (3 x q_dim), and the new K and V
  //   (2 x kv_dim) — the set that matches llama.cpp's allocator to the byte;
  const uint64_t attn_act = kF32 * T * (2 * m.n_embd + 3 * m.q_dim() + 2 * m.kv_dim());
  // - the KQ mask input (n_kv x T padded), f32 without flash attention and f16 with it;
  const uint64_t mask = (p.flash_attn ? kF16 : kF32) * n_kv * round_up(T, kKqMaskPad);
  // - without flash attention the full score matrix KQ (n_kv x T x n_head, f32) is
  //   materialised; soft_max runs in place on it. Flash attention never materialises it.
  const uint64_t kq = p.flash_attn ? 0 : kF32 * n_kv * T * m.n_head;
  e.compute_parts.attention = kq + mask + attn_act;
  // - FFN: residual, its norm and the FFN input (3 x n_embd), gate and up (2 x n_ff);
  e.compute_parts.ffn = kF32 * T * (3 * m.n_embd + 2 * m.n_ff);
  // - output: logits for all T tokens (the worst-case graph makes every token an output)
  //   plus three n_embd-wide activations (last residual, final norm, and one more block the
  //   allocator keeps live once the context reaches ~2k cells).
  e.compute_parts.output = kF32 * T * m.n_vocab + kF32 * T * 3 * m.n_embd;
  e.compute = e.compute_parts.peak();

  // Output buffer: llama.cpp reserves logits + embeddings for one output per sequence at
  // load time (it grows later only if a batch asks for more outputs).
  e.output = kF32 * (m.n_vocab + m.n_embd) * p.n_seq;

  e.overhead = kLoaderOverheadBytes + kSchedulerOverheadBytes + kBytesPerVocabToken * m.n_vocab +
               kBytesPerMerge * m.n_merges;
  return e;
}

uint64_t bytes_read_per_token(const MemoryModelShape& m, const std::vector<GgufPlannedTensor>& tensors,
                              GgmlType kv_type, uint64_t n_ctx) {
  return bytes_read_per_token(m, tensors, kv_type, kv_type, n_ctx);
}

uint64_t bytes_read_per_token(const MemoryModelShape& m, const std::vector<GgufPlannedTensor>& tensors,
                              GgmlType k_type, GgmlType v_type, uint64_t n_ctx) {
  const bool has_output = std::any_of(tensors.begin(), tensors.end(),
                                      [](const GgufPlannedTensor& t) { return t.name == "output.weight"; });
  uint64_t w = 0;
  for (const auto& t : tensors) {
    const uint64_t b = tensor_nbytes(t.type, t.shape, "tensor '" + t.name + "'");
    if (has_output && t.name == "token_embd.weight") {
      w += b / std::max<uint64_t>(1, t.shape.size() > 1 ? t.shape[1] : 1);  // one gathered row
    } else {
      w += b;
    }
  }
  const uint64_t kv = m.n_layer * (kv_cache_bytes(k_type, m.kv_dim()) + kv_cache_bytes(v_type, m.kv_dim())) * n_ctx;
  return w + kv;
}

double decode_tokens_per_second(double bandwidth_gb_per_s, uint64_t bytes_per_token, double efficiency) {
  if (bytes_per_token == 0) return 0.0;
  return bandwidth_gb_per_s * 1e9 * efficiency / static_cast<double>(bytes_per_token);
}

}  // namespace smolq
