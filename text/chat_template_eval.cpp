// Chat-template rendering: walks the syntax tree of chat_template.cpp with Jinja2 / Python
// semantics for the supported subset (see chat_template.h): Python truthiness, equality and
// ordering, floor division and modulo, code-point string indexing and slicing, str() and
// repr() of values, Hugging Face's JSON `tojson`, Jinja2's scoping (a for loop's body has its
// own scope, so `set` inside it does not leak out; namespace() objects are the way out).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "text/chat_template_ast.h"

namespace smolq {
namespace jinja {

const Value* Value::find(const std::string& key) const {
  if (kind != Kind::kDict) return nullptr;
  for (const auto& [k, v] : *dict)
    if (k == key) return &v;
  return nullptr;
}

namespace {

[[noreturn]] void fail(int line, const std::string& msg) {
  throw TemplateError("chat template line " + std::to_string(line) + ": " + msg);
}

// Limits of one render. A chat template is a program from the internet and Jinja2 has no
// limits of its own; real templates take thousands of steps and produce kilobytes, so these
// only stop hostile or broken ones (loops nested to 10^12 iterations, strings doubled in a
// loop) with a TemplateError instead of a hang or an allocation the size of the machine.
constexpr int64_t kMaxSteps = int64_t{1} << 20;  // statements run + expressions evaluated
// A value is copied where it is named (Value holds its string), so an expression also costs a
// step per kBytesPerStep of its result: at most 256 MB of copying per render.
constexpr size_t kBytesPerStep = 256;
constexpr size_t kMaxListItems = size_t{1} << 20;  // also range()'s limit

size_t bytes_of(const Value& v) { return v.kind == Value::Kind::kString ? v.s.size() : v.bytes; }

void check_bytes(size_t bytes, int line) {
  if (bytes > Value::kMaxBytes)
    fail(line, "a value grows beyond " + std::to_string(Value::kMaxBytes >> 20) + " MB");
}

// Python ints are unbounded; ours are 64-bit, so an overflow is an error, not wrap-around (UB).
int64_t checked_op(char op, int64_t a, int64_t b, int line) {
  int64_t r = 0;
  const bool overflowed = op == '+'   ? __builtin_add_overflow(a, b, &r)
                          : op == '-' ? __builtin_sub_overflow(a, b, &r)
                                      : __builtin_mul_overflow(a, b, &r);
  if (overflowed) fail(line, "integer overflow");
  return r;
}

// float -> int as Python's int() truncates; beyond int64 (or NaN) is an error, not UB.
int64_t float_to_int(double f, int line) {
  if (!(f > -9.3e18 && f < 9.3e18)) fail(line, "float too large to convert to int");
  return static_cast<int64_t>(f);
}

template <class Items, class Get>
void nest_over(Value& v, const Items& items, Get get) {
  size_t depth = 0, bytes = 0;
  for (const auto& it : items) {
    const Value& x = get(it);
    depth = std::max<size_t>(depth, x.depth);
    bytes += bytes_of(x) + Value::kItemBytes;
    v.holds_namespace = v.holds_namespace || x.is_namespace || x.holds_namespace;
  }
  if (depth + 1 > Value::kMaxDepth)
    throw TemplateError("chat template: lists or dicts nested more than " + std::to_string(Value::kMaxDepth) + " deep");
  if (bytes > Value::kMaxBytes || items.size() > kMaxListItems)
    throw TemplateError("chat template: a list or dict grows beyond " + std::to_string(Value::kMaxBytes >> 20) +
                        " MB or " + std::to_string(kMaxListItems) + " items");
  v.depth = static_cast<uint16_t>(depth + 1);
  v.bytes = bytes;
}

// ---- conversions -------------------------------------------------------------------------

// Python's repr() of a float: the shortest digits that round-trip, positional notation for
// exponents -4 <= e < 16, scientific ("1e-05", "1.5e+16") otherwise, always with a '.' or 'e'.
std::string python_float(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // "-d.ddde+XX"
  const size_t epos = sci.find('e');
  int exp = std::stoi(sci.substr(epos + 1));
  std::string mant = sci.substr(0, epos);
  const bool neg = mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exp + 1) {
      out += digits + std::string(static_cast<size_t>(exp + 1 - static_cast<int>(digits.size())), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(exp + 1)) + "." + digits.substr(static_cast<size_t>(exp + 1));
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  out += exp < 0 ? "e-" : "e+";
  const std::string e = std::to_string(std::abs(exp));
  return out + (e.size() < 2 ? "0" : "") + e;
}

std::string repr(const Value& v);

// Python str() of a value, as {{ }} prints it (undefined prints as nothing).
std::string to_str(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined: return "";
    case Value::Kind::kNone: return "None";
    case Value::Kind::kBool: return v.b ? "True" : "False";
    case Value::Kind::kInt: return std::to_string(v.i);
    case Value::Kind::kFloat: return python_float(v.f);
    case Value::Kind::kString: return v.s;
    default: return repr(v);
  }
}

std::string repr(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kString: {
      // Python picks double quotes only when the text has a ' and no ".
      const char q = v.s.find('\'') != std::string::npos && v.s.find('"') == std::string::npos ? '"' : '\'';
      std::string o(1, q);
      for (char c : v.s) {
        if (c == q || c == '\\') o += '\\', o += c;
        else if (c == '\n') o += "\\n";
        else if (c == '\t') o += "\\t";
        else if (c == '\r') o += "\\r";
        else o += c;
      }
      return o + q;
    }
    case Value::Kind::kList: {
      std::string o = "[";
      for (size_t i = 0; i < v.list->size(); ++i) o += (i ? ", " : "") + repr((*v.list)[i]);
      return o + "]";
    }
    case Value::Kind::kDict: {
      if (v.is_namespace) return "<Namespace>";
      std::string o = "{";
      for (size_t i = 0; i < v.dict->size(); ++i)
        o += (i ? ", " : "") + repr(Value::str((*v.dict)[i].first)) + ": " + repr((*v.dict)[i].second);
      return o + "}";
    }
    default: return to_str(v);
  }
}

// json.dumps(x, ensure_ascii=False, indent=indent) — Hugging Face's tojson filter.
void to_json(const Value& v, std::string& o, int indent, int depth, int line) {
  auto newline = [&](int d) {
    if (indent < 0) return;
    o += '\n';
    check_bytes(o.size() + static_cast<size_t>(indent) * static_cast<size_t>(d), line);
    o.append(static_cast<size_t>(indent * d), ' ');
  };
  const char* item_sep = indent < 0 ? ", " : ",";
  switch (v.kind) {
    case Value::Kind::kUndefined: fail(line, "tojson of an undefined value");
    case Value::Kind::kNone: o += "null"; return;
    case Value::Kind::kBool: o += v.b ? "true" : "false"; return;
    case Value::Kind::kInt: o += std::to_string(v.i); return;
    case Value::Kind::kFloat:
      o += std::isnan(v.f) ? "NaN" : std::isinf(v.f) ? (v.f < 0 ? "-Infinity" : "Infinity") : python_float(v.f);
      return;
    case Value::Kind::kString:
      o += '"';
      for (unsigned char c : v.s) {
        switch (c) {
          case '"': o += "\\\""; break;
          case '\\': o += "\\\\"; break;
          case '\n': o += "\\n"; break;
          case '\r': o += "\\r"; break;
          case '\t': o += "\\t"; break;
          case '\b': o += "\\b"; break;
          case '\f': o += "\\f"; break;
          default:
            if (c < 0x20) {
              char buf[8];
              std::snprintf(buf, sizeof buf, "\\u%04x", c);
              o += buf;
            } else {
              o += static_cast<char>(c);
            }
        }
      }
      o += '"';
      return;
    case Value::Kind::kList:
      if (v.list->empty()) {
        o += "[]";
        return;
      }
      o += '[';
      for (size_t i = 0; i < v.list->size(); ++i) {
        if (i) o += item_sep;
        newline(depth + 1);
        to_json((*v.list)[i], o, indent, depth + 1, line);
      }
      newline(depth);
      o += ']';
      return;
    case Value::Kind::kDict:
      if (v.dict->empty()) {
        o += "{}";
        return;
      }
      o += '{';
      for (size_t i = 0; i < v.dict->size(); ++i) {
        if (i) o += item_sep;
        newline(depth + 1);
        to_json(Value::str((*v.dict)[i].first), o, indent, depth + 1, line);
        o += ": ";
        to_json((*v.dict)[i].second, o, indent, depth + 1, line);
      }
      newline(depth);
      o += '}';
      return;
  }
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return false;
    case Value::Kind::kBool: return v.b;
    case Value::Kind::kInt: return v.i != 0;
    case Value::Kind::kFloat: return v.f != 0;
    case Value::Kind::kString: return !v.s.empty();
    case Value::Kind::kList: return !v.list->empty();
    case Value::Kind::kDict: return v.is_namespace || !v.dict->empty();
  }
  return false;
}

