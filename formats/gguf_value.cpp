// GGUF metadata values: construction, typed access, display, and the ordered store.
#include <cstdio>

#include "formats/error.h"
#include "formats/gguf.h"

namespace smolq {

std::string_view gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UINT8: return "u8";
    case GgufType::INT8: return "i8";
    case GgufType::UINT16: return "u16";
    case GgufType::INT16: return "i16";
    case GgufType::UINT32: return "u32";
    case GgufType::INT32: return "i32";
    case GgufType::FLOAT32: return "f32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "string";
    case GgufType::ARRAY: return "array";
    case GgufType::UINT64: return "u64";
    case GgufType::INT64: return "i64";
    case GgufType::FLOAT64: return "f64";
  }
  return "?";
}

GgufValue GgufValue::string_array(const std::vector<std::string>& v) {
  std::vector<GgufValue> items;
  items.reserve(v.size());
  for (const auto& s : v) items.push_back(str(s));
  return array(GgufType::STRING, std::move(items));
}
GgufValue GgufValue::f32_array(const std::vector<float>& v) {
  std::vector<GgufValue> items;
  items.reserve(v.size());
  for (float f : v) items.push_back(f32(f));
  return array(GgufType::FLOAT32, std::move(items));
}
GgufValue GgufValue::i32_array(const std::vector<int32_t>& v) {
  std::vector<GgufValue> items;
  items.reserve(v.size());
  for (int32_t x : v) items.push_back(i32(x));
  return array(GgufType::INT32, std::move(items));
}

bool GgufValue::is_integer() const {
  return std::holds_alternative<uint64_t>(data) || std::holds_alternative<int64_t>(data);
}

static Error type_mismatch(const GgufValue& v, const char* wanted) {
  return Error(std::string("expected ") + wanted + ", found " + std::string(gguf_type_name(v.type)));
}

uint64_t GgufValue::as_u64() const {
  if (auto* u = std::get_if<uint64_t>(&data)) return *u;
  if (auto* i = std::get_if<int64_t>(&data)) {
    if (*i < 0) throw Error("expected a non-negative integer, found " + std::to_string(*i));
    return static_cast<uint64_t>(*i);
  }
  throw type_mismatch(*this, "an integer");
}
int64_t GgufValue::as_i64() const {
  if (auto* i = std::get_if<int64_t>(&data)) return *i;
  if (auto* u = std::get_if<uint64_t>(&data)) {
    if (*u > static_cast<uint64_t>(INT64_MAX)) throw Error("integer out of range");
    return static_cast<int64_t>(*u);
  }
  throw type_mismatch(*this, "an integer");
}
double GgufValue::as_f64() const {
  if (auto* d = std::get_if<double>(&data)) return *d;
  if (auto* u = std::get_if<uint64_t>(&data)) return static_cast<double>(*u);
  if (auto* i = std::get_if<int64_t>(&data)) return static_cast<double>(*i);
  throw type_mismatch(*this, "a number");
}
bool GgufValue::as_bool() const {
  if (auto* b = std::get_if<bool>(&data)) return *b;
  throw type_mismatch(*this, "a bool");
}
const std::string& GgufValue::as_string() const {
  if (auto* s = std::get_if<std::string>(&data)) return *s;
  throw type_mismatch(*this, "a string");
}
const GgufArray& GgufValue::as_array() const {
  if (auto* a = std::get_if<GgufArray>(&data)) return *a;
  throw type_mismatch(*this, "an array");
}

static std::string quote(const std::string& s, size_t max_chars) {
  std::string out = "\"";
  size_t n = 0;
  for (char c : s) {
    if (n++ >= max_chars) {
      out += "...";
      break;
    }
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '"') out += "\\\"";
    else if (static_cast<unsigned char>(c) < 0x20) out += "?";
    else out += c;
  }
  return out + "\"";
}

std::string GgufValue::to_display(size_t max_items) const {
  char buf[64];
  switch (type) {
    case GgufType::FLOAT32:
    case GgufType::FLOAT64:
      std::snprintf(buf, sizeof buf, "%.9g", as_f64());
      return buf;
    case GgufType::BOOL: return as_bool() ? "true" : "false";
    case GgufType::STRING: return quote(as_string(), 120);
    case GgufType::ARRAY: {
      const auto& a = as_array();
      std::string out = "[";
      if (a.items.size() > max_items)
        out += std::to_string(a.items.size()) + " " + std::string(gguf_type_name(a.elem_type)) + ": ";
      for (size_t i = 0; i < a.items.size() && i < max_items; ++i) {
        if (i) out += ", ";
        out += a.items[i].to_display(max_items);
      }
      if (a.items.size() > max_items) out += ", ...";
      return out + "]";
    }
    default:
      if (std::holds_alternative<int64_t>(data)) return std::to_string(as_i64());
      return std::to_string(as_u64());
  }
}

void GgufMetadata::set(std::string key, GgufValue v) {
  auto it = index_.find(key);
  if (it != index_.end()) {
    entries_[it->second].second = std::move(v);
    return;
  }
  index_.emplace(key, entries_.size());
  entries_.emplace_back(std::move(key), std::move(v));
}

bool GgufMetadata::erase(std::string_view key) {
  auto it = index_.find(std::string(key));
  if (it == index_.end()) return false;
  entries_.erase(entries_.begin() + static_cast<ptrdiff_t>(it->second));
  index_.clear();
  for (size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].first, i);
  return true;
}

const GgufValue* GgufMetadata::find(std::string_view key) const {
  auto it = index_.find(std::string(key));
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

template <class F>
static auto typed(const std::string& source, std::string_view key, const GgufValue* v, F f) {
  if (!v) throw FormatError(source, "missing metadata key '" + std::string(key) + "'");
  try {
    return f(*v);
  } catch (const FormatError&) {
    throw;
  } catch (const Error& e) {
    throw FormatError(source, "metadata key '" + std::string(key) + "': " + e.what());
  }
}

uint64_t GgufMetadata::get_u64(std::string_view key) const {
  return typed(source_, key, find(key), [](const GgufValue& v) { return v.as_u64(); });
}
double GgufMetadata::get_f64(std::string_view key) const {
  return typed(source_, key, find(key), [](const GgufValue& v) { return v.as_f64(); });
}
std::string GgufMetadata::get_string(std::string_view key) const {
  return typed(source_, key, find(key), [](const GgufValue& v) { return v.as_string(); });
}
std::optional<uint64_t> GgufMetadata::opt_u64(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_u64(key);
}
std::optional<double> GgufMetadata::opt_f64(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_f64(key);
}
std::optional<std::string> GgufMetadata::opt_string(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_string(key);
}
std::optional<bool> GgufMetadata::opt_bool(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return typed(source_, key, find(key), [](const GgufValue& v) { return v.as_bool(); });
}

}  // namespace smolq
