// The chat-template interpreter (text/chat_template.h). Expected strings are what Python's
// jinja2 renders with Hugging Face's settings (trim_blocks, lstrip_blocks, loopcontrols, JSON
// tojson); tests/python/test_verify_chat_template.py compares the two live on more cases.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "text/chat_template.h"

using smolq::ChatMessage;
using smolq::ChatTemplate;
using smolq::TemplateError;

namespace {

// SmolLM2-135M-Instruct's tokenizer.chat_template (from its GGUF), byte for byte.
const char* kSmolLM2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou "
    "are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' }}{% endif %}";

const std::vector<ChatMessage> kOne{{"user", "What is the capital of France?"}};
const std::vector<ChatMessage> kMulti{
    {"system", "You are terse."}, {"user", "  Hi there!  "}, {"assistant", "Hello."}, {"user", "Bye"}};

std::string render(const std::string& tpl, const std::vector<ChatMessage>& m = kMulti, bool agp = true) {
  return ChatTemplate(tpl).apply(m, agp, "<s>", "</s>");
}

}  // namespace

TEST_SUITE("test_chat_template") {
  TEST_CASE("SmolLM2's template: default system prompt, multi-turn, generation prompt") {
    CHECK(render(kSmolLM2, kOne) ==
          "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
          "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n");
    CHECK(render(kSmolLM2) ==
          "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n  Hi there!  <|im_end|>\n"
          "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
    CHECK(render(kSmolLM2, kOne, false).find("<|im_start|>assistant") == std::string::npos);
  }

  TEST_CASE("whitespace control: {%- -%}, trim filter, loop.first") {
    const std::string t =
        "{%- for message in messages -%}\n"
        "  {%- if loop.first and message.role != 'system' -%}\n"
        "<|im_start|>system\nDefault<|im_end|>\n"
        "  {% endif -%}\n"
        "<|im_start|>{{ message.role }}\n{{ message.content | trim }}<|im_end|>\n"
        "{% endfor -%}\n"
        "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    CHECK(render(t, kMulti, false) ==
          "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n"
          "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n");
  }

  TEST_CASE("trim_blocks and lstrip_blocks, comments, {%+ and +%}, trailing newline dropped") {
    const std::string t =
        "{% for m in messages %}\n  {% if m.role == 'user' %}\n    User: {{ m.content }}\n"
        "  {% elif m.role == 'assistant' %}\n    Bot: {{ m.content }}\n  {% else %}\n"
        "    [{{ m.role | upper }}] {{ m.content }}\n  {% endif %}\n  {# a comment #}\n{% endfor %}\n"
        "{%+ if add_generation_prompt %}Bot:{% endif +%}\nend\n";
    CHECK(render(t, kOne) == "    User: What is the capital of France?\nBot:\nend");
  }

  TEST_CASE("llama-3 style: bos_token, slices, namespace, raise_exception") {
    const std::string t =
        "{{- bos_token }}\n{%- if messages[0]['role'] == 'system' %}\n"
        "    {%- set system_message = messages[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n"
        "{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n"
        "{%- set ns = namespace(turns=0) %}\n{{- '<|sys|>' + system_message if system_message }}\n"
        "{%- for message in messages %}\n"
        "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
        "        {{- raise_exception('Conversation roles must alternate') }}\n    {%- endif %}\n"
        "    {%- set ns.turns = ns.turns + 1 %}\n"
        "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}\n"
        "{%- endfor %}\n"
        "{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}\n"
        "{{- ns.turns }}";
    CHECK(render(t) ==
          "<s><|sys|>You are terse.<|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>user<|end_header_id|>"
          "\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n3");
    const std::vector<ChatMessage> bad{{"assistant", "x"}};
    CHECK_THROWS_WITH_AS(render(t, bad), doctest::Contains("Conversation roles must alternate"), TemplateError);
  }

  TEST_CASE("expressions: Python arithmetic, strings, lists, JSON, scoping, loop control") {
    CHECK(render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-5 }}") ==
          "3 -4 1 2 3.5 1024 0.30000000000000004 1e+20 1e-05");
    CHECK(render("{{ \"a,b,,c\".split(\",\") }}|{{ \" x \".strip() }}|{{ \"Hello\"[1:3] }}|{{ \"Hello\"[::-1] }}|"
                 "{{ [1,2,3][-1] }}|{{ messages[1:] | length }}") == "['a', 'b', '', 'c']|x|el|olleH|3|3");
    CHECK(render("{{ {\"k\": 1, \"v\": [true, none, \"s\\n\", 2.5]} | tojson }}") == "{\"k\": 1, \"v\": [true, null, \"s\\n\", 2.5]}");
    CHECK(render("{% set outer = 1 %}{% for i in [1] %}{% set outer = 2 %}{% endfor %}{{ outer }}"
                 "{% set ns = namespace(v=1) %}{% for i in [1] %}{% set ns.v = 2 %}{% endfor %}{{ ns.v }}") == "12");
    CHECK(render("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% elif i == 3 %}{% break %}{% endif %}{{ i }}"
                 "{% else %}none{% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %}") == "02|empty");
    CHECK(render("{{ undefined_var is defined }} {{ undefined_var | default('d') }} {{ none is none }} {{ 'ab' in 'cabd' }} "
                 "{{ 2 not in [1, 3] }} {{ \"x\" ~ 1 ~ none }}") == "False d True True True x1None");
    CHECK(render("{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}") ==
          "1/3,2/3,3/3");
  }

  TEST_CASE("unsupported constructs are refused when parsing, with the line") {
    CHECK_THROWS_WITH_AS(ChatTemplate("{% macro f() %}x{% endmacro %}"), doctest::Contains("unsupported statement 'macro'"), TemplateError);
    CHECK_THROWS_WITH_AS(ChatTemplate("a\n{{ x | wordcount }}"), doctest::Contains("line 2: unsupported filter 'wordcount'"), TemplateError);
    CHECK_THROWS_WITH_AS(ChatTemplate("{{ strftime_now('%Y') }}"), doctest::Contains("unsupported function"), TemplateError);
    CHECK_THROWS_AS(ChatTemplate("{% if x %}never closed"), TemplateError);
    CHECK_THROWS_AS(ChatTemplate("{{ 'unterminated }}"), TemplateError);
    CHECK_THROWS_AS(ChatTemplate("{% include 'other.j2' %}"), TemplateError);
  }

  TEST_CASE("render errors: attribute of an undefined value") {
    CHECK_THROWS_WITH_AS(render("{{ nothing.role }}"), doctest::Contains("'nothing' is undefined"), TemplateError);
  }
}
