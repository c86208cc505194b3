// Chat-template parsing: the segments and tokens of the lexer (chat_template_lex.cpp) ->
// syntax tree (chat_template_ast.h). Rendering is in chat_template_eval.cpp.
#include "text/chat_template.h"

#include <array>
#include <memory>
#include <set>

#include "text/chat_template_ast.h"
#include "text/chat_template_lex.h"

namespace smolq {
namespace jinja {
namespace {

// ---- expressions -------------------------------------------------------------------------

const std::set<std::string, std::less<>> kFilters{
    "trim", "length", "count", "upper", "lower", "title", "capitalize", "default", "d", "tojson", "string", "int",
    "float", "first", "last", "join", "replace", "list", "reverse", "abs", "items", "safe"};
const std::set<std::string, std::less<>> kTests{
    "defined", "undefined", "none", "string", "number", "integer", "float", "mapping", "sequence", "iterable",
    "boolean", "true", "false", "odd", "even", "eq", "equalto", "ne", "lt", "gt", "le", "ge", "in"};
const std::set<std::string, std::less<>> kFunctions{"raise_exception", "namespace", "range"};
const std::set<std::string, std::less<>> kMethods{
    "strip", "lstrip", "rstrip", "startswith", "endswith", "split", "upper", "lower", "replace", "title",
    "capitalize", "items", "keys", "values", "get"};

// Nesting limits of a template: the parser, the evaluator and the tree's destructors all
// recurse, so a template nested deeper than any real one ("((((...", "not not not ...", a
// chain of 10^5 '+') is refused instead of overflowing the stack.
constexpr int kMaxExprDepth = 256;   // syntax-tree height of one expression
constexpr int kMaxBlockNesting = 64;  // if / for / generation blocks inside each other

class ExprParser {
 public:
  ExprParser(std::vector<Tok> toks, int line) : t_(std::move(toks)), line_(line) {}

  // Counts tree height while a parse function runs: one for entering expression() (parens,
  // brackets, arguments), `not` and unary minus, one per link of a left-to-right chain
  // ("a + b + c", "x.y[0]", "v | f | g": each link is one more level of the tree).
  class Depth {
   public:
    explicit Depth(ExprParser& p, int enter = 1) : p_(p) {
      for (int k = 0; k < enter; ++k) add();
    }
    ~Depth() { p_.depth_ -= n_; }
    Depth(const Depth&) = delete;
    Depth& operator=(const Depth&) = delete;
    void add() {
      ++n_;
      if (++p_.depth_ > kMaxExprDepth) fail(p_.line_, "expression nested too deeply");
    }

   private:
    ExprParser& p_;
    int n_ = 0;
  };

  ExprP expression() {
    Depth d(*this);
    ExprP e = or_expr();
    if (at_name("if")) {
      ++p_;
      ExprP c = make(Expr::Kind::kCond);
      c->args.push_back(or_expr());   // condition
      c->args.push_back(std::move(e));
      if (at_name("else")) {
        ++p_;
        c->args.push_back(expression());
      } else {
        c->args.push_back(nullptr);
      }
      return c;
    }
    return e;
  }

  // The iterable of a for loop: no `a if b else c`, so `for x in xs if cond` parses.
  ExprP expression_no_cond() { return or_expr(); }

  bool at_end() const { return t_[p_].kind == Tok::Kind::kEnd; }
  bool at_name(std::string_view n) const { return t_[p_].kind == Tok::Kind::kName && t_[p_].s == n; }
  bool at_op(std::string_view o) const { return t_[p_].kind == Tok::Kind::kOp && t_[p_].s == o; }
  void expect_op(std::string_view o) {
    if (!at_op(o)) fail(line_, "expected '" + std::string(o) + "', found " + describe(t_[p_]));
    ++p_;
  }
  std::string expect_name() {
    if (t_[p_].kind != Tok::Kind::kName) fail(line_, "expected a name, found " + describe(t_[p_]));
    return t_[p_++].s;
  }
  void expect_end() {
    if (!at_end()) fail(line_, "unexpected " + describe(t_[p_]));
  }
  void skip() { ++p_; }

