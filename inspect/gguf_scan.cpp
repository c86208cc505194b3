// Tolerant GGUF header scanner (see gguf_scan.h). Every length and count read from the file
// is checked against the bytes that remain before anything is allocated, exactly as the
// strict reader does; the difference is that a problem becomes a Finding and the scan goes
// on wherever the layout still allows it.
#include "inspect/gguf_scan.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <unordered_set>

#include "formats/checked.h"
#include "formats/error.h"
#include "formats/mapped_file.h"

namespace smolq {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32

// Internal signal: the layout cannot be followed past `offset`.
struct StopScan {
  uint64_t offset;
  std::string message;
};

// Sequential reader over the mapped bytes; every read is bounds-checked and a short read
// raises StopScan (never FormatError: the scanner reports instead of throwing).
class Cursor {
 public:
  Cursor(const std::byte* data, uint64_t size) : data_(data), size_(size) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  template <class T>
  T get(const char* what) {
    if (remaining() < sizeof(T))
      throw StopScan{pos_, std::string(what) + " is cut off by the end of the file (" + hex_offset(size_) + ")"};
    T t;
    std::memcpy(&t, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return t;
  }
  std::string get_string(const char* what) {
    const uint64_t at = pos_;
    const uint64_t n = get<uint64_t>(what);
    if (n > GgufLimits::kMaxStringBytes)
      throw StopScan{at, std::string(what) + " claims " + std::to_string(n) + " bytes, over the " +
                             std::to_string(GgufLimits::kMaxStringBytes) + "-byte limit"};
    if (n > remaining())
      throw StopScan{at, std::string(what) + " of " + std::to_string(n) + " bytes runs past the end of the file"};
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  const std::byte* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

// Smallest encoded size of one element of type t, to bound array counts before allocating.
uint64_t min_elem_bytes(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::STRING: return 8;   // the u64 length alone
    case GgufType::ARRAY: return 12;   // u32 element type + u64 count
    default: return 8;
  }
}

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::FLOAT64); }

GgufValue read_value(Cursor& c, GgufType t, uint32_t depth, const std::string& key, GgufScan& out) {
  switch (t) {
    case GgufType::UINT8: return GgufValue::u8(c.get<uint8_t>("u8 value"));
    case GgufType::INT8: return GgufValue::i8(c.get<int8_t>("i8 value"));
    case GgufType::UINT16: return GgufValue::u16(c.get<uint16_t>("u16 value"));
    case GgufType::INT16: return GgufValue::i16(c.get<int16_t>("i16 value"));
    case GgufType::UINT32: return GgufValue::u32(c.get<uint32_t>("u32 value"));
    case GgufType::INT32: return GgufValue::i32(c.get<int32_t>("i32 value"));
    case GgufType::FLOAT32: return GgufValue::f32(c.get<float>("f32 value"));
    case GgufType::UINT64: return GgufValue::u64(c.get<uint64_t>("u64 value"));
    case GgufType::INT64: return GgufValue::i64(c.get<int64_t>("i64 value"));
    case GgufType::FLOAT64: return GgufValue::f64(c.get<double>("f64 value"));
    case GgufType::BOOL: {
      const uint64_t at = c.pos();
      const uint8_t b = c.get<uint8_t>("bool value");
      if (b > 1)
        out.findings.push_back({Severity::kWarning, at,
                                "key '" + key + "': bool byte " + std::to_string(b) + " is neither 0 nor 1"});
      return GgufValue::boolean(b != 0);
    }
    case GgufType::STRING: return GgufValue::str(c.get_string("string value"));
    case GgufType::ARRAY: {
      const uint64_t at = c.pos();
      if (depth >= GgufLimits::kMaxArrayDepth) throw StopScan{at, "key '" + key + "': arrays nested too deeply"};
      const uint32_t et = c.get<uint32_t>("array element type");
      if (!valid_value_type(et))
        throw StopScan{at, "key '" + key + "': unknown array element type " + std::to_string(et)};
      const uint64_t cnt_at = c.pos();
      const uint64_t n = c.get<uint64_t>("array length");
      if (n > GgufLimits::kMaxArrayItems)
        throw StopScan{cnt_at, "key '" + key + "': array of " + std::to_string(n) + " items exceeds the limit of " +
                                   std::to_string(GgufLimits::kMaxArrayItems)};
      auto need = checked_mul(n, min_elem_bytes(static_cast<GgufType>(et)));
      if (!need || *need > c.remaining())
        throw StopScan{cnt_at, "key '" + key + "': array of " + std::to_string(n) + " items runs past the end of the file"};
      std::vector<GgufValue> items;
      items.reserve(n);
      for (uint64_t i = 0; i < n; ++i) items.push_back(read_value(c, static_cast<GgufType>(et), depth + 1, key, out));
      return GgufValue::array(static_cast<GgufType>(et), std::move(items));
    }
  }
  throw StopScan{c.pos(), "key '" + key + "': unknown value type " + std::to_string(static_cast<uint32_t>(t))};
}

// Keys the GGUF spec / llama.cpp define outside the `<arch>.` namespace.
constexpr std::array<std::string_view, 62> kGlobalKeys{{
    "general.architecture", "general.quantization_version", "general.alignment", "general.name",
    "general.author", "general.version", "general.organization", "general.finetune", "general.basename",
    "general.description", "general.quantized_by", "general.size_label", "general.license",
    "general.license.name", "general.license.link", "general.url", "general.doi", "general.uuid",
    "general.repo_url", "general.tags", "general.languages", "general.datasets", "general.file_type",
    "general.type", "general.source.url", "general.source.doi", "general.source.uuid",
    "general.source.repo_url", "general.source.huggingface.repository", "general.base_model.count",
    "general.dataset.count", "general.sampling.sequence", "general.sampling.top_k", "general.sampling.top_p",
    "general.sampling.min_p", "general.sampling.temp",
    "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
    "tokenizer.ggml.token_type_count", "tokenizer.ggml.scores", "tokenizer.ggml.merges",
    "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_sep_token",
    "tokenizer.ggml.add_space_prefix", "tokenizer.ggml.remove_extra_whitespaces",
    "tokenizer.ggml.precompiled_charsmap", "tokenizer.huggingface.json", "tokenizer.rwkv.world",
    "tokenizer.chat_template", "tokenizer.chat_templates",
    "quantize.imatrix.file", "quantize.imatrix.dataset", "quantize.imatrix.entries_count",
    "quantize.imatrix.chunks_count", "split.no", "split.count", "split.tensors.count",
    "general.source.organization", "general.source.name",
}};

// Per-architecture hyperparameter names (the part after `<arch>.`).
constexpr std::array<std::string_view, 58> kArchKeys{{
    "vocab_size", "context_length", "embedding_length", "embedding_length_out", "block_count",
    "leading_dense_block_count", "feed_forward_length", "expert_feed_forward_length",
    "expert_shared_feed_forward_length", "use_parallel_residual", "tensor_data_layout", "expert_count",
    "expert_used_count", "expert_shared_count", "expert_weights_scale", "expert_weights_norm",
    "expert_gating_func", "pooling_type", "logit_scale", "decoder_start_token_id", "attn_logit_softcapping",
    "final_logit_softcapping", "swin_norm", "rescale_every_n_layers", "time_mix_extra_dim",
    "time_decay_extra_dim", "residual_scale", "embedding_scale", "token_shift_count", "interleave_moe_layer_step",
    "attention.head_count", "attention.head_count_kv", "attention.max_alibi_bias", "attention.clamp_kqv",
    "attention.key_length", "attention.value_length", "attention.layer_norm_epsilon",
    "attention.layer_norm_rms_epsilon", "attention.group_norm_epsilon", "attention.group_norm_groups",
    "attention.causal", "attention.q_lora_rank", "attention.kv_lora_rank", "attention.relative_buckets_count",
    "attention.sliding_window", "attention.scale", "rope.dimension_count", "rope.dimension_sections",
    "rope.freq_base", "rope.scaling.type", "rope.scaling.factor", "rope.scaling.attn_factor",
    "rope.scaling.original_context_length", "rope.scaling.finetuned", "rope.scaling.yarn_log_multiplier",
    "ssm.conv_kernel", "ssm.inner_size", "ssm.state_size",
}};

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

}  // namespace

