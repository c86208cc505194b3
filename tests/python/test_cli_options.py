"""The option vocabulary (docs/cli.md) as a table test, and "did you mean" (issue 14, must-shows
1 and 3). Cheap: only `--help` runs and argument errors, no model is read.

From the table in docs/cli.md, for every command:
  - `--help` lists exactly the options the table gives that command (nothing undocumented,
    nothing documented missing);
  - every spelling of an option (smolq's, llama.cpp's, the aliases) is accepted by the commands
    listed for it: `smolq CMD SPELLING [VALUE] --help` exits 0 — Boost checks every option and
    value before --help is honoured, so an unknown spelling fails;
  - the other commands reject the option with exit code 2.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import SOURCE_DIR

COMMANDS = ["convert", "quantize", "inspect", "estimate", "perplexity", "imatrix", "verify", "release"]
TICKED = re.compile(r"`([^`]+)`")


def parse_table() -> list[dict]:
    rows = []
    text = (SOURCE_DIR / "docs" / "cli.md").read_text()
    table = text[text.index("| option | llama.cpp |"):]
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        option, llama, aliases, commands, example = cells
        names = [s for s in TICKED.findall(option)]
        long = next(s for s in names if s.startswith("--"))
        cmds = [c.strip() for c in commands.split(",")]
        # Aliases: `spelling` optionally followed by "(cmd, cmd)".
        alias_spellings = []
        for m in re.finditer(r"`(-[^`]+)`(?:\s*\(([^)]*)\))?", aliases):
            only = [c.strip() for c in m.group(2).split(",")] if m.group(2) else cmds
            alias_spellings.append((m.group(1), [c for c in only if c in cmds]))
        rows.append({
            "long": long,
            "spellings": names + [s for s in TICKED.findall(llama) if s.startswith("-")],
            "aliases": alias_spellings,
            "commands": cmds,
            "value": TICKED.findall(example)[0] if TICKED.findall(example) else None,
        })
    return rows


ROWS = parse_table()


def run(smolq_bin, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(smolq_bin), *map(str, args)], capture_output=True, text=True, timeout=60)


def help_options(smolq_bin, cmd: str) -> set[str]:
    out = run(smolq_bin, cmd, "--help")
    assert out.returncode == 0, out.stderr
    # Boost's layout: option lines start with two spaces and a dash; descriptions that wrap are
    # indented further.
    return {m.group(2) for m in re.finditer(r"^  (-\w \[ )?(--[a-z0-9-]+)", out.stdout, re.M)}


def test_table_parses():
    assert len(ROWS) > 50
    assert {c for r in ROWS for c in r["commands"]} == set(COMMANDS)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_lists_exactly_the_documented_options(smolq_bin, cmd):
    documented = {r["long"] for r in ROWS if cmd in r["commands"]}
    listed = help_options(smolq_bin, cmd)
    assert listed - documented == set(), f"undocumented options of {cmd} (add them to docs/cli.md)"
    assert documented - listed == set(), f"documented for {cmd} but missing from its --help"


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_spelling_accepted_where_documented_and_rejected_elsewhere(smolq_bin, cmd):
    failures = []
    for r in ROWS:
        value = [r["value"]] if r["value"] is not None else []
        if cmd in r["commands"]:
            spellings = list(r["spellings"]) + [s for s, only in r["aliases"] if cmd in only]
            for s in spellings:
                p = run(smolq_bin, cmd, s, *value, *([] if r["long"] == "--help" else ["--help"]))
                if p.returncode != 0:
                    failures.append(f"{cmd} {s} {' '.join(value)}: {p.stderr.strip()}")
        else:
            p = run(smolq_bin, cmd, r["long"], *value)
            if p.returncode != 2 or f"unknown option '{r['long']}'" not in p.stderr:
                failures.append(f"{cmd} accepts {r['long']} (not documented for it): rc {p.returncode} {p.stderr.strip()}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_command_equals_command_help(smolq_bin, cmd):
    a, b = run(smolq_bin, "help", cmd), run(smolq_bin, cmd, "--help")
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout and a.stdout.startswith(f"Usage: smolq {cmd}")


# --- must-show 3: mistakes name the nearest valid name ---------------------------------------

@pytest.mark.parametrize("args, suggestion", [
    (["quantise"], "'quantize'"),
    (["inspcet", "x.gguf"], "'inspect'"),
    (["verfiy"], "'verify'"),
    (["help", "converter"], "'convert'"),
])
def test_mistyped_command(smolq_bin, args, suggestion):
    p = run(smolq_bin, *args)
    assert p.returncode == 2
    assert f"unknown command '{args[-1] if args[0] == 'help' else args[0]}' (did you mean {suggestion}?)" in p.stderr


@pytest.mark.parametrize("cmd, args, typed, suggestion", [
    ("perplexity", ["m.gguf", "--thread", "2"], "--thread", "--threads"),
    ("verify", ["m", "--typs", "Q4_K_M"], "--typs", "--types"),
    ("estimate", ["m", "--ctx-szie", "512"], "--ctx-szie", "--ctx-size"),
    ("convert", ["m", "--outype", "f16"], "--outype", "--outtype"),
    ("quantize", ["a", "b", "Q4_K_M", "--imatrx", "i.gguf"], "--imatrx", "--imatrix"),
    ("imatrix", ["m", "--output-fromat", "dat"], "--output-fromat", "--output-format"),
    ("estimate", ["m", "--cache-typek", "q8_0"], "--cache-typek", "--cache-type-k"),
])
def test_mistyped_option(smolq_bin, cmd, args, typed, suggestion):
    p = run(smolq_bin, cmd, *args)
    assert p.returncode == 2
    assert f"unknown option '{typed}' (did you mean '{suggestion}'?)" in p.stderr, p.stderr


@pytest.mark.parametrize("args, typed, suggestion", [
    (["quantize", "a.gguf", "b.gguf", "Q4KM"], "Q4KM", "Q4_K_M"),
    (["quantize", "-m", "a.gguf", "-o", "b.gguf", "--type", "iq4xs"], "iq4xs", "IQ4_XS"),
    (["convert", "m", "--type", "Q5_K_MM"], "Q5_K_MM", "Q5_K_M"),
    (["quantize", "a.gguf", "b.gguf", "Q4_K_M", "--tensor-type", "attn_v=q8_O"], "q8_O", "Q8_0"),
    (["estimate", "m", "-ctk", "q8_O"], "q8_O", "q8_0"),
])
def test_mistyped_type_name(smolq_bin, tmp_path, args, typed, suggestion):
    # estimate reads its model before the cache type: give it a config-only folder.
    if args[0] == "estimate":
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "config.json").write_text(
            '{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128, '
            '"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, '
            '"max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true}')
    p = subprocess.run([str(smolq_bin), *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert f"'{typed}'" in p.stderr and f"did you mean '{suggestion}'?" in p.stderr, p.stderr


def test_llama_cpp_spellings_mean_the_same(smolq_bin, tmp_path):
    """-ub/-b/-ctk/-ctv/-fa/-np reach the estimate as their long forms do (same JSON run block)."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(
        '{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128, '
        '"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, '
        '"max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true}')
    import json
    short = run(smolq_bin, "estimate", "-m", tmp_path / "m", "--types", "q8_0", "-c", "1k", "-ub", "128", "-b", "256",
                "-ctk", "Q8_0", "-ctv", "q4_0", "-fa", "on", "-np", "2", "--json")
    long = run(smolq_bin, "estimate", tmp_path / "m", "--types", "Q8_0", "--ctx-size", "1024", "--ubatch-size", "128",
               "--batch-size", "256", "--cache-type-k", "q8_0", "--cache-type-v", "q4_0", "--flash-attn", "on",
               "--parallel", "2", "--json")
    assert short.returncode == 0 and long.returncode == 0, short.stderr + long.stderr
    s, l = json.loads(short.stdout), json.loads(long.stdout)
    assert s["run"] == l["run"] == {"n_ubatch": 128, "n_batch": 256, "kv_type": "Q8_0", "kv_type_v": "Q4_0",
                                    "flash_attn": True, "n_seq": 2}
    assert s == l


def test_mistyped_type_in_a_list(smolq_bin, synthetic):
    """--exclude-types is checked before any profile is measured, with the nearest name."""
    p = run(smolq_bin, "convert", synthetic("smollm2-tiny-bf16"), "--target-bpw", "4.5", "--exclude-types", "Q4_K,IQ4_N",
            "--dry-run")
    assert p.returncode == 2
    assert "unknown type 'IQ4_N' (did you mean 'IQ4_NL'?)" in p.stderr, p.stderr


def test_unknown_llama_cpp_spelling_is_named_as_typed(smolq_bin):
    """-ngl is llama.cpp's; smolq has no partial-offload model, so it is refused under its own name."""
    p = run(smolq_bin, "estimate", "m", "-ngl", "99")
    assert p.returncode == 2 and "unknown option '-ngl' (= --n-gpu-layers)" in p.stderr, p.stderr