  static std::string describe(const Tok& t) {
    switch (t.kind) {
      case Tok::Kind::kEnd: return "end of tag";
      case Tok::Kind::kString: return "string '" + t.s + "'";
      case Tok::Kind::kInt: return "number " + std::to_string(t.i);
      case Tok::Kind::kFloat: return "a number";
      default: return "'" + t.s + "'";
    }
  }

 private:
  ExprP make(Expr::Kind k) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line_;
    return e;
  }
  ExprP binary(std::string op, ExprP a, ExprP b, Expr::Kind k = Expr::Kind::kBinary) {
    ExprP e = make(k);
    e->name = std::move(op);
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  ExprP or_expr() {
    Depth d(*this, 0);
    ExprP e = and_expr();
    while (at_name("or")) {
      ++p_;
      d.add();
      e = binary("or", std::move(e), and_expr(), Expr::Kind::kOr);
    }
    return e;
  }
  ExprP and_expr() {
    Depth d(*this, 0);
    ExprP e = not_expr();
    while (at_name("and")) {
      ++p_;
      d.add();
      e = binary("and", std::move(e), not_expr(), Expr::Kind::kAnd);
    }
    return e;
  }
  ExprP not_expr() {
    Depth d(*this);
    if (at_name("not")) {
      ++p_;
      ExprP e = make(Expr::Kind::kNot);
      e->args.push_back(not_expr());
      return e;
    }
    return compare();
  }
  ExprP compare() {
    Depth d(*this, 0);
    ExprP e = math1();
    for (;;) {
      d.add();
      std::string op;
      if (t_[p_].kind == Tok::Kind::kOp &&
          (at_op("==") || at_op("!=") || at_op("<") || at_op(">") || at_op("<=") || at_op(">="))) {
        op = t_[p_++].s;
      } else if (at_name("in")) {
        op = "in";
        ++p_;
      } else if (at_name("not") && t_[p_ + 1].kind == Tok::Kind::kName && t_[p_ + 1].s == "in") {
        op = "not in";
        p_ += 2;
      } else {
        return e;
      }
      e = binary(op, std::move(e), math1());
    }
  }
  ExprP math1() {
    Depth d(*this, 0);
    ExprP e = concat();
    while (at_op("+") || at_op("-")) {
      d.add();
      std::string op = t_[p_++].s;
      e = binary(op, std::move(e), concat());
    }
    return e;
  }
  ExprP concat() {
    Depth d(*this, 0);
    ExprP e = math2();
    while (at_op("~")) {
      d.add();
      ++p_;
      e = binary("~", std::move(e), math2());
    }
    return e;
  }
  ExprP math2() {
    Depth d(*this, 0);
    ExprP e = power();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      d.add();
      std::string op = t_[p_++].s;
      e = binary(op, std::move(e), power());
    }
    return e;
  }
  ExprP power() {
    Depth d(*this, 0);
    ExprP e = unary(true);
    while (at_op("**")) {
      d.add();
      ++p_;
      e = binary("**", std::move(e), unary(true));
    }
    return e;
  }
  ExprP unary(bool with_filter) {
    Depth d(*this);
    ExprP e;
    if (at_op("-")) {
      ++p_;
      e = make(Expr::Kind::kNeg);
      e->args.push_back(unary(false));
    } else if (at_op("+")) {
      ++p_;
      e = unary(false);
    } else {
      e = primary();
    }
    e = postfix(std::move(e));
    return with_filter ? filters(std::move(e)) : std::move(e);
  }

  void call_args(Expr& e) {
    expect_op("(");
    while (!at_op(")")) {
      if (t_[p_].kind == Tok::Kind::kName && t_[p_ + 1].kind == Tok::Kind::kOp && t_[p_ + 1].s == "=") {
        std::string k = t_[p_].s;
        p_ += 2;
        e.kwargs.emplace_back(std::move(k), expression());
      } else {
        if (!e.kwargs.empty()) fail(line_, "positional argument after a keyword argument");
        e.args.push_back(expression());
      }
      if (!at_op(",")) break;
      ++p_;
    }
    expect_op(")");
  }

