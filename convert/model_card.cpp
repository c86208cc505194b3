#include "convert/model_card.h"

#include <simdjson.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cstdio>
#include <sstream>

#include "formats/error.h"
#include "formats/mapped_file.h"

namespace smolq {
namespace {

constexpr uint64_t kMaxCardBytes = 8ull << 20;
constexpr int kMaxDepth = 64;  // nesting a model card never needs; bounds the recursion
// YAML aliases (*a) share one node; copied into a tree they multiply ("billion laughs": ten
// aliases of ten aliases ... is 10^9 nodes from a few hundred bytes). Real cards have hundreds.
constexpr size_t kMaxNodes = 1u << 20;

MetaTree from_yaml(const YAML::Node& n, const std::string& path, int depth, size_t& budget) {
  if (depth > kMaxDepth) throw FormatError(path, "front matter nested deeper than 64 levels");
  if (budget-- == 0) throw FormatError(path, "front matter expands to more than 1,048,576 values (YAML aliases)");
  MetaTree t;
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      t.kind = MetaTree::Kind::Scalar;
      t.scalar = n.Scalar();
      break;
    case YAML::NodeType::Sequence:
      t.kind = MetaTree::Kind::List;
      for (const auto& item : n) t.items.push_back(from_yaml(item, path, depth + 1, budget));
      break;
    case YAML::NodeType::Map:
      t.kind = MetaTree::Kind::Map;
      for (const auto& kv : n) {
        // Keys are strings in model cards; a non-scalar key is kept out rather than guessed at.
        if (!kv.first.IsScalar()) continue;
        t.fields.emplace_back(kv.first.Scalar(), from_yaml(kv.second, path, depth + 1, budget));
      }
      break;
    default:
      break;  // Null, Undefined
  }
  return t;
}

MetaTree from_json(simdjson::dom::element e, int depth, const std::string& path) {
  if (depth > kMaxDepth) throw FormatError(path, "JSON nested deeper than 64 levels");
  MetaTree t;
  switch (e.type()) {
    case simdjson::dom::element_type::ARRAY:
      t.kind = MetaTree::Kind::List;
    {
      simdjson::dom::array arr = e.get_array().value_unsafe();  // a named copy: the result object is a temporary
      for (auto item : arr) t.items.push_back(from_json(item, depth + 1, path));
    }
      break;
    case simdjson::dom::element_type::OBJECT:
      t.kind = MetaTree::Kind::Map;
    {
      simdjson::dom::object obj = e.get_object().value_unsafe();
      for (auto field : obj) t.fields.emplace_back(std::string(field.key), from_json(field.value, depth + 1, path));
    }
      break;
    case simdjson::dom::element_type::STRING:
      t.kind = MetaTree::Kind::Scalar;
      t.scalar = std::string(e.get_string().value_unsafe());
      break;
    case simdjson::dom::element_type::INT64:
      t.kind = MetaTree::Kind::Scalar;
      t.scalar = std::to_string(e.get_int64().value_unsafe());
      break;
    case simdjson::dom::element_type::UINT64:
      t.kind = MetaTree::Kind::Scalar;
      t.scalar = std::to_string(e.get_uint64().value_unsafe());
      break;
    case simdjson::dom::element_type::DOUBLE: {
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.17g", e.get_double().value_unsafe());
      t.kind = MetaTree::Kind::Scalar;
      t.scalar = buf;
      break;
    }
    case simdjson::dom::element_type::BOOL:
      t.kind = MetaTree::Kind::Scalar;
      t.scalar = e.get_bool().value_unsafe() ? "true" : "false";
      break;
    case simdjson::dom::element_type::NULL_VALUE:
      break;
  }
  return t;
}

}  // namespace

const MetaTree* MetaTree::get(std::string_view key) const {
  if (kind != Kind::Map) return nullptr;
  for (const auto& [k, v] : fields)
    if (k == key) return &v;
  return nullptr;
}

