#include "inspect/estimate_report.h"

#include <algorithm>

#include "formats/json_writer.h"
#include "inspect/text_format.h"

namespace smolq {
namespace {

// The type whose decode speed the all-devices table shows: the usual default quant when it
// is among the candidates, else the first candidate.
size_t reference_row(const EstimateResult& r) {
  for (size_t i = 0; i < r.rows.size(); ++i)
    if (r.rows[i].name == "Q4_K_M") return i;
  return 0;
}

std::string ctx_label(uint64_t c) { return c % 1024 == 0 ? std::to_string(c / 1024) + "k" : std::to_string(c); }

std::string speed(double tps) { return tps >= 100 ? fixed(tps, 0) : fixed(tps, 1); }

}  // namespace

double QuantSize::effective_bpw() const {
  return n_params ? 8.0 * static_cast<double>(tensor_bytes) / static_cast<double>(n_params) : 0.0;
}
double QuantSize::file_bpw() const {
  return n_params ? 8.0 * static_cast<double>(file_size) / static_cast<double>(n_params) : 0.0;
}

QuantSize size_of(const QuantCandidate& c) {
  QuantSize s;
  const GgufLayout L = plan_gguf_layout(c.metadata, c.tensors, c.alignment);
  s.file_size = L.file_size;
  s.header_bytes = L.header_bytes;
  for (size_t i = 0; i < c.tensors.size(); ++i) {
    s.tensor_bytes += L.n_bytes[i];
    uint64_t n = 1;
    for (uint64_t d : c.tensors[i].shape) n *= d;
    s.n_params += n;
    ++s.tensors_by_type[std::string(type_info(c.tensors[i].type).name)];
  }
  return s;
}

EstimateResult run_estimate(const EstimateRequest& req) {
  EstimateResult r;
  r.request = req;
  for (const auto& c : req.candidates) {
    CandidateResult row;
    row.name = c.name;
    row.size = size_of(c);
    row.requires_imatrix = c.requires_imatrix;
    row.n_fallback = c.n_fallback;
    row.fits.assign(req.devices.size(), {});
    for (uint64_t ctx : req.contexts) {
      RunParams p = req.run;
      p.n_ctx = ctx;
      MemoryEstimate m = estimate_memory(req.shape, c.tensors, p);
      const uint64_t bpt = bytes_read_per_token(req.shape, c.tensors, m.params.kv_type, ctx);
      for (size_t d = 0; d < req.devices.size(); ++d) {
        const Device& dev = *req.devices[d];
        row.fits[d].push_back({static_cast<double>(m.total()) <= dev.usable_bytes(),
                               decode_tokens_per_second(dev.bandwidth_gbs, bpt)});
      }
      row.memory.push_back(std::move(m));
      row.bytes_per_token.push_back(bpt);
    }
    r.rows.push_back(std::move(row));
  }
  return r;
}

std::string render_estimate_markdown(const EstimateResult& r) {
  const auto& q = r.request;
  std::string o = "# smolq estimate: " + q.model + "\n\n";
  if (r.rows.empty()) return o + "(no quant types)\n";
  const auto& m0 = r.rows[0].memory;
  const RunParams& rp = m0.empty() ? q.run : m0[0].params;
  o += "Run settings: micro-batch " + std::to_string(rp.n_ubatch) + ", KV cache " +
       std::string(type_info(rp.kv_type).name) + ", flash attention " + (rp.flash_attn ? "on" : "off") + ", " +
       std::to_string(rp.n_seq) + " sequence(s). Sizes in MiB = 2^20 bytes unless marked.\n\n";
  if (!q.metadata_exact) o += "Note: " + q.metadata_note + "\n\n";

  o += "## File size by quant type\n\n";
  o += "File size = header (metadata + tensor infos) padded to the alignment + every tensor padded "
       "to the alignment: the layout the GGUF writer uses, so the byte count is exact.\n\n";
  TextTable sizes{{"type", "file bytes", "MiB", "bpw (tensors)", "bpw (file)", "tensors by type", "fallbacks", "imatrix"},
                  {}, {false, true, true, true, true, false, true, false}};
  for (const auto& row : r.rows) {
    std::vector<std::pair<std::string, uint64_t>> tb(row.size.tensors_by_type.begin(), row.size.tensors_by_type.end());
    std::stable_sort(tb.begin(), tb.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    std::string mix;
    for (size_t i = 0; i < tb.size(); ++i) mix += (i ? ", " : "") + tb[i].first + " x" + std::to_string(tb[i].second);
    sizes.rows.push_back({row.name, with_commas(row.size.file_size), mib(row.size.file_size),
                          fixed(row.size.effective_bpw(), 3), fixed(row.size.file_bpw(), 3), mix,
                          std::to_string(row.n_fallback), row.requires_imatrix ? "required" : ""});
  }
  o += sizes.render(true);
  for (const auto& sk : q.skipped) o += "\nNot possible for this model: " + sk;
  if (!q.skipped.empty()) o += "\n";

  o += "\n## Memory by context (the same for every type)\n\n";
  TextTable ctx_t{{"context", "KV cells", "KV cache", "KV per layer", "compute buffer", "peak phase", "output buffer", "overhead"},
                  {}, {true, true, true, true, true, false, true, true}};
  for (const auto& m : m0)
    ctx_t.rows.push_back({std::to_string(m.params.n_ctx), std::to_string(m.n_ctx_cells), mib(m.kv()),
                          mib(m.kv_per_layer.empty() ? 0 : m.kv_per_layer[0], 3), mib(m.compute),
                          m.compute_parts.dominant(), mib(m.output), mib(m.overhead)});
  o += ctx_t.render(true);
  o += "\nFormulas (B = bytes per element of the cache type; q8_0 = 34/32, q4_0 = 18/32; T = min(n_ubatch, cells)):\n"
       "- KV cache = 2 x n_layer x cells x n_head_kv x head_dim x B, cells = n_ctx rounded up to 256\n"
       "- compute = max(attention, ffn, output) with\n"
       "  attention = 4 x cells x T x n_head (KQ scores, flash attention off) + mask (4 or 2 x cells x T) "
       "+ 4 x T x (2 n_embd + 3 n_head x head_dim + 2 n_head_kv x head_dim),\n"
       "  ffn = 4 x T x (3 n_embd + 2 n_ff), output = 4 x T x (n_vocab + 3 n_embd)\n"
       "- output buffer = 4 x (n_vocab + n_embd) x n_seq; overhead = 9 MiB + vocabulary tables (not printed by llama.cpp)\n";

  o += "\n## Total memory by type (MiB)\n\n";
  TextTable tot{{"type", "weights"}, {}, {false, true}};
  for (uint64_t c : q.contexts) {
    tot.header.push_back("total @" + ctx_label(c));
    tot.right_aligned.push_back(true);
  }
  for (const auto& row : r.rows) {
    std::vector<std::string> line{row.name, mib(row.memory.empty() ? 0 : row.memory[0].weights)};
    for (const auto& m : row.memory) line.push_back(mib(m.total()));
    tot.rows.push_back(std::move(line));
  }
  o += tot.render(true);

  if (!q.devices.empty()) {
    o += "\n## Devices\n\n";
    o += "Fits = total memory <= device memory x usable share (GPU 0.92, Apple 0.70, phone 0.50, SBC 0.80, PC 0.75).\n";
    o += std::string(kDecodeFormula) + " (GB = 10^9 bytes).\n\n";
    if (q.device_detail && q.devices.size() == 1) {
      const Device& d = *q.devices[0];
      o += "### " + std::string(d.name) + " (" + std::string(device_class_name(d.cls)) + ", " + fixed(d.memory_gb, 0) +
           " GB, " + fixed(d.bandwidth_gbs, 1) + " GB/s; " + std::string(d.source) + ")\n\n";
      TextTable t{{"type"}, {}, {false}};
      for (uint64_t c : q.contexts) {
        t.header.push_back("fits @" + ctx_label(c));
        t.header.push_back("tok/s @" + ctx_label(c));
        t.right_aligned.push_back(false);
        t.right_aligned.push_back(true);
      }
      for (const auto& row : r.rows) {
        std::vector<std::string> line{row.name};
        for (size_t ci = 0; ci < q.contexts.size(); ++ci) {
          line.push_back(row.fits[0][ci].fits ? "yes" : "no");
          line.push_back(speed(row.fits[0][ci].tokens_per_s));
        }
        t.rows.push_back(std::move(line));
      }
      o += t.render(true);
    } else {
      const size_t ref = reference_row(r);
      o += "Largest type that fits at each context, and the decode speed of " + r.rows[ref].name + ".\n\n";
      TextTable t{{"device", "class", "GB", "GB/s"}, {}, {false, false, true, true}};
      for (uint64_t c : q.contexts) {
        t.header.push_back("fits @" + ctx_label(c));
        t.header.push_back(r.rows[ref].name + " tok/s @" + ctx_label(c));
        t.right_aligned.push_back(false);
        t.right_aligned.push_back(true);
      }
      for (size_t d = 0; d < q.devices.size(); ++d) {
        const Device& dev = *q.devices[d];
        std::vector<std::string> line{std::string(dev.name), std::string(device_class_name(dev.cls)),
                                      fixed(dev.memory_gb, 0), fixed(dev.bandwidth_gbs, 1)};
        for (size_t ci = 0; ci < q.contexts.size(); ++ci) {
          size_t n_fit = 0, best = SIZE_MAX;
          for (size_t i = 0; i < r.rows.size(); ++i) {
            if (!r.rows[i].fits[d][ci].fits) continue;
            ++n_fit;
            if (best == SIZE_MAX || r.rows[i].size.file_size > r.rows[best].size.file_size) best = i;
          }
          std::string f = n_fit == 0 ? "none" : n_fit == r.rows.size() ? "all" : "up to " + r.rows[best].name;
          line.push_back(f);
          const auto& rf = r.rows[ref].fits[d][ci];
          line.push_back(rf.fits ? speed(rf.tokens_per_s) : "(" + speed(rf.tokens_per_s) + ", no fit)");
        }
        t.rows.push_back(std::move(line));
      }
      o += t.render(true);
    }
  }
  return o;
}

std::string render_estimate_json(const EstimateResult& r) {
  const auto& q = r.request;
  JsonWriter j;
  j.begin_object();
  j.field("model", q.model);
  j.field("metadata_exact", q.metadata_exact);
  if (!q.metadata_exact) j.field("metadata_note", q.metadata_note);
  j.key("shape").begin_object();
  j.field("n_vocab", q.shape.n_vocab).field("n_embd", q.shape.n_embd).field("n_layer", q.shape.n_layer);
  j.field("n_head", q.shape.n_head).field("n_head_kv", q.shape.n_head_kv).field("head_dim", q.shape.head_dim);
  j.field("n_ff", q.shape.n_ff).end_object();
  const RunParams& rp = !r.rows.empty() && !r.rows[0].memory.empty() ? r.rows[0].memory[0].params : q.run;
  j.key("run").begin_object();
  j.field("n_ubatch", rp.n_ubatch).field("n_batch", rp.n_batch).field("kv_type", type_info(rp.kv_type).name);
  j.field("flash_attn", rp.flash_attn).field("n_seq", rp.n_seq).end_object();
  j.key("contexts").begin_array();
  for (uint64_t c : q.contexts) j.value(c);
  j.end_array();
  j.key("decode_efficiency").value(kDecodeEfficiency, 6);
  j.field("decode_formula", kDecodeFormula);
  j.key("skipped").begin_array();
  for (const auto& sk : q.skipped) j.value(sk);
  j.end_array();
  j.key("types").begin_array();
  for (const auto& row : r.rows) {
    j.begin_object();
    j.field("type", row.name).field("file_bytes", row.size.file_size).field("header_bytes", row.size.header_bytes);
    j.field("tensor_bytes", row.size.tensor_bytes).field("parameters", row.size.n_params);
    j.key("bpw").value(row.size.effective_bpw(), 6);
    j.key("file_bpw").value(row.size.file_bpw(), 6);
    j.field("fallbacks", row.n_fallback).field("requires_imatrix", row.requires_imatrix);
    j.key("tensors_by_type").begin_object();
    for (const auto& [t, n] : row.size.tensors_by_type) j.field(t, n);
    j.end_object();
    j.key("memory").begin_array();
    for (size_t ci = 0; ci < row.memory.size(); ++ci) {
      const auto& m = row.memory[ci];
      j.begin_object();
      j.field("n_ctx", m.params.n_ctx).field("kv_cells", m.n_ctx_cells).field("n_tokens", m.n_tokens);
      j.field("weights", m.weights).field("kv_k", m.kv_k).field("kv_v", m.kv_v);
      j.field("kv_per_layer", m.kv_per_layer.empty() ? uint64_t{0} : m.kv_per_layer[0]);
      j.field("compute", m.compute).field("compute_attention", m.compute_parts.attention);
      j.field("compute_ffn", m.compute_parts.ffn).field("compute_output", m.compute_parts.output);
      j.field("output", m.output).field("overhead", m.overhead).field("total", m.total());
      j.field("bytes_read_per_token", row.bytes_per_token[ci]);
      j.end_object();
    }
    j.end_array();
    j.end_object();
  }
  j.end_array();
  j.key("devices").begin_array();
  for (size_t d = 0; d < q.devices.size(); ++d) {
    const Device& dev = *q.devices[d];
    j.begin_object();
    j.field("name", dev.name).field("class", device_class_name(dev.cls));
    j.key("memory_gb").value(dev.memory_gb, 6);
    j.key("bandwidth_gbs").value(dev.bandwidth_gbs, 6);
    j.key("usable_fraction").value(usable_memory_fraction(dev.cls), 6);
    j.field("source", dev.source);
    j.key("by_type").begin_array();
    for (const auto& row : r.rows) {
      j.begin_object().field("type", row.name);
      j.key("fits").begin_array();
      for (const auto& f : row.fits[d]) j.value(f.fits);
      j.end_array();
      j.key("tokens_per_s").begin_array();
      for (const auto& f : row.fits[d]) j.value(f.tokens_per_s, 6);
      j.end_array();
      j.end_object();
    }
    j.end_array();
    j.end_object();
  }
  j.end_array();
  j.end_object();
  return j.str() + "\n";
}

}  // namespace smolq