  ExprP primary() {
    const Tok& t = t_[p_];
    switch (t.kind) {
      case Tok::Kind::kName: {
        ++p_;
        ExprP e = make(Expr::Kind::kLiteral);
        if (t.s == "true" || t.s == "True") e->value = Value::boolean(true);
        else if (t.s == "false" || t.s == "False") e->value = Value::boolean(false);
        else if (t.s == "none" || t.s == "None") e->value = Value::none();
        else e->kind = Expr::Kind::kName, e->name = t.s;
        return e;
      }
      case Tok::Kind::kString: {
        std::string s;
        while (t_[p_].kind == Tok::Kind::kString) s += t_[p_++].s;  // "a" "b" is "ab"
        ExprP e = make(Expr::Kind::kLiteral);
        e->value = Value::str(std::move(s));
        return e;
      }
      case Tok::Kind::kInt: {
        ++p_;
        ExprP e = make(Expr::Kind::kLiteral);
        e->value = Value::integer(t.i);
        return e;
      }
      case Tok::Kind::kFloat: {
        ++p_;
        ExprP e = make(Expr::Kind::kLiteral);
        e->value = Value::real(t.f);
        return e;
      }
      case Tok::Kind::kOp:
        if (t.s == "(") {
          ++p_;
          ExprP e = expression();
          if (at_op(",")) fail(line_, "tuples are not supported");
          expect_op(")");
          return e;
        }
        if (t.s == "[") {
          ++p_;
          ExprP e = make(Expr::Kind::kList);
          while (!at_op("]")) {
            e->args.push_back(expression());
            if (!at_op(",")) break;
            ++p_;
          }
          expect_op("]");
          return e;
        }
        if (t.s == "{") {
          ++p_;
          ExprP e = make(Expr::Kind::kDict);
          while (!at_op("}")) {
            e->args.push_back(expression());
            expect_op(":");
            e->args.push_back(expression());
            if (!at_op(",")) break;
            ++p_;
          }
          expect_op("}");
          return e;
        }
        break;
      case Tok::Kind::kEnd: break;
    }
    fail(line_, "unexpected " + describe(t));
  }

  ExprP postfix(ExprP e) {
    Depth d(*this, 0);
    for (;;) {
      d.add();
      if (at_op(".")) {
        ++p_;
        if (t_[p_].kind == Tok::Kind::kInt) {  // x.0 is x[0]
          ExprP idx = make(Expr::Kind::kLiteral);
          idx->value = Value::integer(t_[p_++].i);
          ExprP n = make(Expr::Kind::kIndex);
          n->args.push_back(std::move(e));
          n->args.push_back(std::move(idx));
          e = std::move(n);
          continue;
        }
        ExprP n = make(Expr::Kind::kAttr);
        n->name = expect_name();
        n->args.push_back(std::move(e));
        e = std::move(n);
      } else if (at_op("[")) {
        ++p_;
        std::array<ExprP, 3> parts;
        bool slice = false;
        for (int k = 0; k < 3; ++k) {
          if (!at_op(":") && !at_op("]")) parts[k] = expression();
          if (at_op(":") && k < 2) {
            slice = true;
            ++p_;
          } else {
            break;
          }
        }
        expect_op("]");
        ExprP n = make(slice ? Expr::Kind::kSlice : Expr::Kind::kIndex);
        n->args.push_back(std::move(e));
        if (!slice && !parts[0]) fail(line_, "empty subscript");
        for (int k = 0; k < (slice ? 3 : 1); ++k) n->args.push_back(std::move(parts[k]));
        e = std::move(n);
      } else if (at_op("(")) {
        ExprP n = make(Expr::Kind::kCall);
        if (e->kind == Expr::Kind::kName) {
          if (!kFunctions.count(e->name)) fail(line_, "unsupported function '" + e->name + "()'");
        } else if (e->kind == Expr::Kind::kAttr) {
          if (!kMethods.count(e->name)) fail(line_, "unsupported method '." + e->name + "()'");
        } else {
          fail(line_, "only named functions and methods can be called");
        }
        n->args.push_back(std::move(e));
        call_args(*n);
        e = std::move(n);
      } else {
        return e;
      }
    }
  }

