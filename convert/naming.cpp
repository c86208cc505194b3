#include "convert/naming.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <vector>

#include "formats/mapped_file.h"

namespace smolq {
namespace {

std::string base_name(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  auto pos = p.find_last_of('/');
  return pos == std::string::npos ? p : p.substr(pos + 1);
}

// A size token: digits, optional decimals, then K/M/B/T (case-insensitive): "135M", "1.7B".
bool is_size_token(const std::string& t) {
  if (t.size() < 2) return false;
  char u = static_cast<char>(std::toupper(static_cast<unsigned char>(t.back())));
  if (u != 'K' && u != 'M' && u != 'B' && u != 'T') return false;
  bool digit = false, dot = false;
  for (size_t i = 0; i + 1 < t.size(); ++i) {
    if (std::isdigit(static_cast<unsigned char>(t[i]))) digit = true;
    else if (t[i] == '.' && !dot && digit) dot = true;
    else return false;
  }
  return digit;
}

std::string license_from_readme(const std::string& dir) {
  const std::string p = dir + "/README.md";
  if (!file_exists(p)) return "";
  std::string text = read_text_file(p, 8u << 20);
  if (text.rfind("---", 0) != 0) return "";
  size_t end = text.find("\n---", 3);
  std::string front = text.substr(0, end == std::string::npos ? 0 : end);
  size_t pos = front.find("\nlicense:");
  if (pos == std::string::npos) return "";
  size_t b = pos + 9, e = front.find('\n', b);
  std::string v = front.substr(b, e == std::string::npos ? std::string::npos : e - b);
  while (!v.empty() && (v.front() == ' ' || v.front() == '"' || v.front() == '\'')) v.erase(v.begin());
  while (!v.empty() && (v.back() == ' ' || v.back() == '"' || v.back() == '\'' || v.back() == '\r')) v.pop_back();
  return v;
}

std::string license_from_file(const std::string& dir) {
  const std::string p = dir + "/LICENSE";
  if (!file_exists(p)) return "";
  std::string text = read_text_file(p, 8u << 20);
  if (text.find("Apache License") != std::string::npos && text.find("Version 2.0") != std::string::npos) return "apache-2.0";
  if (text.find("MIT License") != std::string::npos || text.find("Permission is hereby granted, free of charge") != std::string::npos)
    return "mit";
  return "";
}

}  // namespace

std::string size_label_for(uint64_t n) {
  double v;
  char suffix;
  if (n > 1e12) { v = n * 1e-12; suffix = 'T'; }
  else if (n > 1e9) { v = n * 1e-9; suffix = 'B'; }
  else if (n > 1e6) { v = n * 1e-6; suffix = 'M'; }
  else { v = n * 1e-3; suffix = 'K'; }
  // Enough decimals for two significant digits (134.5M -> "135M", 1.71B -> "1.7B").
  const long rounded = std::lround(v);
  const int digits = rounded == 0 ? 0 : static_cast<int>(std::to_string(rounded).size());
  const int decimals = std::max(2 - digits, 0);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f%c", decimals, v, suffix);
  return buf;
}

ModelNaming derive_naming(const std::string& hf_dir, uint64_t n_params, const std::string& name_override) {
  ModelNaming n;
  n.name = name_override.empty() ? base_name(hf_dir) : name_override;
  n.size_label = size_label_for(n_params);
  // Split at '-' / '_' keeping each part's offset, so the original separators survive.
  std::vector<std::pair<size_t, std::string>> parts;
  size_t start = 0;
  for (size_t i = 0; i <= n.name.size(); ++i) {
    if (i == n.name.size() || n.name[i] == '-' || n.name[i] == '_') {
      parts.emplace_back(start, n.name.substr(start, i - start));
      start = i + 1;
    }
  }
  for (const auto& [off, part] : parts) {
    if (!is_size_token(part)) continue;
    n.basename = off > 0 ? n.name.substr(0, off - 1) : "";
    const size_t after = off + part.size() + 1;
    n.finetune = after < n.name.size() ? n.name.substr(after) : "";
    break;
  }
  if (n.basename.empty()) n.basename = n.name;
  n.license = license_from_readme(hf_dir);
  if (n.license.empty()) n.license = license_from_file(hf_dir);
  return n;
}

void write_general_metadata(const ModelNaming& n, const std::string& arch, GgufMetadata& meta) {
  meta.set("general.architecture", GgufValue::str(arch));
  meta.set("general.type", GgufValue::str("model"));
  meta.set("general.name", GgufValue::str(n.name));
  if (!n.finetune.empty()) meta.set("general.finetune", GgufValue::str(n.finetune));
  meta.set("general.basename", GgufValue::str(n.basename));
  meta.set("general.size_label", GgufValue::str(n.size_label));
  if (!n.license.empty()) meta.set("general.license", GgufValue::str(n.license));
}

}  // namespace smolq