double num(const Value& v) { return v.kind == Value::Kind::kFloat ? v.f : v.kind == Value::Kind::kBool ? v.b : static_cast<double>(v.i); }
bool is_intlike(const Value& v) { return v.kind == Value::Kind::kInt || v.kind == Value::Kind::kBool; }
int64_t as_int(const Value& v) { return v.kind == Value::Kind::kBool ? v.b : v.i; }

bool equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return is_intlike(a) && is_intlike(b) ? as_int(a) == as_int(b) : num(a) == num(b);
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return true;
    case Value::Kind::kString: return a.s == b.s;
    case Value::Kind::kList:
      if (a.list->size() != b.list->size()) return false;
      for (size_t i = 0; i < a.list->size(); ++i)
        if (!equal((*a.list)[i], (*b.list)[i])) return false;
      return true;
    case Value::Kind::kDict:
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [k, v] : *a.dict) {
        const Value* o = b.find(k);
        if (!o || !equal(v, *o)) return false;
      }
      return true;
    default: return false;
  }
}

// Code points of a UTF-8 string as byte offsets (for Python-style indexing and len()).
std::vector<size_t> char_starts(const std::string& s) {
  std::vector<size_t> st;
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) st.push_back(i);
  return st;
}

int64_t length(const Value& v, int line) {
  switch (v.kind) {
    case Value::Kind::kString: return static_cast<int64_t>(char_starts(v.s).size());
    case Value::Kind::kList: return static_cast<int64_t>(v.list->size());
    case Value::Kind::kDict: return static_cast<int64_t>(v.dict->size());
    case Value::Kind::kUndefined: return 0;
    default: fail(line, "length of a value that has none (" + repr(v) + ")");
  }
}