  ExprP filters(ExprP e) {
    Depth d(*this, 0);
    for (;;) {
      d.add();
      if (at_op("|")) {
        ++p_;
        ExprP n = make(Expr::Kind::kFilter);
        n->name = expect_name();
        if (!kFilters.count(n->name)) fail(line_, "unsupported filter '" + n->name + "'");
        n->args.push_back(std::move(e));
        if (at_op("(")) call_args(*n);
        e = std::move(n);
      } else if (at_name("is")) {
        ++p_;
        ExprP n = make(Expr::Kind::kTest);
        if (at_name("not")) {
          n->negate = true;
          ++p_;
        }
        // `none`, `true`, `false` are keywords as values but names as tests.
        if (t_[p_].kind != Tok::Kind::kName) fail(line_, "expected a test name after 'is'");
        n->name = t_[p_++].s;
        if (n->name == "None") n->name = "none";
        if (!kTests.count(n->name)) fail(line_, "unsupported test '" + n->name + "'");
        n->args.push_back(std::move(e));
        if (at_op("(")) {
          call_args(*n);
        } else if (t_[p_].kind == Tok::Kind::kString || t_[p_].kind == Tok::Kind::kInt ||
                   t_[p_].kind == Tok::Kind::kFloat ||
                   (t_[p_].kind == Tok::Kind::kName && !at_name("and") && !at_name("or") && !at_name("if") &&
                    !at_name("else") && !at_name("in") && !at_name("not") && !at_name("is"))) {
          n->args.push_back(primary());  // `x is divisibleby 3` style single argument
        }
        e = std::move(n);
      } else {
        return e;
      }
    }
  }

  std::vector<Tok> t_;
  size_t p_ = 0;
  int line_;
  int depth_ = 0;  // see Depth
};

// ---- statements --------------------------------------------------------------------------

class Parser {
 public:
  explicit Parser(std::vector<Segment> segs) : segs_(std::move(segs)) {}

  Body parse_all() {
    std::string end;
    Body b = parse_body({}, end);
    return b;
  }

 private:
  // Parses nodes until a statement whose keyword is in `stops` (returned in `stop`, its
  // parser left in stop_parser_ for the caller to read the rest of the tag).
  Body parse_body(const std::set<std::string, std::less<>>& stops, std::string& stop) {
    Body body;
    while (i_ < segs_.size()) {
      const Segment& s = segs_[i_++];
      if (s.kind == Segment::Kind::kText) {
        auto n = node(Node::Kind::kText, s.line);
        n->text = s.text;
        body.push_back(std::move(n));
        continue;
      }
      ExprParser p(tokenize(s.text, s.line), s.line);
      if (s.kind == Segment::Kind::kOutput) {
        auto n = node(Node::Kind::kOutput, s.line);
        n->expr = p.expression();
        if (!p.at_end()) fail(s.line, "unexpected text after the expression (tuples are not supported)");
        body.push_back(std::move(n));
        continue;
      }
      if (p.at_end()) fail(s.line, "empty statement");
      const std::string kw = p.expect_name();
      if (stops.count(kw)) {
        stop = kw;
        stop_parser_ = std::make_unique<ExprParser>(std::move(p));
        return body;
      }
      body.push_back(statement(kw, p, s.line));
    }
    if (!stops.empty()) {
      std::string want;
      for (const auto& k : stops) want += (want.empty() ? "" : " or ") + k;
      fail(segs_.empty() ? 0 : segs_.back().line, "missing {% " + want + " %}");
    }
    return body;
  }

  static NodeP node(Node::Kind k, int line) {
    auto n = std::make_unique<Node>();
    n->kind = k;
    n->line = line;
    return n;
  }

