// Chat templates: the Jinja2 text stored in a model's `tokenizer.chat_template` (GGUF) or
// `chat_template` (tokenizer_config.json), rendered the way Hugging Face's
// `apply_chat_template` renders it — jinja2 with trim_blocks and lstrip_blocks on, no
// autoescape, the loopcontrols extension, and `raise_exception` / a JSON `tojson`.
//
// This is a small interpreter for the subset such templates use, not a Jinja2 engine:
//   statements   {% if %}/{% elif %}/{% else %}, {% for a[, b] in x [if c] %} (+ {% else %}),
//                {% set x = e %}, {% set ns.attr = e %}, {% break %}, {% continue %},
//                {% generation %} (rendered as its body), {# comments #};
//   expressions  literals (strings, numbers, true/false/none, lists, dicts), variables,
//                attribute / index / slice access, calls of the functions and methods below,
//                + - * / // % ~, comparisons and `in` / `not in`, not / and / or,
//                `a if c else b`, filters `x | f(args)` and tests `x is [not] t`;
//   whitespace   `{%-`, `-%}`, `{{-`, `-}}`, `{#-`, `-#}`, and `{%+` (no lstrip);
//   loop         loop.index, index0, revindex, revindex0, first, last, length, previtem, nextitem;
//   functions    raise_exception(msg), namespace(k=v, ...), range(..);
//   methods      str: strip lstrip rstrip startswith endswith split upper lower replace title
//                     capitalize; dict: items keys values get;
//   filters      trim length count upper lower title capitalize default d tojson string int
//                float first last join replace list reverse abs items safe;
//   tests        defined undefined none string number integer float mapping sequence
//                iterable boolean true false odd even eq equalto ne lt gt le ge in.
// Anything else (macros, includes, blocks, call blocks, filters not listed) is refused when
// the template is parsed, with a TemplateError naming the construct and its line, so callers
// can fall back to plain prompts instead of rendering something subtly different.
#pragma once
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"

namespace smolq {

// A template that uses something outside the supported subset, or fails while rendering
// (including the template's own raise_exception).
class TemplateError : public Error {
 public:
  explicit TemplateError(const std::string& msg) : Error(msg) {}
};

struct ChatMessage {
  std::string role;     // "system", "user", "assistant"
  std::string content;
};

struct ChatTemplateOptions {
  // Hugging Face's environment: the first newline after a block tag is removed, and spaces
  // and tabs before a block tag at the start of a line are stripped.
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

class ChatTemplate {
 public:
  // Parses `source`; throws TemplateError on syntax outside the subset.
  explicit ChatTemplate(std::string_view source, ChatTemplateOptions options = {});
  ~ChatTemplate();
  ChatTemplate(const ChatTemplate&);
  ChatTemplate& operator=(const ChatTemplate&);

  // The prompt text for `messages`, with the variables Hugging Face passes: messages,
  // add_generation_prompt, bos_token, eos_token. Throws TemplateError.
  std::string apply(std::span<const ChatMessage> messages, bool add_generation_prompt,
                    std::string_view bos_token, std::string_view eos_token) const;

  struct Program;  // the parsed template (chat_template.cpp)

 private:
  std::shared_ptr<const Program> program_;  // immutable: copies share it
};

}  // namespace smolq