// The items a for loop or a list() visits: list items, dict keys, string characters.
List iterate(const Value& v, int line) {
  switch (v.kind) {
    case Value::Kind::kUndefined: return {};
    case Value::Kind::kList: return *v.list;
    case Value::Kind::kDict: {
      List keys;
      for (const auto& kv : *v.dict) keys.push_back(Value::str(kv.first));
      return keys;
    }
    case Value::Kind::kString: {
      List chars;
      const auto st = char_starts(v.s);
      if (st.size() > kMaxListItems) fail(line, "string too long to split into characters");
      for (size_t i = 0; i < st.size(); ++i)
        chars.push_back(Value::str(v.s.substr(st[i], (i + 1 < st.size() ? st[i + 1] : v.s.size()) - st[i])));
      return chars;
    }
    default: fail(line, "cannot iterate over " + repr(v));
  }
}

Value items_of(const Value& d, int line) {
  if (d.kind != Value::Kind::kDict) fail(line, "items() of a value that is not a mapping");
  List out;
  for (const auto& [k, v] : *d.dict) out.push_back(Value::make_list({Value::str(k), v}));
  return Value::make_list(std::move(out));
}

// Python's str.strip family: `chars` (default whitespace) removed from the chosen ends.
std::string strip(const std::string& s, const Value* chars, bool left, bool right) {
  const std::string set = chars && chars->kind == Value::Kind::kString ? chars->s : std::string(" \t\n\r\f\v");
  size_t a = 0, b = s.size();
  if (left)
    while (a < b && set.find(s[a]) != std::string::npos) ++a;
  if (right)
    while (b > a && set.find(s[b - 1]) != std::string::npos) --b;
  return s.substr(a, b - a);
}

// Case mapping of ASCII, Latin-1, basic Greek and Cyrillic letters (Python maps all of
// Unicode; chat templates apply upper/lower to role names and short ASCII strings).
uint32_t case_map(uint32_t cp, bool to_upper) {
  if (to_upper) {
    if (cp >= 'a' && cp <= 'z') return cp - 32;
    if ((cp >= 0xE0 && cp <= 0xFE && cp != 0xF7) || (cp >= 0x3B1 && cp <= 0x3C9 && cp != 0x3C2) ||
        (cp >= 0x430 && cp <= 0x44F))
      return cp - 0x20;
    if (cp >= 0x450 && cp <= 0x45F) return cp - 0x50;
  } else {
    if (cp >= 'A' && cp <= 'Z') return cp + 32;
    if ((cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) || (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) ||
        (cp >= 0x410 && cp <= 0x42F))
      return cp + 0x20;
    if (cp >= 0x400 && cp <= 0x40F) return cp + 0x50;
  }
  return cp;
}

std::string map_case(const std::string& s, bool to_upper) {
  std::string o;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      o += static_cast<char>(case_map(c, to_upper));
      ++i;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {  // the mapped letters are all 2-byte
      const uint32_t cp = case_map(((c & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu), to_upper);
      o += static_cast<char>(0xC0 | (cp >> 6));
      o += static_cast<char>(0x80 | (cp & 0x3F));
      i += 2;
    } else {
      o += s[i++];
    }
  }
  return o;
}
std::string upper(const std::string& s) { return map_case(s, true); }
std::string lower(const std::string& s) { return map_case(s, false); }
std::string title(std::string s) {  // ASCII letters: upper after a non-letter, lower after a letter
  bool prev_alpha = false;
  for (char& c : s) {
    const bool a = std::isalpha(static_cast<unsigned char>(c));
    if (a) c = static_cast<char>(prev_alpha ? std::tolower(static_cast<unsigned char>(c)) : std::toupper(static_cast<unsigned char>(c)));
    prev_alpha = a;
  }
  return s;
}
std::string capitalize(std::string s) {
  s = lower(s);
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}
std::string replace_all(const std::string& s, const std::string& a, const std::string& b, int64_t count, int line) {
  if (a.empty()) return s;  // Python inserts between characters; templates never do this
  std::string o;
  size_t pos = 0;
  for (int64_t n = 0; count < 0 || n < count; ++n) {
    const size_t f = s.find(a, pos);
    if (f == std::string::npos) break;
    o += s.substr(pos, f - pos) + b;
    check_bytes(o.size(), line);
    pos = f + a.size();
  }
  return o + s.substr(pos);
}

