"""smolq's chat-template interpreter (text/chat_template.h) against Python's jinja2 configured as
Hugging Face's apply_chat_template configures it (trim_blocks, lstrip_blocks, loopcontrols, JSON
tojson, raise_exception). smolq renders through `smolq verify MODEL --show-prompts`, which prints the
prompts exactly as the sweep feeds them to the model."""
from __future__ import annotations

import json

import jinja2
import jinja2.ext
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment


def hf_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


CHATML_WS = """{%- for message in messages -%}
  {%- if loop.first and message.role != 'system' -%}
<|im_start|>system
Default<|im_end|>
  {% endif -%}
<|im_start|>{{ message.role }}
{{ message.content | trim }}<|im_end|>
{% endfor -%}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

LLAMA3_STYLE = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{%- set ns = namespace(turns=0) %}
{{- '<|sys|>' + system_message if system_message }}
{%- for message in messages %}
    {%- set ns.turns = ns.turns + 1 %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}
{#- turns: {{ ns.turns }} -#}
{{- eos_token if ns.turns > 5 else '' }}{{ ns.turns }}"""

INDENTED = """{% for m in messages %}
  {% if m.role == 'user' %}
    User: {{ m.content }}
  {% elif m.role == 'assistant' %}
    Bot: {{ m.content }}
  {% else %}
    [{{ m.role | upper }}] {{ m.content }}
  {% endif %}
  {# a comment #}
{% endfor %}
{%+ if add_generation_prompt %}Bot:{% endif +%}
end
"""

EXPRESSIONS = """{{ messages | length }} {{ (messages | first).role }} {{ (messages|last)['content'] | lower }}
{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}
{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1.5 * 2 }}
{{ "a,b,,c".split(",") }} {{ " x ".strip() }}|{{ "Hello"[1:3] }}|{{ "Hello"[::-1] }}|{{ [1,2,3][-1] }}
{{ {"k": 1, "v": [true, none, "s\\n", 2.5]} | tojson }} {{ undefined_var is defined }} {{ none is none }} {{ 3 is odd }}
{{ "x" ~ 1 ~ none }} {{ 'ab' in 'cabd' }} {{ 2 not in [1, 3] }} {{ [1, 2] + [3] }} {{ "ab" * 2 }}
{{ messages[0].get('name', 'anon') }} {{ messages[0].keys() | list | join('+') }} {{ undefined_var | default('dflt') }}
{% for k, v in {"a": 1, "b": 2}.items() %}{{ k }}={{ v }};{% endfor %}
{% for i in range(3) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}{% for i in range(10) %}{% if i > 2 %}{% break %}{% endif %}{{ i }}{% endfor %}
{% for x in [] %}no{% else %}empty{% endfor %} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-5 }} {{ 3.0 }} {{ true and 'y' or 'n' }}
{{ "it's" }} {{ ["it's", 'a"b'] }} {{ 'Hello World' | title }} {{ "hELLO" | capitalize }} {{ "a-b-c" | replace("-", "+") }}
{{ {"x": [1, {"y": "z"}]} | tojson(indent=2) }} {{ "é ü" | length }} {{ "日本語"[1] }} {{ messages[0].content[:5] }}
{% set outer = 1 %}{% for i in [1] %}{% set outer = 2 %}{% endfor %}{{ outer }} {{ loop is defined }}
{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else '-' }}>{{ loop.nextitem.role if loop.nextitem is defined else '-' }} {{ loop.revindex }} {% endfor %}
{{ 1 < 2 < 3 }} {{ "b" > "a" }} {{ not [] }} {{ messages[0] }} {{ 5 is eq 5 }} {{ 4 is gt(3) }}"""

CONVERSATIONS = [
    "What is the capital of France?",
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "  Hi there!  "},
     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}],
    [{"role": "user", "content": "Ünïcödé ✓ and \"quotes\" 'x' \n newline"}],
]


def as_messages(conv):
    return [{"role": "user", "content": conv}] if isinstance(conv, str) else conv


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("prompts") / "prompts.json"
    p.write_text(json.dumps(CONVERSATIONS, ensure_ascii=False), encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def special_tokens(real_ckpt):
    cfg = json.loads((real_ckpt / "tokenizer_config.json").read_text())
    return cfg["bos_token"], cfg["eos_token"], cfg["chat_template"]


def show_prompts(run_smolq, model, prompts_file, template_file=None):
    args = ["verify", model, "--show-prompts", "--prompts", prompts_file]
    if template_file is not None:
        args += ["--chat-template-file", template_file]
    return json.loads(run_smolq(*args).stdout)


def expected(template, bos, eos):
    env = hf_environment()
    return [env.from_string(template).render(messages=as_messages(c), add_generation_prompt=True,
                                             bos_token=bos, eos_token=eos) for c in CONVERSATIONS]


def test_real_smollm2_template(run_smolq, real_ckpt, prompts_file, special_tokens):
    bos, eos, template = special_tokens
    got = show_prompts(run_smolq, real_ckpt, prompts_file)
    assert got["format"] == "the model's chat template"
    assert got["prompts"] == expected(template, bos, eos)
    # The ChatML structure the model was trained on, default system prompt included.
    assert got["prompts"][0].startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert got["prompts"][0].endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("name,template", [("chatml-whitespace", CHATML_WS), ("llama3-style", LLAMA3_STYLE),
                                           ("indented", INDENTED), ("expressions", EXPRESSIONS)])
def test_synthetic_templates(run_smolq, real_ckpt, prompts_file, special_tokens, tmp_path, name, template):
    bos, eos, _ = special_tokens
    tpl = tmp_path / f"{name}.jinja"
    tpl.write_text(template, encoding="utf-8")
    got = show_prompts(run_smolq, real_ckpt, prompts_file, tpl)
    assert got["format"] == "the given chat template"
    want = expected(template, bos, eos)
    for i, (g, w) in enumerate(zip(got["prompts"], want)):
        assert g == w, f"conversation {i}"


def test_unsupported_template_falls_back_to_plain_prompts(run_smolq, real_ckpt, prompts_file, tmp_path):
    tpl = tmp_path / "macro.jinja"
    tpl.write_text("{% macro turn(m) %}{{ m.content }}{% endmacro %}{% for m in messages %}{{ turn(m) }}{% endfor %}")
    got = show_prompts(run_smolq, real_ckpt, prompts_file, tpl)
    assert got["format"].startswith("plain prompts: its chat template is outside the supported subset")
    assert "macro" in got["format"]
    assert got["prompts"][0] == "What is the capital of France?"
    assert got["prompts"][1] == "You are terse.\n\n  Hi there!  \n\nHello.\n\nBye"
