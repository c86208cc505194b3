// Internals of the chat-template interpreter (text/chat_template.h): the value model and
// the syntax tree the parser (chat_template.cpp) builds and the evaluator
// (chat_template_eval.cpp) walks. Not for use outside the chat-template files
// (text/chat_template*.cpp).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/chat_template.h"

namespace smolq::jinja {

// The error of every stage (lexing, parsing, rendering): a TemplateError naming the line.
[[noreturn]] inline void fail(int line, const std::string& msg) {
  throw TemplateError("chat template line " + std::to_string(line) + ": " + msg);
}

struct Value;
using List = std::vector<Value>;
// Dicts keep insertion order, as Python's do (items() and tojson show it).
using Dict = std::vector<std::pair<std::string, Value>>;

// A Jinja value. Lists and dicts are shared and immutable, except a namespace() object,
// whose attributes `{% set ns.x = ... %}` changes in place (every copy sees the change).
struct Value {
  enum class Kind : uint8_t { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict };
  Kind kind = Kind::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;
  bool is_namespace = false;
  // Lists/dicts nested below this value (0 for scalars), and whether a namespace() object is
  // this value or inside it. Kept by make_list / make_dict, which refuse nesting beyond
  // kMaxDepth: the walks over values (repr, tojson, ==, destruction) recurse, and a template
  // from the internet must not overflow the stack or make a namespace that holds itself.
  uint16_t depth = 0;
  bool holds_namespace = false;
  static constexpr uint16_t kMaxDepth = 64;
  // Bytes of the strings inside a list/dict plus kItemBytes per item, capped at kMaxBytes
  // like any one string (a prompt is kilobytes; this bounds what copies can cost).
  size_t bytes = 0;
  static constexpr size_t kItemBytes = 16;
  static constexpr size_t kMaxBytes = size_t{1} << 22;

  static Value none() { Value v; v.kind = Kind::kNone; return v; }
  static Value boolean(bool x) { Value v; v.kind = Kind::kBool; v.b = x; return v; }
  static Value integer(int64_t x) { Value v; v.kind = Kind::kInt; v.i = x; return v; }
  static Value real(double x) { Value v; v.kind = Kind::kFloat; v.f = x; return v; }
  static Value str(std::string x) { Value v; v.kind = Kind::kString; v.s = std::move(x); return v; }
  static Value make_list(List l);  // throw TemplateError beyond kMaxDepth (chat_template_value.cpp)
  static Value make_dict(Dict d);

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_number() const { return kind == Kind::kInt || kind == Kind::kFloat || kind == Kind::kBool; }
  const Value* find(const std::string& key) const;  // dict entry or nullptr
};

// ---- syntax tree -------------------------------------------------------------------------

struct Expr;
using ExprP = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind : uint8_t {
    kLiteral,   // value
    kName,      // name
    kAttr,      // args[0].name
    kIndex,     // args[0][args[1]]
    kSlice,     // args[0][args[1]:args[2]:args[3]] (null parts are omitted bounds)
    kCall,      // args[0](args[1..], kwargs)
    kFilter,    // args[0] | name(args[1..], kwargs)
    kTest,      // args[0] is [not] name(args[1..])
    kNot,       // not args[0]
    kNeg,       // -args[0]
    kBinary,    // args[0] op args[1]  (arithmetic, ~, comparisons, in, not in)
    kAnd, kOr,  // short-circuit
    kCond,      // args[1] if args[0] else args[2] (args[2] may be null: undefined)
    kList,      // [args...]
    kDict,      // {kwargs keys (as expressions in args, even) : values (odd)}
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;  // variable, attribute, filter, test or operator
  bool negate = false;
  std::vector<ExprP> args;
  std::vector<std::pair<std::string, ExprP>> kwargs;
};

struct Node;
using NodeP = std::unique_ptr<Node>;
using Body = std::vector<NodeP>;

struct Node {
  enum class Kind : uint8_t { kText, kOutput, kIf, kFor, kSet, kSetAttr, kBreak, kContinue, kBlock };
  Kind kind;
  int line = 0;
  std::string text;                 // kText
  ExprP expr;                       // kOutput / kSet / kSetAttr value; kFor iterable
  // kIf: (condition, body) per if / elif branch; a null condition is the else branch.
  std::vector<std::pair<ExprP, Body>> branches;
  std::vector<std::string> targets; // kFor loop variables; kSet name; kSetAttr {object, attribute}
  ExprP filter;                     // kFor ... if filter
  Body body, else_body;             // kFor body and else; kBlock body
};

}  // namespace smolq::jinja

namespace smolq {

struct ChatTemplate::Program {
  jinja::Body body;
  // Renders with the given global variables.
  std::string render(const jinja::Dict& globals) const;  // chat_template_eval.cpp
};

}  // namespace smolq
