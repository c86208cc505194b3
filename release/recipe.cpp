#include "release/recipe.h"

#include <cctype>
#include <cstring>

#include "formats/error.h"
#include "formats/ggml_types.h"

namespace smolq {

std::string tensor_name_regex(const std::string& name) {
  std::string s = "^";
  for (char ch : name) {
    // ECMAScript regex metacharacters (std::regex's default grammar).
    if (std::strchr(".^$|()[]{}*+?\\", ch) != nullptr && ch != '\0') s += '\\';
    s += ch;
  }
  return s + "$";
}

std::string tensor_type_recipe(const GgufReader& r) {
  std::string out;
  for (const auto& t : r.tensors()) {
    if (t.shape.size() < 2) continue;
    // llama-quantize lower-cases the pattern before compiling it: a name with capitals could
    // not match itself, and whitespace would split the word.
    for (char ch : t.name)
      if (std::isupper(static_cast<unsigned char>(ch)) || std::isspace(static_cast<unsigned char>(ch)))
        throw FormatError(r.path(), "tensor '" + t.name + "': a name llama-quantize's --tensor-type-file cannot express");
    std::string type(type_info(t.type).name);
    for (auto& ch : type) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    out += tensor_name_regex(t.name) + "=" + type + "\n";
  }
  return out;
}

}  // namespace smolq
