// Internals of chat-template parsing (text/chat_template.h): the lexer that the parser
// (chat_template.cpp) reads from. Template text -> segments (text, {{ }}, {% %}) with Jinja2's
// whitespace rules; the inside of a tag -> expression tokens. Defined in chat_template_lex.cpp.
// Not for use outside the chat-template files.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "text/chat_template.h"

namespace smolq::jinja {

// ---- segments ----------------------------------------------------------------------------

struct Segment {
  enum class Kind : uint8_t { kText, kOutput, kStatement };
  Kind kind;
  std::string text;  // literal text, or the inside of the tag without delimiters and '-'/'+'
  int line;
};

// Splits the template into segments, applying Jinja2's whitespace control exactly as its lexer
// does: `{%-` / `{{-` / `{#-` strip all whitespace before the tag, `-%}` etc. all whitespace
// after it; with lstrip_blocks, spaces and tabs between a line start and a block or comment
// tag are removed (unless the tag is opened with `{%+`); with trim_blocks, one "\n" right
// after a block or comment tag is removed (unless it is closed with `+%}`).
std::vector<Segment> split_segments(std::string_view src, const ChatTemplateOptions& opt);

// ---- expression tokens -------------------------------------------------------------------

struct Tok {
  enum class Kind : uint8_t { kName, kInt, kFloat, kString, kOp, kEnd };
  Kind kind = Kind::kEnd;
  std::string s;
  int64_t i = 0;
  double f = 0;
};

// The tokens of the inside of a {{ }} or {% %} tag that starts on `line`.
std::vector<Tok> tokenize(std::string_view s, int line);

}  // namespace smolq::jinja
