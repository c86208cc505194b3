// Reader for shared/golden/mixtures/*.schema: llama.cpp's recorded type choices for real
// model shapes (see shared/golden/README.md, "Type-mixture snapshots").
//
//   # Model: Qwen3-0.6B
//   # n_embd=1024, n_ff=3072, n_vocab=151936, n_layer=28, n_head=16, n_head_kv=8
//   [Q4_K_M] q4_K                 <- file type, its default ggml type
//   blk.0.attn_v.weight q6_K      <- only tensors whose type differs from the default
#pragma once
#include <cstdint>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace smolq::test {

struct SchemaSection {
  std::string file_type;     // "Q4_K_M"
  std::string default_type;  // ggml's lower-case name, "q4_K"
  std::map<std::string, std::string> overrides;  // tensor name -> ggml type name
};

struct Schema {
  std::string model;
  std::map<std::string, uint64_t> header;  // n_embd, n_ff, n_vocab, n_layer, n_head, n_head_kv, n_expert
  std::vector<SchemaSection> sections;

  uint64_t get(const std::string& key) const {
    auto it = header.find(key);
    return it == header.end() ? 0 : it->second;
  }
};

inline std::string schema_dir() { return std::string(SMOLQ_SHARED_DIR) + "/golden/mixtures"; }

inline Schema parse_schema(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  Schema s;
  std::string line;
  int lineno = 0;
  auto fail = [&](const std::string& what) {
    throw std::runtime_error(path + ":" + std::to_string(lineno) + ": " + what + ": '" + line + "'");
  };
  while (std::getline(f, line)) {
    ++lineno;
    if (line.empty()) continue;
    if (line[0] == '#') {
      const std::string model_tag = "# Model: ";
      if (line.rfind(model_tag, 0) == 0) {
        s.model = line.substr(model_tag.size());
        continue;
      }
      // "# key=value, key=value"
      size_t pos = 1;
      while (pos < line.size()) {
        while (pos < line.size() && (line[pos] == ' ' || line[pos] == ',')) ++pos;
        const size_t eq = line.find('=', pos);
        if (eq == std::string::npos) break;
        size_t end = line.find(',', eq);
        if (end == std::string::npos) end = line.size();
        s.header[line.substr(pos, eq - pos)] = std::stoull(line.substr(eq + 1, end - eq - 1));
        pos = end;
      }
      continue;
    }
    if (line[0] == '[') {
      const size_t close = line.find(']');
      if (close == std::string::npos) fail("missing ]");
      SchemaSection sec;
      sec.file_type = line.substr(1, close - 1);
      size_t p = close + 1;
      while (p < line.size() && line[p] == ' ') ++p;
      sec.default_type = line.substr(p);
      if (sec.default_type.empty()) fail("missing default type");
      s.sections.push_back(std::move(sec));
      continue;
    }
    if (s.sections.empty()) fail("tensor line before any section");
    const size_t sp = line.rfind(' ');
    if (sp == std::string::npos) fail("no type on tensor line");
    if (!s.sections.back().overrides.emplace(line.substr(0, sp), line.substr(sp + 1)).second)
      fail("tensor listed twice");
  }
  return s;
}

}  // namespace smolq::test
