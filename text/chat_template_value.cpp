// Chat-template values: Python semantics for the evaluator (chat_template_eval.cpp) — str()
// and repr() of values, Hugging Face's JSON `tojson`, truthiness, equality, len(), iteration,
// code-point string indexing and slicing, the str methods — and the limits every list or dict
// is built under (Value::make_list / make_dict). Declared in chat_template_value.h.
#include "text/chat_template_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace smolq::jinja {

const Value* Value::find(const std::string& key) const {
  if (kind != Kind::kDict) return nullptr;
  for (const auto& [k, v] : *dict)
    if (k == key) return &v;
  return nullptr;
}

namespace {

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

}  // namespace

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

// ---- conversions -------------------------------------------------------------------------

namespace {

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

}  // namespace

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

namespace {

// Code points of a UTF-8 string as byte offsets (for Python-style indexing and len()).
std::vector<size_t> char_starts(const std::string& s) {
  std::vector<size_t> st;
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) st.push_back(i);
  return st;
}

}  // namespace

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

namespace {

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

}  // namespace
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

}  // namespace smolq::jinja