std::string_view severity_name(Severity s) {
  switch (s) {
    case Severity::kInfo: return "info";
    case Severity::kWarning: return "warning";
    case Severity::kError: return "error";
  }
  return "?";
}

bool GgufScan::has_errors() const { return count(Severity::kError) > 0; }

size_t GgufScan::count(Severity s) const {
  return static_cast<size_t>(std::count_if(findings.begin(), findings.end(), [s](const Finding& f) { return f.severity == s; }));
}

bool is_known_gguf_key(std::string_view key, std::string_view arch) {
  for (auto k : kGlobalKeys)
    if (key == k) return true;
  // Families of keys with free-form suffixes: general.base_model.N.*, general.dataset.N.*,
  // tokenizer.ggml.*_token_id, tokenizer.chat_template.<name>, and our own provenance keys.
  if (starts_with(key, "general.base_model.") || starts_with(key, "general.dataset.") ||
      starts_with(key, "tokenizer.chat_template.") || starts_with(key, "smolq."))
    return true;
  if (starts_with(key, "tokenizer.ggml.") && key.size() > 9 && key.substr(key.size() - 9) == "_token_id") return true;
  if (!arch.empty() && key.size() > arch.size() + 1 && starts_with(key, arch) && key[arch.size()] == '.') {
    const std::string_view rest = key.substr(arch.size() + 1);
    for (auto k : kArchKeys)
      if (rest == k) return true;
  }
  return false;
}

