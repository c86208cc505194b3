"""`smolq inspect` as a gate (issue 13, must-show 3): on semantically broken models, GGUF and
HF folder, it exits 3 naming the problem; llama.cpp refuses the same GGUF files (checked with
llama-cpp-python when it is installed); on every file llama.cpp loads in our tests it exits 0
with no error. Exit codes: docs/inspect.md."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from safety_tools import copy_folder, edit_json, plant_in_gguf, rewrite_st_header, st_header


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, run_smolq, synthetic):
    d = tmp_path_factory.mktemp("gate")
    run_smolq("convert", synthetic("smollm2-tiny-f32"), "-o", d / "f32.gguf", "--outtype", "f32", "-q")
    return d / "f32.gguf"


# --- in-place GGUF edits (same length, so every offset stays valid) ----------------------------

def _replace_once(path: Path, old: bytes, new: bytes) -> None:
    assert len(old) == len(new)
    raw = path.read_bytes()
    assert raw.count(old) == 1, (old, raw.count(old))
    path.write_bytes(raw.replace(old, new))


def _u32_kv(path: Path, key: str, value: int) -> None:
    raw = bytearray(path.read_bytes())
    k = struct.pack("<Q", len(key)) + key.encode()
    at = raw.index(k) + len(k)
    assert struct.unpack_from("<I", raw, at)[0] == 4, f"{key} is not a u32"  # GGUF_TYPE_UINT32
    struct.pack_into("<I", raw, at + 4, value)
    path.write_bytes(bytes(raw))


def _swap_dims(path: Path, tensor: str) -> None:
    raw = bytearray(path.read_bytes())
    k = struct.pack("<Q", len(tensor)) + tensor.encode()
    at = raw.index(k) + len(k)
    assert struct.unpack_from("<I", raw, at)[0] == 2
    a, b = struct.unpack_from("<QQ", raw, at + 4)
    struct.pack_into("<QQ", raw, at + 4, b, a)
    path.write_bytes(bytes(raw))


GGUF_KINDS = {
    # kind: (edit(path), words in an error finding, llama.cpp refuses it too)
    "block-count-too-small": (lambda p: _u32_kv(p, "llama.block_count", 3), ["block_count is 3", "layer 3"], True),
    "block-count-too-large": (lambda p: _u32_kv(p, "llama.block_count", 5), ["blk.4.attn_q.weight", "missing"], True),
    "renamed-tensor": (lambda p: _replace_once(p, b"blk.2.attn_q.weight", b"blk.2.attn_x.weight"),
                       ["blk.2.attn_q.weight", "missing"], True),
    "transposed-tensor": (lambda p: _swap_dims(p, "blk.1.ffn_up.weight"), ["blk.1.ffn_up.weight", "shape"], True),
    "kv-heads-not-dividing": (lambda p: _u32_kv(p, "llama.attention.head_count_kv", 4), ["head"], True),
    # llama.cpp only warns ("n_ctx_seq > n_ctx_train (0)"); a model trained on no context is
    # still broken, and smolq's evaluation refuses it.
    "context-zero": (lambda p: _u32_kv(p, "llama.context_length", 0), ["context"], False),
    "embedding-length-wrong": (lambda p: _u32_kv(p, "llama.embedding_length", 192), ["token_embd.weight", "shape"], True),
    "no-tokens": (lambda p: _replace_once(p, b"tokenizer.ggml.tokens", b"tokenizer.ggml.tokenz"),
                  ["tokenizer.ggml.tokens"], True),
    "no-tokenizer-model": (lambda p: _replace_once(p, b"tokenizer.ggml.model", b"tokenizer.ggml.modex"),
                           ["tokenizer.ggml.model"], True),
    "no-merges": (lambda p: _replace_once(p, b"tokenizer.ggml.merges", b"tokenizer.ggml.mergez"),
                  ["tokenizer.ggml.merges"], True),
    "nan-weight": (lambda p: plant_in_gguf(p, "blk.3.ffn_gate.weight", 12, 34, float("nan")),
                   ["blk.3.ffn_gate.weight", "nan", "row 12, column 34"], False),
    "inf-norm": (lambda p: plant_in_gguf(p, "output_norm.weight", 0, 95, float("inf")),
                 ["output_norm.weight", "inf", "column 95"], False),
}


def _errors(run_smolq, path):
    proc = run_smolq("inspect", path, "--json", check=False)
    r = json.loads(proc.stdout)
    return proc, [f["message"] for f in r["findings"] if f["severity"] == "error"]


def _llama_loads(path: Path) -> bool | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    try:
        llama_cpp.Llama(model_path=str(path), n_ctx=64, verbose=False, vocab_only=False)
        return True
    except Exception:  # noqa: BLE001 (llama-cpp-python raises ValueError/RuntimeError)
        return False


@pytest.mark.parametrize("kind", list(GGUF_KINDS))
def test_broken_gguf_is_refused(kind, tiny, run_smolq, out_dir):
    edit, words, llama_refuses = GGUF_KINDS[kind]
    p = out_dir / f"{kind}.gguf"
    p.write_bytes(tiny.read_bytes())
    edit(p)
    proc, errors = _errors(run_smolq, p)
    assert proc.returncode == 3, (proc.returncode, errors, proc.stderr)
    assert any(all(w in e for w in words) for e in errors), errors
    text = run_smolq("inspect", p, check=False)
    assert text.returncode == 3 and "error:" in text.stdout
    if llama_refuses:
        loads = _llama_loads(p)
        if loads is not None:
            assert loads is False, f"llama.cpp loads {kind}: inspect must not be stricter than the loader"


def test_check_data_can_be_turned_off(tiny, run_smolq, out_dir):
    p = out_dir / "nan.gguf"
    p.write_bytes(tiny.read_bytes())
    plant_in_gguf(p, "blk.0.attn_v.weight", 0, 0, float("nan"))
    assert run_smolq("inspect", p, "--check-data", "no", check=False).returncode == 0
    assert run_smolq("inspect", p, "--check-data", check=False).returncode == 3


# --- HF folders ---------------------------------------------------------------------------------

def _cfg(**kw):
    return lambda d: edit_json(d / "config.json", **kw)


def _st_rename(old, new):
    def edit(d):
        f = d / "model.safetensors"
        h, _ = st_header(f)
        h[new] = h.pop(old)
        rewrite_st_header(f, h)
    return edit


def _st_transpose(name):
    def edit(d):
        f = d / "model.safetensors"
        h, _ = st_header(f)
        h[name]["shape"] = h[name]["shape"][::-1]
        rewrite_st_header(f, h)
    return edit


HF_KINDS = {
    "layers-more-than-weights": (_cfg(num_hidden_layers=5), ["model.layers.4.self_attn.q_proj.weight", "missing"]),
    "layers-fewer-than-weights": (_cfg(num_hidden_layers=3), ["num_hidden_layers is 3", "layer 3"]),
    "hidden-size-wrong": (_cfg(hidden_size=192), ["model.embed_tokens.weight", "shape"]),
    "vocab-size-wrong": (_cfg(vocab_size=50000), ["model.embed_tokens.weight", "[50000, 96]"]),
    "untied-without-lm-head": (_cfg(tie_word_embeddings=False), ["lm_head.weight"]),
    "empty-tokenizer-json": (lambda d: (d / "tokenizer.json").write_bytes(b""), ["tokenizer.json", "empty"]),
    "tokenizer-without-vocab": (lambda d: (d / "tokenizer.json").write_text("{}"), ["tokenizer.json", "vocabulary"]),
    "context-zero": (_cfg(max_position_embeddings=0), ["max_position_embeddings"]),
    "renamed-weight": (_st_rename("model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.upp_proj.weight"),
                       ["model.layers.1.mlp.up_proj.weight", "missing"]),
    "transposed-weight": (_st_transpose("model.layers.0.mlp.down_proj.weight"),
                          ["model.layers.0.mlp.down_proj.weight", "shape"]),
    "nan-weight": (lambda d: __import__("safety_tools").plant_in_safetensors(
        d / "model.safetensors", "model.layers.2.self_attn.k_proj.weight", 3, 7, float("nan")),
        ["model.layers.2.self_attn.k_proj.weight", "nan", "row 3, column 7"]),
}


@pytest.mark.parametrize("kind", list(HF_KINDS))
def test_broken_hf_folder_is_refused(kind, synthetic, run_smolq, out_dir):
    edit, words = HF_KINDS[kind]
    d = copy_folder(synthetic("smollm2-tiny-f32"), out_dir / kind)
    edit(d)
    proc, errors = _errors(run_smolq, d)
    assert proc.returncode == 3, (proc.returncode, errors, proc.stderr)
    assert any(all(w in e for w in words) for e in errors), errors


# --- what llama.cpp loads passes ----------------------------------------------------------------

def test_loadable_files_pass(run_smolq, synthetic, manifest, real_gguf, real_ckpt, out_dir):
    """Every HF fixture, its F32/F16/BF16/Q8_0 conversions and a Q4_K_M of each, the real Q4_1
    SmolLM2 GGUF: no error finding, exit 0, data checked (all are under the auto limit)."""
    paths = [real_gguf, real_ckpt]  # the 135M HF folder only: its conversions cost minutes
    for name, info in manifest.items():
        if info.get("kind") != "synthetic":
            continue
        paths.append(synthetic(name))
        for outtype in ("f32", "f16", "bf16", "q8_0") if name.startswith("smollm2-tiny-f32") else ("f16",):
            g = out_dir / f"{name}-{outtype}.gguf"
            run_smolq("convert", synthetic(name), "-o", g, "--outtype", outtype, "-q")
            paths.append(g)
            if outtype == "f16":
                q = out_dir / f"{name}-q4km.gguf"
                run_smolq("quantize", g, q, "Q4_K_M", "-q")
                paths.append(q)
    for p in paths:
        proc, errors = _errors(run_smolq, p)
        assert proc.returncode == 0 and not errors, (p, errors)
        assert "data checked" in run_smolq("inspect", p).stdout
        if p.suffix == ".gguf" and p != real_gguf:
            assert _llama_loads(p) in (True, None), p


def test_json_is_valid_utf8_with_invalid_metadata(tiny, smolq_bin, out_dir):
    """A metadata string that is not UTF-8 comes out as U+FFFD; the output parses."""
    p = out_dir / "latin1.gguf"
    p.write_bytes(tiny.read_bytes())
    raw = p.read_bytes()
    name_key = struct.pack("<Q", len("general.name")) + b"general.name"
    at = raw.index(name_key) + len(name_key) + 4  # value type u32, then the string
    n = struct.unpack_from("<Q", raw, at)[0]
    b = bytearray(raw)
    b[at + 8] = 0xE9  # 'é' in Latin-1: an invalid UTF-8 start here
    if n > 1:
        b[at + 9] = 0xFF
    p.write_bytes(bytes(b))
    import subprocess
    proc = subprocess.run([str(smolq_bin), "inspect", str(p), "--json", "--check-data", "no"], capture_output=True)
    r = json.loads(proc.stdout.decode("utf-8"))  # strict: raises on invalid UTF-8
    assert "\ufffd" in json.dumps(r["metadata"]["general.name"], ensure_ascii=False)