  NodeP statement(const std::string& kw, ExprParser& p, int line) {
    std::string stop;
    struct Nest {  // block nesting while this statement's bodies are parsed
      int& n;
      ~Nest() { --n; }
    } nest{++nesting_};
    if (nesting_ > kMaxBlockNesting) fail(line, "blocks nested more than " + std::to_string(kMaxBlockNesting) + " deep");
    if (kw == "if") {
      auto n = node(Node::Kind::kIf, line);
      ExprP cond = p.expression();
      p.expect_end();
      for (;;) {
        Body b = parse_body({"elif", "else", "endif"}, stop);
        n->branches.emplace_back(std::move(cond), std::move(b));
        ExprParser& sp = *stop_parser_;
        if (stop == "elif") {
          cond = sp.expression();
          sp.expect_end();
        } else if (stop == "else") {
          sp.expect_end();
          Body eb = parse_body({"endif"}, stop);
          stop_parser_->expect_end();
          n->branches.emplace_back(nullptr, std::move(eb));
          return n;
        } else {
          sp.expect_end();
          return n;
        }
      }
    }
    if (kw == "for") {
      auto n = node(Node::Kind::kFor, line);
      n->targets.push_back(p.expect_name());
      while (p.at_op(",")) {
        p.skip();
        n->targets.push_back(p.expect_name());
      }
      if (!p.at_name("in")) fail(line, "expected 'in' in the for statement");
      p.skip();
      n->expr = p.expression_no_cond();
      if (p.at_name("if")) {
        p.skip();
        n->filter = p.expression();
      }
      if (p.at_name("recursive")) fail(line, "recursive loops are not supported");
      p.expect_end();
      n->body = parse_body({"else", "endfor"}, stop);
      stop_parser_->expect_end();
      if (stop == "else") {
        n->else_body = parse_body({"endfor"}, stop);
        stop_parser_->expect_end();
      }
      return n;
    }
    if (kw == "set") {
      const std::string name = p.expect_name();
      NodeP n;
      if (p.at_op(".")) {
        p.skip();
        n = node(Node::Kind::kSetAttr, line);
        n->targets = {name, p.expect_name()};
      } else {
        n = node(Node::Kind::kSet, line);
        n->targets = {name};
      }
      if (p.at_op(",")) fail(line, "tuple assignment is not supported");
      if (p.at_end()) fail(line, "block assignments ({% set x %}...{% endset %}) are not supported");
      p.expect_op("=");
      n->expr = p.expression();
      p.expect_end();
      return n;
    }
    if (kw == "break" || kw == "continue") {
      p.expect_end();
      return node(kw == "break" ? Node::Kind::kBreak : Node::Kind::kContinue, line);
    }
    if (kw == "generation") {  // HF's marker for assistant-token masks: renders its body
      p.expect_end();
      auto n = node(Node::Kind::kBlock, line);
      n->body = parse_body({"endgeneration"}, stop);
      stop_parser_->expect_end();
      return n;
    }
    fail(line, "unsupported statement '" + kw + "'");
  }

  std::vector<Segment> segs_;
  size_t i_ = 0;
  int nesting_ = 0;  // blocks open around the statement being parsed
  std::unique_ptr<ExprParser> stop_parser_;
};

}  // namespace
}  // namespace jinja

ChatTemplate::ChatTemplate(std::string_view source, ChatTemplateOptions options) {
  // As Jinja2 loads a template: "\r\n" and "\r" become "\n", and one trailing newline is
  // dropped (keep_trailing_newline is off).
  std::string src;
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src += source[i];
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();
  auto prog = std::make_shared<Program>();
  prog->body = jinja::Parser(jinja::split_segments(src, options)).parse_all();
  program_ = std::move(prog);
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(const ChatTemplate&) = default;
ChatTemplate& ChatTemplate::operator=(const ChatTemplate&) = default;

std::string ChatTemplate::apply(std::span<const ChatMessage> messages, bool add_generation_prompt,
                                std::string_view bos_token, std::string_view eos_token) const {
  using jinja::Value;
  jinja::List msgs;
  for (const auto& m : messages)
    msgs.push_back(Value::make_dict({{"role", Value::str(m.role)}, {"content", Value::str(m.content)}}));
  const jinja::Dict globals{{"messages", Value::make_list(std::move(msgs))},
                            {"add_generation_prompt", Value::boolean(add_generation_prompt)},
                            {"bos_token", Value::str(std::string(bos_token))},
                            {"eos_token", Value::str(std::string(eos_token))}};
  return program_->render(globals);
}

}  // namespace smolq