namespace {

void add_finding(GgufScan& s, Severity sev, uint64_t off, std::string msg) {
  s.findings.push_back({sev, off, std::move(msg)});
}

// Magic, version and the two counts; throws StopScan when the rest cannot be read.
void scan_preamble(GgufScan& s, Cursor& c) {
  if (s.file_size < 4) throw StopScan{0, "file is " + std::to_string(s.file_size) + " bytes: too short for a GGUF header"};
  if (c.get<uint32_t>("magic") != kMagic) throw StopScan{0, "not a GGUF file (the first four bytes are not \"GGUF\")"};
  s.is_gguf = true;
  s.version = c.get<uint32_t>("version");
  if (s.version != 2 && s.version != 3)
    throw StopScan{4, "unsupported GGUF version " + std::to_string(s.version) + " (readable: 2, 3)"};
  if (s.version == 2) add_finding(s, Severity::kInfo, 4, "GGUF version 2 (current is 3)");
  s.declared_tensors = c.get<uint64_t>("tensor count");
  s.declared_kv = c.get<uint64_t>("metadata count");
  if (s.declared_kv > GgufLimits::kMaxKv)
    throw StopScan{16, "metadata count " + std::to_string(s.declared_kv) + " exceeds the limit of " +
                           std::to_string(GgufLimits::kMaxKv)};
  if (s.declared_tensors > GgufLimits::kMaxTensors)
    throw StopScan{8, "tensor count " + std::to_string(s.declared_tensors) + " exceeds the limit of " +
                          std::to_string(GgufLimits::kMaxTensors)};
}

// Key/value pairs.
void scan_metadata(GgufScan& s, Cursor& c) {
  auto add = [&](Severity sev, uint64_t off, std::string msg) { add_finding(s, sev, off, std::move(msg)); };
  for (uint64_t i = 0; i < s.declared_kv; ++i) {
    const uint64_t at = c.pos();
    std::string key = c.get_string("metadata key");
    if (key.empty()) add(Severity::kWarning, at, "empty metadata key");
    const uint64_t tat = c.pos();
    const uint32_t t = c.get<uint32_t>("value type");
    if (!valid_value_type(t))
      throw StopScan{tat, "key '" + key + "': unknown value type " + std::to_string(t) +
                              " (the rest of the header cannot be located)"};
    GgufValue v = read_value(c, static_cast<GgufType>(t), 0, key, s);
    if (s.metadata.has(key)) {
      add(Severity::kError, at, "duplicate metadata key '" + key + "' (the later value is shown)");
    }
    s.metadata.set(std::move(key), std::move(v));
  }

}

// general.alignment (a bad value is reported, and the default is used to go on), the
// architecture, and unknown keys.
void check_metadata(GgufScan& s) {
  auto add = [&](Severity sev, uint64_t off, std::string msg) { add_finding(s, sev, off, std::move(msg)); };
  if (const GgufValue* a = s.metadata.find("general.alignment")) {
    if (a->type != GgufType::UINT32) {
      add(Severity::kError, FormatError::kNoOffset, "general.alignment must be a u32, found " +
                                                        std::string(gguf_type_name(a->type)) + " (using 32)");
    } else {
      const uint64_t al = a->as_u64();
      if (al == 0 || (al & (al - 1)) != 0 || al > (1u << 20))
        add(Severity::kError, FormatError::kNoOffset,
            "general.alignment " + std::to_string(al) + " is not a power of two up to 1 MiB (using 32)");
      else
        s.alignment = static_cast<uint32_t>(al);
    }
  }
  // Read without the typed getter: a non-string value is a finding, not a FormatError.
  std::string arch;
  if (const GgufValue* a = s.metadata.find("general.architecture"); !a) {
    add(Severity::kWarning, FormatError::kNoOffset, "no general.architecture key");
  } else if (a->type != GgufType::STRING) {
    add(Severity::kError, FormatError::kNoOffset,
        "general.architecture must be a string, found " + std::string(gguf_type_name(a->type)));
  } else {
    arch = a->as_string();
    if (arch.empty()) add(Severity::kWarning, FormatError::kNoOffset, "general.architecture is empty");
  }
  for (const auto& [k, v] : s.metadata.entries())
    if (!is_known_gguf_key(k, arch)) add(Severity::kInfo, FormatError::kNoOffset, "unknown metadata key '" + k + "'");

}

// Tensor infos: names, shapes, types, offsets.
void scan_tensor_infos(GgufScan& s, Cursor& c, const std::string& path) {
  auto add = [&](Severity sev, uint64_t off, std::string msg) { add_finding(s, sev, off, std::move(msg)); };
  std::unordered_set<std::string> seen;  // a hash set: a list made 2^20 names quadratic (a hang)
  for (uint64_t i = 0; i < s.declared_tensors; ++i) {
    ScannedTensor st;
    st.info_offset = c.pos();
    st.info.name = c.get_string("tensor name");
    const std::string& nm = st.info.name;
    if (nm.empty()) add(Severity::kError, st.info_offset, "tensor #" + std::to_string(i) + " has an empty name");
    const uint64_t dat = c.pos();
    const uint32_t nd = c.get<uint32_t>("dimension count");
    if (nd == 0 || nd > GgufLimits::kMaxDims)
      throw StopScan{dat, "tensor '" + nm + "': " + std::to_string(nd) + " dimensions (1 to 4 allowed)"};
    uint64_t nel = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t dim = c.get<uint64_t>("dimension");
      if (dim == 0) add(Severity::kError, dat, "tensor '" + nm + "': zero-sized dimension");
      auto m = checked_mul(nel, dim);
      if (!m || *m > (1ull << 60)) overflow = true; else nel = *m;
      st.info.shape.push_back(dim);
    }
    if (overflow) add(Severity::kError, dat, "tensor '" + nm + "': element count overflows");
    st.info.n_elements = overflow ? 0 : nel;
    const uint64_t tat = c.pos();
    st.raw_type = c.get<uint32_t>("tensor type");
    const TypeGeometry* g = find_type(st.raw_type);
    if (!g) {
      st.type_known = st.size_known = false;
      add(Severity::kError, tat, "tensor '" + nm + "': unknown ggml type " + std::to_string(st.raw_type));
    } else {
      st.info.type = g->id;
      try {
        if (overflow) throw FormatError(path, "tensor size overflows");
        st.info.n_bytes = tensor_nbytes(g->id, st.info.shape, path);
      } catch (const FormatError& e) {
        st.size_known = false;
        add(Severity::kError, dat, "tensor '" + nm + "': " + e.message());
      }
    }
    const uint64_t oat = c.pos();
    st.info.offset = c.get<uint64_t>("tensor offset");
    if (st.info.offset % s.alignment != 0)
      add(Severity::kError, oat, "tensor '" + nm + "': data offset " + std::to_string(st.info.offset) +
                                     " is not aligned to " + std::to_string(s.alignment));
    if (!seen.insert(nm).second) add(Severity::kError, st.info_offset, "duplicate tensor name '" + nm + "'");
    s.tensors.push_back(std::move(st));
  }
}