Value split(const std::string& s, const Value* sep, int64_t maxsplit) {
  List out;
  if (!sep || sep->kind == Value::Kind::kNone) {  // runs of whitespace, no empty strings
    size_t i = 0;
    int64_t n = 0;
    while (true) {
      while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
      if (i >= s.size()) break;
      if (maxsplit >= 0 && n == maxsplit) {
        out.push_back(Value::str(strip(s.substr(i), nullptr, false, true)));
        break;
      }
      size_t j = i;
      while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
      out.push_back(Value::str(s.substr(i, j - i)));
      ++n;
      i = j;
    }
  } else {
    size_t pos = 0;
    for (int64_t n = 0; maxsplit < 0 || n < maxsplit; ++n) {
      const size_t f = sep->s.empty() ? std::string::npos : s.find(sep->s, pos);
      if (f == std::string::npos) break;
      out.push_back(Value::str(s.substr(pos, f - pos)));
      pos = f + sep->s.size();
    }
    out.push_back(Value::str(s.substr(pos)));
  }
  return Value::make_list(std::move(out));
}

// Python slice indices for a sequence of n items.
List slice_items(const List& items, const Value& a, const Value& b, const Value& c, int line) {
  const int64_t n = static_cast<int64_t>(items.size());
  const int64_t step = c.is_undefined() || c.kind == Value::Kind::kNone ? 1 : as_int(c);
  if (step == 0) fail(line, "slice step cannot be zero");
  auto bound = [&](const Value& v, int64_t dflt) {
    if (v.is_undefined() || v.kind == Value::Kind::kNone) return dflt;
    int64_t x = as_int(v);
    if (x < 0) x += n;
    return step > 0 ? std::clamp<int64_t>(x, 0, n) : std::clamp<int64_t>(x, -1, n - 1);
  };
  const int64_t start = bound(a, step > 0 ? 0 : n - 1), stop = bound(b, step > 0 ? n : -1);
  List out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
    out.push_back(items[static_cast<size_t>(i)]);
    if (__builtin_add_overflow(i, step, &i)) break;  // past either end: the slice is done
  }
  return out;
}

// ---- the evaluator -----------------------------------------------------------------------

enum class Flow { kNormal, kBreak, kContinue };

class Renderer {
 public:
  explicit Renderer(const Dict& globals) {
    scopes_.emplace_back();
    for (const auto& [k, v] : globals) scopes_.back()[k] = v;
  }

  // `n` units of work; the render fails past kMaxSteps.
  void step(int line, int64_t n = 1) {
    if ((steps_ += n) > kMaxSteps) fail(line, "the template runs too long (more than " + std::to_string(kMaxSteps) + " steps)");
  }

