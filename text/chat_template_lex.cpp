// Chat-template lexing: template text -> segments (text, {{ }}, {% %}) with Jinja2's
// whitespace rules, and the inside of a tag -> expression tokens (chat_template_lex.h). The
// parser that reads them is in chat_template.cpp.
#include "text/chat_template_lex.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "text/chat_template_ast.h"

namespace smolq::jinja {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// End of a {{ }} or {% %} tag starting its content at `pos`: the index of the closing
// delimiter, skipping string literals (which may contain "}}").
size_t find_tag_end(std::string_view src, size_t pos, char close, int line) {
  char quote = 0;
  for (size_t i = pos; i + 1 < src.size(); ++i) {
    const char c = src[i];
    if (quote) {
      if (c == '\\') ++i;
      else if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == close && src[i + 1] == '}') {
      return i;
    }
  }
  fail(line, std::string("tag opened here is never closed with '") + close + "}'");
}

}  // namespace

// Splits the template into segments, applying Jinja2's whitespace control exactly as its lexer
// does: `{%-` / `{{-` / `{#-` strip all whitespace before the tag, `-%}` etc. all whitespace
// after it; with lstrip_blocks, spaces and tabs between a line start and a block or comment
// tag are removed (unless the tag is opened with `{%+`); with trim_blocks, one "\n" right
// after a block or comment tag is removed (unless it is closed with `+%}`).
std::vector<Segment> split_segments(std::string_view src, const ChatTemplateOptions& opt) {
  std::vector<Segment> out;
  size_t pos = 0;
  bool strip_next = false;  // the previous tag ended with '-'
  // Line numbers by a running count (positions only grow): counting from the start for each
  // tag made a template of many tags quadratic.
  size_t counted = 0;
  int counted_line = 1;
  auto line_at = [&](size_t p) {
    counted_line += static_cast<int>(std::count(src.begin() + static_cast<ptrdiff_t>(counted),
                                                src.begin() + static_cast<ptrdiff_t>(p), '\n'));
    counted = p;
    return counted_line;
  };
  while (pos <= src.size()) {
    const int text_line = line_at(pos);
    size_t tag = pos;
    while (tag + 1 < src.size() && !(src[tag] == '{' && (src[tag + 1] == '{' || src[tag + 1] == '%' || src[tag + 1] == '#')))
      ++tag;
    if (tag + 1 >= src.size()) tag = src.size();
    std::string text(src.substr(pos, tag - pos));
    if (strip_next) {
      size_t k = 0;
      while (k < text.size() && is_space(text[k])) ++k;
      text.erase(0, k);
    }
    strip_next = false;
    if (tag == src.size()) {
      if (!text.empty()) out.push_back({Segment::Kind::kText, std::move(text), text_line});
      break;
    }
    const char kind = src[tag + 1];  // '{', '%' or '#'
    const int line = line_at(tag);
    size_t body = tag + 2;
    const char sign = body < src.size() ? src[body] : 0;
    if (sign == '-') {
      while (!text.empty() && is_space(text.back())) text.pop_back();
      ++body;
    } else {
      if (sign == '+' && kind != '{') ++body;
      if (sign != '+' && opt.lstrip_blocks && kind != '{') {
        // Only whitespace between the line start and the tag: drop it.
        const size_t nl = text.rfind('\n');
        const size_t from = nl == std::string::npos ? 0 : nl + 1;
        const bool line_start = nl != std::string::npos || pos == 0 || src[pos - 1] == '\n';
        if (line_start && std::all_of(text.begin() + static_cast<ptrdiff_t>(from), text.end(),
                                      [](char c) { return c == ' ' || c == '\t'; }))
          text.erase(from);
      }
    }
    if (!text.empty()) out.push_back({Segment::Kind::kText, std::move(text), text_line});

    size_t end;  // index of the closing delimiter's first character
    if (kind == '#') {
      const size_t e = src.find("#}", body);
      if (e == std::string::npos) fail(line, "comment opened here is never closed with '#}'");
      end = e;
    } else {
      end = find_tag_end(src, body, kind == '{' ? '}' : '%', line);
    }
    size_t inner_end = end;
    bool keep_newline = false;
    if (inner_end > body && src[inner_end - 1] == '-') {
      strip_next = true;
      --inner_end;
    } else if (inner_end > body && src[inner_end - 1] == '+' && kind != '{') {
      keep_newline = true;
      --inner_end;
    }
    if (kind != '#') {
      std::string inner(src.substr(body, inner_end - body));
      out.push_back({kind == '{' ? Segment::Kind::kOutput : Segment::Kind::kStatement, std::move(inner), line});
    }
    pos = end + 2;
    if (kind != '{' && opt.trim_blocks && !strip_next && !keep_newline && pos < src.size() && src[pos] == '\n') ++pos;
    if (pos == src.size()) break;
  }
  return out;
}