// Data section: where tensors lie, whether each fits in the file, overlaps and gaps.
void scan_data_section(GgufScan& s) {
  auto add = [&](Severity sev, uint64_t off, std::string msg) { add_finding(s, sev, off, std::move(msg)); };
  auto data_off = checked_align_up(s.header_end, s.alignment);
  s.data_offset = data_off.value_or(s.header_end);
  if (!s.tensors.empty() && s.data_offset > s.file_size)
    add(Severity::kError, s.header_end, "the tensor data section starts past the end of the file");
  std::vector<size_t> order(s.tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return s.tensors[a].info.offset < s.tensors[b].info.offset; });
  // A truncated file puts every later tensor past its end: list a few, then summarise.
  constexpr size_t kListedPastEnd = 5;
  size_t past_end = 0;
  uint64_t prev_end = 0;
  std::string prev_name;
  for (size_t idx : order) {
    auto& t = s.tensors[idx];
    auto start = checked_add(s.data_offset, t.info.offset);
    const bool starts_inside = start && *start <= s.file_size;
    auto end = starts_inside && t.size_known ? checked_add(*start, t.info.n_bytes) : std::nullopt;
    if (!starts_inside || (t.size_known && (!end || *end > s.file_size))) {
      t.in_file = false;
      if (++past_end <= kListedPastEnd)
        add(Severity::kError, starts_inside ? *start : FormatError::kNoOffset,
            "tensor '" + t.info.name + "' (data offset " + std::to_string(t.info.offset) + ", " +
                (t.size_known ? std::to_string(t.info.n_bytes) + " bytes" : "unknown size") +
                ") extends past the end of the file (" + hex_offset(s.file_size) + ")");
    }
    if (!starts_inside || !t.size_known) continue;
    if (t.info.offset < prev_end)
      add(Severity::kError, *start, "tensor '" + t.info.name + "' overlaps tensor '" + prev_name + "'");
    if (t.info.offset + t.info.n_bytes > prev_end) {
      prev_end = t.info.offset + t.info.n_bytes;
      prev_name = t.info.name;
    }
  }
  uint64_t declared_end = 0;  // end of the last tensor's data by the header's own account
  for (const auto& t : s.tensors)
    if (t.size_known) declared_end = std::max(declared_end, t.info.offset + t.info.n_bytes);
  if (past_end > 0) {
    const uint64_t expected = s.data_offset + declared_end;
    add(Severity::kError, FormatError::kNoOffset,
        std::to_string(past_end) + " of " + std::to_string(s.tensors.size()) +
            " tensors lie (partly) past the end of the file: the header describes at least " +
            std::to_string(expected) + " bytes, the file has " + std::to_string(s.file_size) + " (truncated?)");
  }
  // Bytes after the last tensor beyond its alignment padding: harmless but unexpected.
  const uint64_t expected_end = s.data_offset + checked_align_up(declared_end, s.alignment).value_or(declared_end);
  if (!s.tensors.empty() && past_end == 0 && s.file_size > expected_end)
    add(Severity::kInfo, expected_end,
        std::to_string(s.file_size - expected_end) + " bytes after the last tensor's data are unused");
}

}  // namespace

GgufScan scan_gguf(const std::string& path) {
  GgufScan s;
  s.path = path;
  s.metadata.set_source(path);
  auto file = MappedFile::open(path);
  s.file_size = file->size();
  const std::byte* data = file->view().data();
  Cursor c(data, s.file_size);
  try {
    scan_preamble(s, c);
    scan_metadata(s, c);
    check_metadata(s);
    scan_tensor_infos(s, c, path);
    s.header_end = c.pos();
    s.header_complete = true;
  } catch (const StopScan& stop) {
    add_finding(s, Severity::kError, stop.offset, stop.message + "; the scan stopped here");
  }
  if (!s.header_complete) return s;
  scan_data_section(s);
  return s;
}

}  // namespace smolq