  Flow run(const Body& body, std::string& out) {
    for (const auto& n : body) {
      const Flow f = exec(*n, out);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

 private:
  Flow exec(const Node& n, std::string& out) {
    step(n.line);
    switch (n.kind) {
      case Node::Kind::kText: out += n.text; check_bytes(out.size(), n.line); return Flow::kNormal;
      case Node::Kind::kOutput: out += to_str(eval(*n.expr)); check_bytes(out.size(), n.line); return Flow::kNormal;
      case Node::Kind::kIf:
        for (const auto& [cond, body] : n.branches)
          if (!cond || truthy(eval(*cond))) return run(body, out);
        return Flow::kNormal;
      case Node::Kind::kFor: return exec_for(n, out);
      case Node::Kind::kSet: scopes_.back()[n.targets[0]] = eval(*n.expr); return Flow::kNormal;
      case Node::Kind::kSetAttr: {
        const Value obj = lookup(n.targets[0]);
        if (obj.kind != Value::Kind::kDict || !obj.is_namespace)
          fail(n.line, "'" + n.targets[0] + "' is not a namespace(): cannot set an attribute on it");
        Value v = eval(*n.expr);
        // No namespace inside a namespace: it could then hold itself (a reference cycle that
        // is never freed and that repr/tojson would follow forever).
        if (v.is_namespace || v.holds_namespace) fail(n.line, "a namespace attribute cannot hold a namespace");
        for (auto& kv : *obj.dict)
          if (kv.first == n.targets[1]) {
            kv.second = std::move(v);
            return Flow::kNormal;
          }
        obj.dict->emplace_back(n.targets[1], std::move(v));
        return Flow::kNormal;
      }
      case Node::Kind::kBreak: return Flow::kBreak;
      case Node::Kind::kContinue: return Flow::kContinue;
      case Node::Kind::kBlock: return run(n.body, out);
    }
    return Flow::kNormal;
  }

  Flow exec_for(const Node& n, std::string& out) {
    List items = iterate(eval(*n.expr), n.line);
    auto bind = [&](const Value& item) {
      if (n.targets.size() == 1) {
        scopes_.back()[n.targets[0]] = item;
        return;
      }
      if (item.kind != Value::Kind::kList || item.list->size() != n.targets.size())
        fail(n.line, "cannot unpack " + repr(item) + " into " + std::to_string(n.targets.size()) + " loop variables");
      for (size_t k = 0; k < n.targets.size(); ++k) scopes_.back()[n.targets[k]] = (*item.list)[k];
    };
    scopes_.emplace_back();
    if (n.filter) {  // `for x in xs if cond`: the loop (and loop.length) sees the kept items
      List kept;
      for (const auto& it : items) {
        bind(it);
        if (truthy(eval(*n.filter))) kept.push_back(it);
      }
      items = std::move(kept);
    }
    const int64_t len = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < len; ++i) {
      step(n.line);
      bind(items[static_cast<size_t>(i)]);
      Dict loop{{"index", Value::integer(i + 1)},
                {"index0", Value::integer(i)},
                {"revindex", Value::integer(len - i)},
                {"revindex0", Value::integer(len - i - 1)},
                {"first", Value::boolean(i == 0)},
                {"last", Value::boolean(i == len - 1)},
                {"length", Value::integer(len)}};
      if (i > 0) loop.emplace_back("previtem", items[static_cast<size_t>(i - 1)]);
      if (i + 1 < len) loop.emplace_back("nextitem", items[static_cast<size_t>(i + 1)]);
      scopes_.back()["loop"] = Value::make_dict(std::move(loop));
      if (run(n.body, out) == Flow::kBreak) break;
    }
    scopes_.pop_back();
    if (len == 0) run(n.else_body, out);
    return Flow::kNormal;
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return {};
  }

  // Attribute or item of `obj` (Jinja tries both); undefined when absent. Jinja2's default
  // Undefined refuses any access on an undefined value.
  static Value member(const Value& obj, const Value& key, int line, const std::string& what) {
    switch (obj.kind) {
      case Value::Kind::kUndefined: fail(line, what + " is undefined");
      case Value::Kind::kDict:
        if (key.kind == Value::Kind::kString)
          if (const Value* v = obj.find(key.s)) return *v;
        return {};
      case Value::Kind::kList: {
        if (!is_intlike(key)) return {};
        int64_t i = as_int(key);
        const int64_t n = static_cast<int64_t>(obj.list->size());
        if (i < 0) i += n;
        return i >= 0 && i < n ? (*obj.list)[static_cast<size_t>(i)] : Value{};
      }
      case Value::Kind::kString: {
        if (!is_intlike(key)) return {};
        const List chars = iterate(obj, line);
        int64_t i = as_int(key);
        const int64_t n = static_cast<int64_t>(chars.size());
        if (i < 0) i += n;
        return i >= 0 && i < n ? chars[static_cast<size_t>(i)] : Value{};
      }
      default: return {};
    }
  }

  static std::string describe(const Expr& e) {
    if (e.kind == Expr::Kind::kName) return "'" + e.name + "'";
    if (e.kind == Expr::Kind::kAttr) return describe(*e.args[0]) + "." + e.name;
    return "value";
  }

  // Every expression counts as a step (more for a big result), and no value it yields may
  // exceed Value::kMaxBytes.
  Value eval(const Expr& e) {
    step(e.line);
    Value v = eval_expr(e);
    check_bytes(bytes_of(v), e.line);
    step(e.line, static_cast<int64_t>(bytes_of(v) / kBytesPerStep));
    return v;
  }

  Value eval_expr(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral: return e.value;
      case Expr::Kind::kName: return lookup(e.name);
      case Expr::Kind::kAttr: return member(eval(*e.args[0]), Value::str(e.name), e.line, describe(*e.args[0]));
      case Expr::Kind::kIndex: return member(eval(*e.args[0]), eval(*e.args[1]), e.line, describe(*e.args[0]));
      case Expr::Kind::kSlice: {
        const Value obj = eval(*e.args[0]);
        Value part[3];
        for (int k = 0; k < 3; ++k)
          if (e.args[1 + k]) part[k] = eval(*e.args[1 + k]);
        if (obj.kind == Value::Kind::kString) {
          std::string s;
          for (const auto& c : slice_items(iterate(obj, e.line), part[0], part[1], part[2], e.line)) s += c.s;
          return Value::str(std::move(s));
        }
        if (obj.kind != Value::Kind::kList) fail(e.line, "cannot slice " + repr(obj));
        return Value::make_list(slice_items(*obj.list, part[0], part[1], part[2], e.line));
      }
      case Expr::Kind::kCall: return call(e);
      case Expr::Kind::kFilter: return filter(e);
      case Expr::Kind::kTest: {
        const bool r = test(e);
        return Value::boolean(e.negate ? !r : r);
      }
      case Expr::Kind::kNot: return Value::boolean(!truthy(eval(*e.args[0])));
      case Expr::Kind::kNeg: {
        const Value v = eval(*e.args[0]);
        if (!v.is_number()) fail(e.line, "bad operand for unary -: " + repr(v));
        return is_intlike(v) ? Value::integer(checked_op('-', 0, as_int(v), e.line)) : Value::real(-v.f);
      }
      case Expr::Kind::kAnd: {
        Value a = eval(*e.args[0]);
        return truthy(a) ? eval(*e.args[1]) : a;
      }
      case Expr::Kind::kOr: {
        Value a = eval(*e.args[0]);
        return truthy(a) ? a : eval(*e.args[1]);
      }
      case Expr::Kind::kCond:
        if (truthy(eval(*e.args[0]))) return eval(*e.args[1]);
        return e.args[2] ? eval(*e.args[2]) : Value{};
      case Expr::Kind::kList: {
        List l;
        for (const auto& a : e.args) l.push_back(eval(*a));
        return Value::make_list(std::move(l));
      }
      case Expr::Kind::kDict: {
        Dict d;
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          const Value key = eval(*e.args[k]);
          if (key.kind != Value::Kind::kString) fail(e.line, "only string dict keys are supported");
          d.emplace_back(key.s, eval(*e.args[k + 1]));
        }
        return Value::make_dict(std::move(d));
      }
      case Expr::Kind::kBinary: return binary(e.name, eval(*e.args[0]), eval(*e.args[1]), e.line);
    }
    return {};
  }

  static Value binary(const std::string& op, const Value& a, const Value& b, int line) {
    if (op == "~") return Value::str(to_str(a) + to_str(b));
    if (op == "==") return Value::boolean(equal(a, b));
    if (op == "!=") return Value::boolean(!equal(a, b));
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.kind == Value::Kind::kString) {
        if (a.kind != Value::Kind::kString) fail(line, "'in <string>' requires a string on the left");
        found = b.s.find(a.s) != std::string::npos;
      } else if (b.kind == Value::Kind::kList) {
        found = std::any_of(b.list->begin(), b.list->end(), [&](const Value& x) { return equal(a, x); });
      } else if (b.kind == Value::Kind::kDict) {
        found = a.kind == Value::Kind::kString && b.find(a.s) != nullptr;
      } else if (!b.is_undefined()) {
        fail(line, "'in' needs a string, list or mapping on the right, not " + repr(b));
      }
      return Value::boolean(op == "in" ? found : !found);
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int c;
      if (a.is_number() && b.is_number()) c = num(a) < num(b) ? -1 : num(a) > num(b) ? 1 : 0;
      else if (a.kind == Value::Kind::kString && b.kind == Value::Kind::kString) c = a.s.compare(b.s);
      else fail(line, "cannot compare " + repr(a) + " and " + repr(b));
      return Value::boolean(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
    }
    if (op == "+") {
      if (a.kind == Value::Kind::kString && b.kind == Value::Kind::kString) return Value::str(a.s + b.s);
      if (a.kind == Value::Kind::kList && b.kind == Value::Kind::kList) {
        List l = *a.list;
        l.insert(l.end(), b.list->begin(), b.list->end());
        return Value::make_list(std::move(l));
      }
    }
    if (op == "*" && a.kind == Value::Kind::kString && is_intlike(b)) {
      if (as_int(b) > 0 && !a.s.empty()) check_bytes(static_cast<uint64_t>(as_int(b)) > Value::kMaxBytes ? Value::kMaxBytes + 1 : a.s.size() * static_cast<size_t>(as_int(b)), line);
      std::string s;
      for (int64_t k = 0; k < as_int(b); ++k) s += a.s;
      return Value::str(std::move(s));
    }
    if (!a.is_number() || !b.is_number())
      fail(line, "unsupported operands for " + op + ": " + repr(a) + " and " + repr(b));
    const bool ints = is_intlike(a) && is_intlike(b);
    const double x = num(a), y = num(b);
    if (op == "+") return ints ? Value::integer(checked_op('+', as_int(a), as_int(b), line)) : Value::real(x + y);
    if (op == "-") return ints ? Value::integer(checked_op('-', as_int(a), as_int(b), line)) : Value::real(x - y);
    if (op == "*") return ints ? Value::integer(checked_op('*', as_int(a), as_int(b), line)) : Value::real(x * y);
    // INT64_MIN // -1 and INT64_MIN % -1 overflow in C++ (Python gives 2^63 and 0).
    if (ints && as_int(b) == -1 && as_int(a) == INT64_MIN && (op == "//" || op == "%")) fail(line, "integer overflow");
    if (y == 0 && (op == "/" || op == "//" || op == "%")) fail(line, "division by zero");
    if (op == "/") return Value::real(x / y);
    if (op == "//") {
      if (!ints) return Value::real(std::floor(x / y));
      const int64_t p = as_int(a), q = as_int(b);
      return Value::integer(p / q - ((p % q != 0) && ((p < 0) != (q < 0))));
    }
    if (op == "%") {
      if (!ints) return Value::real(x - y * std::floor(x / y));
      const int64_t q = as_int(b), r = as_int(a) % q;
      return Value::integer(r != 0 && ((r < 0) != (q < 0)) ? r + q : r);
    }
    if (op == "**") return ints && as_int(b) >= 0 ? Value::integer(static_cast<int64_t>(std::llround(std::pow(x, y)))) : Value::real(std::pow(x, y));
    fail(line, "unknown operator " + op);
  }

  // Positional argument k, else keyword `name`, else nullptr.
  const Expr* arg(const Expr& e, size_t k, const char* name, size_t first_positional) {
    if (first_positional + k < e.args.size()) return e.args[first_positional + k].get();
    for (const auto& [kn, kv] : e.kwargs)
      if (kn == name) return kv.get();
    return nullptr;
  }
  Value arg_value(const Expr& e, size_t k, const char* name, size_t first, Value dflt = {}) {
    const Expr* a = arg(e, k, name, first);
    return a ? eval(*a) : dflt;
  }

  Value call(const Expr& e) {
    const Expr& target = *e.args[0];
    if (target.kind == Expr::Kind::kName) {
      if (target.name == "raise_exception") throw TemplateError("the chat template raised: " + to_str(arg_value(e, 0, "message", 1)));
      if (target.name == "namespace") {
        Dict d;
        for (const auto& [k, v] : e.kwargs) d.emplace_back(k, eval(*v));
        Value ns = Value::make_dict(std::move(d));
        ns.is_namespace = true;
        return ns;
      }
      // range(stop) / range(start, stop[, step])
      std::vector<int64_t> a;
      for (size_t k = 1; k < e.args.size(); ++k) a.push_back(as_int(eval(*e.args[k])));
      if (a.empty() || a.size() > 3) fail(e.line, "range() takes 1 to 3 arguments");
      const int64_t start = a.size() == 1 ? 0 : a[0], stop = a.size() == 1 ? a[0] : a[1], step = a.size() == 3 ? a[2] : 1;
      if (step == 0) fail(e.line, "range() step cannot be zero");
      List l;
      for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
        l.push_back(Value::integer(i));
        if (l.size() > kMaxListItems) fail(e.line, "range() too long");
        if (__builtin_add_overflow(i, step, &i)) break;  // beyond int64: past any stop
      }
      return Value::make_list(std::move(l));
    }
    // A method: target is obj.name
    const Value obj = eval(*target.args[0]);
    const std::string& m = target.name;
    if (obj.kind == Value::Kind::kDict) {
      if (m == "items") return items_of(obj, e.line);
      if (m == "keys") return Value::make_list(iterate(obj, e.line));
      if (m == "values") {
        List l;
        for (const auto& kv : *obj.dict) l.push_back(kv.second);
        return Value::make_list(std::move(l));
      }
      if (m == "get") {
        const Value key = arg_value(e, 0, "key", 1);
        const Value* v = key.kind == Value::Kind::kString ? obj.find(key.s) : nullptr;
        return v ? *v : arg_value(e, 1, "default", 1, Value::none());
      }
    }
    if (obj.kind == Value::Kind::kString) {
      const std::string& s = obj.s;
      if (m == "strip" || m == "lstrip" || m == "rstrip") {
        const Value chars = arg_value(e, 0, "chars", 1);
        return Value::str(strip(s, chars.is_undefined() ? nullptr : &chars, m != "rstrip", m != "lstrip"));
      }
      if (m == "startswith" || m == "endswith") {
        const Value p = arg_value(e, 0, "prefix", 1);
        if (p.kind != Value::Kind::kString) fail(e.line, m + "() needs a string");
        const bool r = p.s.size() <= s.size() &&
                       (m == "startswith" ? s.compare(0, p.s.size(), p.s) == 0 : s.compare(s.size() - p.s.size(), p.s.size(), p.s) == 0);
        return Value::boolean(r);
      }
      if (m == "split") {
        const Value sep = arg_value(e, 0, "sep", 1);
        const Value mx = arg_value(e, 1, "maxsplit", 1, Value::integer(-1));
        return split(s, sep.is_undefined() ? nullptr : &sep, as_int(mx));
      }
      if (m == "upper") return Value::str(upper(s));
      if (m == "lower") return Value::str(lower(s));
      if (m == "title") return Value::str(title(s));
      if (m == "capitalize") return Value::str(capitalize(s));
      if (m == "replace")
        return Value::str(replace_all(s, to_str(arg_value(e, 0, "old", 1)), to_str(arg_value(e, 1, "new", 1)),
                                      as_int(arg_value(e, 2, "count", 1, Value::integer(-1))), e.line));
    }
    fail(e.line, "no method '" + m + "' on " + repr(obj));
  }

  Value filter(const Expr& e) {
    const Value v = eval(*e.args[0]);
    const std::string& f = e.name;
    if (f == "trim") {
      const Value chars = arg_value(e, 0, "chars", 1);
      return Value::str(strip(to_str(v), chars.is_undefined() ? nullptr : &chars, true, true));
    }
    if (f == "length" || f == "count") return Value::integer(length(v, e.line));
    if (f == "upper") return Value::str(upper(to_str(v)));
    if (f == "lower") return Value::str(lower(to_str(v)));
    if (f == "title") return Value::str(title(to_str(v)));
    if (f == "capitalize") return Value::str(capitalize(to_str(v)));
    if (f == "default" || f == "d") {
      const bool boolean = truthy(arg_value(e, 1, "boolean", 1, Value::boolean(false)));
      if (v.is_undefined() || (boolean && !truthy(v))) return arg_value(e, 0, "default_value", 1, Value::str(""));
      return v;
    }
    if (f == "tojson") {
      const Value ind = arg_value(e, 0, "indent", 1, Value::none());
      std::string o;
      // Indents beyond 64 spaces are refused rather than multiplied into gigabytes.
      if (ind.kind != Value::Kind::kNone && as_int(ind) > 64) fail(e.line, "tojson indent beyond 64");
      to_json(v, o, ind.kind == Value::Kind::kNone ? -1 : static_cast<int>(std::max<int64_t>(as_int(ind), -1)), 0, e.line);
      return Value::str(std::move(o));
    }
    if (f == "string") return Value::str(to_str(v));
    if (f == "safe") return v;
    if (f == "int") {
      if (v.is_number()) return Value::integer(is_intlike(v) ? as_int(v) : float_to_int(v.f, e.line));
      try {
        return Value::integer(std::stoll(strip(to_str(v), nullptr, true, true)));
      } catch (const std::exception&) {
        return arg_value(e, 0, "default", 1, Value::integer(0));
      }
    }
    if (f == "float") {
      if (v.is_number()) return Value::real(num(v));
      try {
        return Value::real(std::stod(to_str(v)));
      } catch (const std::exception&) {
        return arg_value(e, 0, "default", 1, Value::real(0));
      }
    }
    if (f == "abs") {
      if (!v.is_number()) fail(e.line, "abs of " + repr(v));
      if (is_intlike(v) && as_int(v) == INT64_MIN) fail(e.line, "integer overflow");
      return is_intlike(v) ? Value::integer(std::llabs(as_int(v))) : Value::real(std::fabs(v.f));
    }
    if (f == "first" || f == "last") {
      const List items = iterate(v, e.line);
      if (items.empty()) return {};
      return f == "first" ? items.front() : items.back();
    }
    if (f == "list") return Value::make_list(iterate(v, e.line));
    if (f == "items") return items_of(v, e.line);
    if (f == "reverse") {
      List items = iterate(v, e.line);
      std::reverse(items.begin(), items.end());
      if (v.kind == Value::Kind::kString) {
        std::string s;
        for (const auto& c : items) s += c.s;
        return Value::str(std::move(s));
      }
      return Value::make_list(std::move(items));
    }
    if (f == "join") {
      const std::string sep = to_str(arg_value(e, 0, "d", 1, Value::str("")));
      const Value attr = arg_value(e, 1, "attribute", 1);
      std::string o;
      bool first = true;
      for (const auto& it : iterate(v, e.line)) {
        if (!first) o += sep;
        first = false;
        o += to_str(attr.is_undefined() ? it : member(it, attr, e.line, "item"));
        check_bytes(o.size(), e.line);
      }
      return Value::str(std::move(o));
    }
    if (f == "replace")
      return Value::str(replace_all(to_str(v), to_str(arg_value(e, 0, "old", 1)), to_str(arg_value(e, 1, "new", 1)),
                                    as_int(arg_value(e, 2, "count", 1, Value::integer(-1))), e.line));
    fail(e.line, "unsupported filter '" + f + "'");
  }

  bool test(const Expr& e) {
    const std::string& t = e.name;
    const Value v = eval(*e.args[0]);
    if (t == "defined") return !v.is_undefined();
    if (t == "undefined") return v.is_undefined();
    if (t == "none") return v.kind == Value::Kind::kNone;
    if (t == "string") return v.kind == Value::Kind::kString;
    if (t == "number") return v.is_number();
    if (t == "integer") return v.kind == Value::Kind::kInt;
    if (t == "float") return v.kind == Value::Kind::kFloat;
    if (t == "boolean") return v.kind == Value::Kind::kBool;
    if (t == "true") return v.kind == Value::Kind::kBool && v.b;
    if (t == "false") return v.kind == Value::Kind::kBool && !v.b;
    if (t == "mapping") return v.kind == Value::Kind::kDict;
    if (t == "sequence")
      return v.kind == Value::Kind::kList || v.kind == Value::Kind::kString || v.kind == Value::Kind::kDict;
    if (t == "iterable")
      return v.kind == Value::Kind::kList || v.kind == Value::Kind::kString || v.kind == Value::Kind::kDict ||
             v.is_undefined();
    if (t == "odd" || t == "even") {
      if (!is_intlike(v)) fail(e.line, "'" + t + "' test of a non-integer");
      return (as_int(v) % 2 != 0) == (t == "odd");
    }
    const Value other = arg_value(e, 0, "other", 1);
    if (t == "eq" || t == "equalto") return equal(v, other);
    if (t == "ne") return !equal(v, other);
    if (t == "in") return truthy(binary("in", v, other, e.line));
    static const std::map<std::string, std::string> kCmp{{"lt", "<"}, {"gt", ">"}, {"le", "<="}, {"ge", ">="}};
    if (auto it = kCmp.find(t); it != kCmp.end()) return truthy(binary(it->second, v, other, e.line));
    fail(e.line, "unsupported test '" + t + "'");
  }

  std::vector<std::map<std::string, Value>> scopes_;  // globals first, innermost loop last
  int64_t steps_ = 0;                                  // see step()
};

}  // namespace

Value Value::make_list(List l) {
  Value v;
  v.kind = Kind::kList;
  nest_over(v, l, [](const Value& x) -> const Value& { return x; });
  v.list = std::make_shared<List>(std::move(l));
  return v;
}

Value Value::make_dict(Dict d) {
  Value v;
  v.kind = Kind::kDict;
  nest_over(v, d, [](const std::pair<std::string, Value>& kv) -> const Value& { return kv.second; });
  v.dict = std::make_shared<Dict>(std::move(d));
  return v;
}

}  // namespace jinja

std::string ChatTemplate::Program::render(const jinja::Dict& globals) const {
  jinja::Renderer r(globals);
  std::string out;
  r.run(body, out);
  return out;
}

}  // namespace smolq
