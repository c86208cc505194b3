// Chat-template rendering: walks the syntax tree that chat_template.cpp builds, with Jinja2 /
// Python semantics for the supported subset (see chat_template.h; the semantics of values are
// in chat_template_value.cpp): statements, expressions and operators (floor division and
// modulo, ordering), the functions, methods, filters and tests, and Jinja2's scoping (a for
// loop's body has its own scope, so `set` inside it does not leak out; namespace() objects are
// the way out).
#include <algorithm>
#include <cmath>
#include <map>

#include "text/chat_template_value.h"

namespace smolq {
namespace jinja {
namespace {

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

}  // namespace jinja

std::string ChatTemplate::Program::render(const jinja::Dict& globals) const {
  jinja::Renderer r(globals);
  std::string out;
  r.run(body, out);
  return out;
}

}  // namespace smolq