// ---- expression tokens -------------------------------------------------------------------

namespace {

// Python string-literal escapes (the ones templates use).
void append_escape(std::string& out, std::string_view src, size_t& i, int line) {
  const char c = src[i];
  switch (c) {
    case 'n': out += '\n'; break;
    case 't': out += '\t'; break;
    case 'r': out += '\r'; break;
    case '0': out += '\0'; break;
    case '\\': out += '\\'; break;
    case '\'': out += '\''; break;
    case '"': out += '"'; break;
    case '\n': break;  // line continuation
    case 'u': {
      if (i + 4 >= src.size()) fail(line, "truncated \\u escape");
      uint32_t cp = 0;
      for (int k = 1; k <= 4; ++k) {
        const char h = src[i + k];
        if (!std::isxdigit(static_cast<unsigned char>(h))) fail(line, "bad \\u escape");
        cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
      }
      i += 4;
      if (cp < 0x80) out += static_cast<char>(cp);
      else if (cp < 0x800) out += static_cast<char>(0xC0 | (cp >> 6)), out += static_cast<char>(0x80 | (cp & 0x3F));
      else out += static_cast<char>(0xE0 | (cp >> 12)), out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
           out += static_cast<char>(0x80 | (cp & 0x3F));
      break;
    }
    default: out += '\\'; out += c;  // Python keeps unknown escapes verbatim
  }
}

}  // namespace

std::vector<Tok> tokenize(std::string_view s, int line) {
  static constexpr std::array<const char*, 6> kTwoCharOps{"//", "**", "==", "!=", "<=", ">="};
  std::vector<Tok> out;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (is_space(c)) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Tok::Kind::kName, std::string(s.substr(i, j - i))});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      bool is_float = false;
      if (j + 1 < s.size() && s[j] == '.' && std::isdigit(static_cast<unsigned char>(s[j + 1]))) {
        is_float = true;
        ++j;
        while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      }
      if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
        if (k < s.size() && std::isdigit(static_cast<unsigned char>(s[k]))) {
          is_float = true;
          j = k;
          while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
        }
      }
      std::string num(s.substr(i, j - i));
      num.erase(std::remove(num.begin(), num.end(), '_'), num.end());
      Tok t;
      if (is_float) {
        t.kind = Tok::Kind::kFloat;
        // strtod, not stod: a literal beyond double's range is inf (or 0) as in Python, where
        // stod throws std::out_of_range.
        t.f = std::strtod(num.c_str(), nullptr);
      } else {
        t.kind = Tok::Kind::kInt;
        try {
          t.i = std::stoll(num);
        } catch (const std::exception&) {
          fail(line, "integer literal out of range: " + num);
        }
      }
      out.push_back(t);
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string v;
      size_t j = i + 1;
      while (j < s.size() && s[j] != c) {
        if (s[j] == '\\' && j + 1 < s.size()) {
          ++j;
          append_escape(v, s, j, line);
          ++j;
        } else {
          v += s[j++];
        }
      }
      if (j >= s.size()) fail(line, "unterminated string literal");
      out.push_back({Tok::Kind::kString, std::move(v)});
      i = j + 1;
    } else {
      std::string op(1, c);
      for (const char* two : kTwoCharOps)
        if (s.substr(i, 2) == two) op = two;
      if (op.size() == 1 && !std::strchr("+-*/%~<>=()[]{},.:|", c)) fail(line, std::string("unexpected character '") + c + "'");
      out.push_back({Tok::Kind::kOp, op});
      i += op.size();
    }
  }
  out.push_back({Tok::Kind::kEnd, ""});
  return out;
}

}  // namespace smolq::jinja
