// Internals of chat-template rendering (text/chat_template.h): the limits of one render and
// the Python semantics of values (str() and repr(), JSON, truthiness, equality, len(),
// iteration, slicing, the str methods) that the evaluator (chat_template_eval.cpp) applies.
// Defined in chat_template_value.cpp. Not for use outside the chat-template files.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "text/chat_template_ast.h"

namespace smolq::jinja {

// Limits of one render. A chat template is a program from the internet and Jinja2 has no
// limits of its own; real templates take thousands of steps and produce kilobytes, so these
// only stop hostile or broken ones (loops nested to 10^12 iterations, strings doubled in a
// loop) with a TemplateError instead of a hang or an allocation the size of the machine.
constexpr int64_t kMaxSteps = int64_t{1} << 20;  // statements run + expressions evaluated
// A value is copied where it is named (Value holds its string), so an expression also costs a
// step per kBytesPerStep of its result: at most 256 MB of copying per render.
constexpr size_t kBytesPerStep = 256;
constexpr size_t kMaxListItems = size_t{1} << 20;  // also range()'s limit

inline size_t bytes_of(const Value& v) { return v.kind == Value::Kind::kString ? v.s.size() : v.bytes; }

// Throws TemplateError when a value of `bytes` bytes exceeds Value::kMaxBytes.
void check_bytes(size_t bytes, int line);

// Python ints are unbounded; ours are 64-bit, so an overflow is an error, not wrap-around (UB).
// `op` is '+', '-' or '*'.
int64_t checked_op(char op, int64_t a, int64_t b, int line);

// float -> int as Python's int() truncates; beyond int64 (or NaN) is an error, not UB.
int64_t float_to_int(double f, int line);

// ---- conversions -------------------------------------------------------------------------

// Python str() of a value, as {{ }} prints it (undefined prints as nothing).
std::string to_str(const Value& v);
// Python repr() of a value.
std::string repr(const Value& v);
// json.dumps(x, ensure_ascii=False, indent=indent) — Hugging Face's tojson filter.
void to_json(const Value& v, std::string& o, int indent, int depth, int line);

bool truthy(const Value& v);
inline double num(const Value& v) { return v.kind == Value::Kind::kFloat ? v.f : v.kind == Value::Kind::kBool ? v.b : static_cast<double>(v.i); }
inline bool is_intlike(const Value& v) { return v.kind == Value::Kind::kInt || v.kind == Value::Kind::kBool; }
inline int64_t as_int(const Value& v) { return v.kind == Value::Kind::kBool ? v.b : v.i; }
bool equal(const Value& a, const Value& b);

// len(): code points of a string, items of a list or dict.
int64_t length(const Value& v, int line);
// The items a for loop or a list() visits: list items, dict keys, string characters.
List iterate(const Value& v, int line);
// dict.items(): a list of [key, value] lists.
Value items_of(const Value& d, int line);

// ---- str methods -------------------------------------------------------------------------

// Python's str.strip family: `chars` (default whitespace) removed from the chosen ends.
std::string strip(const std::string& s, const Value* chars, bool left, bool right);
// Case mapping of ASCII, Latin-1, basic Greek and Cyrillic letters.
std::string upper(const std::string& s);
std::string lower(const std::string& s);
std::string title(std::string s);  // ASCII letters: upper after a non-letter, lower after a letter
std::string capitalize(std::string s);
std::string replace_all(const std::string& s, const std::string& a, const std::string& b, int64_t count, int line);
// str.split(sep=None, maxsplit=-1).
Value split(const std::string& s, const Value* sep, int64_t maxsplit);
// Python slice indices for a sequence of n items.
List slice_items(const List& items, const Value& a, const Value& b, const Value& c, int line);

}  // namespace smolq::jinja