MetaTree read_model_card(const std::string& dir) {
  const std::string path = dir + "/README.md";
  if (!file_exists(path)) return {};
  const std::string text = read_text_file(path, kMaxCardBytes);
  // Lines as Python's splitlines() cuts them (\n, \r\n, \r); the first must be exactly "---".
  std::vector<std::string> lines;
  std::string cur;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n' || c == '\r') {
      lines.push_back(cur);
      cur.clear();
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) lines.push_back(cur);
  if (lines.empty() || lines[0] != "---") return {};
  std::string yaml;
  for (size_t i = 1; i < lines.size() && lines[i] != "---"; ++i) {
    std::string line = lines[i];
    // YAML forbids tabs in indentation; some published cards use them (llama.cpp reads them as
    // two spaces, so does smolq).
    for (size_t p = line.find('\t'); p != std::string::npos; p = line.find('\t', p + 2)) line.replace(p, 1, "  ");
    yaml += line + "\n";
  }
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    // Front matter starts on the file's line 2.
    const std::string where = e.mark.is_null() ? "" : ", line " + std::to_string(e.mark.line + 2);
    throw FormatError(path, "model card front matter" + where + ": " + e.msg);
  }
  if (!root.IsMap()) return {};
  size_t budget = kMaxNodes;
  return from_yaml(root, path, 0, budget);
}

namespace {

// Whether a YAML reader could take `s` for something other than a string: YAML 1.1's booleans
// and nulls (PyYAML reads `yes` as true), and anything that starts like a number, a special
// float or an alias. Those are written quoted; every other string is written plain.
bool needs_quotes(const std::string& s) {
  if (s.empty()) return true;
  std::string low;
  for (char ch : s) low += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  static const char* const kWords[] = {"null", "~", "true", "false", "yes", "no", "on", "off", "y", "n"};
  for (const char* w : kWords)
    if (low == w) return true;
  const unsigned char c = static_cast<unsigned char>(s[0]);
  return !std::isalpha(c);
}

void emit(YAML::Emitter& out, const MetaTree& t) {
  switch (t.kind) {
    case MetaTree::Kind::Null: out << YAML::Null; break;
    case MetaTree::Kind::Scalar:
      if (needs_quotes(t.scalar)) out << YAML::DoubleQuoted << t.scalar;
      else out << t.scalar;
      break;
    case MetaTree::Kind::List:
      out << YAML::BeginSeq;
      for (const auto& item : t.items) emit(out, item);
      out << YAML::EndSeq;
      break;
    case MetaTree::Kind::Map:
      out << YAML::BeginMap;
      for (const auto& [k, v] : t.fields) {
        out << YAML::Key << k << YAML::Value;
        emit(out, v);
      }
      out << YAML::EndMap;
      break;
  }
}

}  // namespace

std::string write_front_matter(const MetaTree& tree) {
  YAML::Emitter out;
  out.SetIndent(2);
  out.SetSeqFormat(YAML::Block);
  out.SetMapFormat(YAML::Block);
  emit(out, tree);
  if (!out.good()) throw Error("model card front matter: " + out.GetLastError());
  std::string body = out.c_str();
  if (!body.empty() && body.back() != '\n') body += '\n';
  return "---\n" + body + "---\n";
}

MetaTree meta_scalar(std::string s) {
  MetaTree t;
  t.kind = MetaTree::Kind::Scalar;
  t.scalar = std::move(s);
  return t;
}

MetaTree meta_list(const std::vector<std::string>& items) {
  MetaTree t;
  t.kind = MetaTree::Kind::List;
  for (const auto& s : items) t.items.push_back(meta_scalar(s));
  return t;
}

MetaTree read_json_tree(const std::string& path) {
  const std::string text = read_text_file(path, kMaxCardBytes);
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto err = parser.parse(text).get(root)) throw FormatError(path, std::string("invalid JSON: ") + simdjson::error_message(err));
  return from_json(root, 0, path);
}

}  // namespace smolq
