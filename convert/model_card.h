// The documents authorship metadata comes from, read into one small tree type:
//   - README.md's front matter (the model card's YAML header, parsed with yaml-cpp),
//   - generation_config.json and a `--metadata` override file (JSON, parsed with simdjson).
// convert/naming.cpp applies llama.cpp's rules to these trees; only this file knows the
// parsers.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace smolq {

struct MetaField;

struct MetaTree {
  enum class Kind { Null, Scalar, List, Map };
  Kind kind = Kind::Null;
  std::string scalar;  // Scalar: the text (numbers and booleans as written)
  std::vector<MetaTree> items;     // List
  std::vector<MetaField> fields;   // Map, in document order (a named struct, not std::pair:
                                   // pair needs a complete MetaTree, which clang's libstdc++ checks)

  bool is_null() const { return kind == Kind::Null; }
  bool is_scalar() const { return kind == Kind::Scalar; }
  bool is_list() const { return kind == Kind::List; }
  bool is_map() const { return kind == Kind::Map; }
  // The field `key` of a map (nullptr when absent or not a map). A present field whose value is
  // null is returned (as a Null tree): "present" and "null" differ in the model-card rules.
  const MetaTree* get(std::string_view key) const;
};

// One key of a Map (structured bindings read it as [key, value]).
struct MetaField {
  MetaField(std::string k, MetaTree v) : key(std::move(k)), value(std::move(v)) {}
  std::string key;
  MetaTree value;
};

// The front matter of `dir`/README.md: the lines between a first line "---" and the next line
// "---", as llama.cpp's converter reads them (tabs as two spaces). A Null tree when there is no
// README.md or no front matter; FormatError (naming README.md and the YAML line) when the YAML
// is malformed. A front matter that is not a mapping is ignored (Null), as llama.cpp does.
MetaTree read_model_card(const std::string& dir);

// `tree` (a Map) as a model card's front matter: "---\n", block-style YAML written by yaml-cpp
// (strings quoted where YAML needs it, so a reader gets back exactly these scalars), "---\n".
// The inverse of read_model_card's parse for the trees it returns.
std::string write_front_matter(const MetaTree& tree);

// Small builders for writing trees.
MetaTree meta_scalar(std::string s);
MetaTree meta_list(const std::vector<std::string>& items);

// A JSON file as a tree (FormatError when malformed).
MetaTree read_json_tree(const std::string& path);

}  // namespace smolq
