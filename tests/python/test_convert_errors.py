"""Bad input to `smolq convert`: each case gives one clear error line naming the file (and
tensor or byte offset where there is one), a non-zero exit, and leaves no output behind —
an existing output file stays untouched. Issue "Foundation", must-show item 4."""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest


def copy_ckpt(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def st_header(path: Path) -> tuple[dict, int]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), n


def rewrite_header(path: Path, header: dict, pad_to: int | None = None) -> None:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    data = raw[8 + n:]
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad_to is not None:
        h = h.ljust(pad_to, b" ")
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


def first_tensor(header: dict) -> str:
    return min((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


# Each case: (id, mutate(folder) -> None, words the error must contain)
def truncate(d: Path):
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-1000])


def header_past_eof(d: Path):
    f = d / "model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[:8] = struct.pack("<Q", len(raw) * 2)
    f.write_bytes(bytes(raw))


def overlapping(d: Path):
    f = d / "model.safetensors"
    h, n = st_header(f)
    names = sorted((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])
    a, b = names[0], names[1]
    size_b = h[b]["data_offsets"][1] - h[b]["data_offsets"][0]
    # Move b to start inside a (same length), overlapping it.
    start = h[a]["data_offsets"][0] + 2
    h[b]["data_offsets"] = [start, start + size_b]
    rewrite_header(f, h, pad_to=n)


def out_of_range(d: Path):
    f = d / "model.safetensors"
    h, n = st_header(f)
    last = max((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][1])
    b, e = h[last]["data_offsets"]
    h[last]["data_offsets"] = [b + 10_000_000, e + 10_000_000]
    rewrite_header(f, h, pad_to=n)


def dtype_mismatch(d: Path):
    f = d / "model.safetensors"
    h, n = st_header(f)
    t = first_tensor(h)
    h[t]["shape"] = [h[t]["shape"][0] * 2] + h[t]["shape"][1:]
    rewrite_header(f, h, pad_to=n)


def unsupported_dtype(d: Path):
    f = d / "model.safetensors"
    h, n = st_header(f)
    t = first_tensor(h)
    h[t]["dtype"] = "I16"  # same element size as BF16: only the dtype is wrong
    rewrite_header(f, h, pad_to=n)


def missing_tensor(d: Path):
    f = d / "model.safetensors"
    h, n = st_header(f)
    victim = "model.layers.1.mlp.up_proj.weight"
    # Rename it so sizes and offsets stay valid but the model lacks the tensor.
    h["model.layers.1.mlp.up_proj.weigh_"] = h.pop(victim)
    rewrite_header(f, h, pad_to=n)


def unknown_arch(d: Path):
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["MambaForCausalLM"]
    cfg["model_type"] = "mamba"
    (d / "config.json").write_text(json.dumps(cfg))


def no_tokenizer(d: Path):
    (d / "tokenizer.json").unlink()


def invalid_json(d: Path):
    (d / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "hidden_size": 96,')


def bad_shard_index(d: Path):
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    k = next(iter(idx["weight_map"]))
    idx["weight_map"][k] = "model-00009-of-00009.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps(idx))


def absurd_header(d: Path):
    f = d / "model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[:8] = struct.pack("<Q", 1 << 60)
    f.write_bytes(bytes(raw))


CASES = [
    ("truncated", "smollm2-tiny-bf16", truncate, ["model.safetensors", "past end of file"]),
    ("header-past-eof", "smollm2-tiny-bf16", header_past_eof, ["model.safetensors", "header length"]),
    ("absurd-header", "smollm2-tiny-bf16", absurd_header, ["model.safetensors", "header length", "limit"]),
    ("overlap", "smollm2-tiny-bf16", overlapping, ["model.safetensors", "overlaps"]),
    ("out-of-range", "smollm2-tiny-bf16", out_of_range, ["model.safetensors", "past end of file"]),
    ("dtype-shape-mismatch", "smollm2-tiny-bf16", dtype_mismatch, ["model.safetensors", "does not match dtype"]),
    ("unsupported-dtype", "smollm2-tiny-bf16", unsupported_dtype, ["unsupported dtype I16", "tensor '"]),
    ("missing-tensor", "smollm2-tiny-bf16", missing_tensor, ["missing tensors", "model.layers.1.mlp.up_proj.weight"]),
    ("unknown-arch", "smollm2-tiny-bf16", unknown_arch, ["config.json", "unsupported architecture 'MambaForCausalLM'"]),
    ("no-tokenizer", "smollm2-tiny-bf16", no_tokenizer, ["tokenizer.json", "missing tokenizer.json"]),
    ("invalid-json", "smollm2-tiny-bf16", invalid_json, ["config.json", "invalid JSON"]),
    ("bad-shard-index", "smollm2-tiny-bf16-sharded", bad_shard_index, ["model.safetensors.index.json", "does not exist"]),
]


@pytest.mark.parametrize("case,fixture,mutate,words", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("existing_output", [False, True], ids=["fresh", "existing"])
def test_bad_input_is_one_clear_error(case, fixture, mutate, words, existing_output, synthetic, run_smolq, tmp_path):
    d = copy_ckpt(synthetic(fixture), tmp_path / "ckpt")
    mutate(d)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "model.gguf"
    if existing_output:
        out.write_bytes(b"precious bytes")
    proc = run_smolq("convert", d, "-o", out, "--outtype", "q8_0", "-q", check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("smolq convert: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    # Nothing half-written: no temporary files, the existing output untouched.
    left = sorted(p.name for p in outdir.iterdir())
    if existing_output:
        assert left == ["model.gguf"] and out.read_bytes() == b"precious bytes"
    else:
        assert left == []


def test_wrong_options_are_usage_errors(synthetic, run_smolq, tmp_path):
    src = synthetic("smollm2-tiny-bf16")
    for args, words in [(["--outtype", "q3"], "--outtype must be one of"),
                        (["--bogus"], "unknown option '--bogus'"),
                        (["--pre-tokenizer", "klingon"], "--pre-tokenizer 'klingon'")]:
        proc = run_smolq("convert", src, "-o", tmp_path / "x.gguf", *args, check=False)
        assert proc.returncode == 2, proc.stderr
        assert words in proc.stderr
        assert not (tmp_path / "x.gguf").exists()
    proc = run_smolq("convert", check=False)
    assert proc.returncode == 2 and "missing the model" in proc.stderr


def test_missing_input_folder(run_smolq, tmp_path):
    proc = run_smolq("convert", tmp_path / "nope", "-o", tmp_path / "x.gguf", check=False)
    assert proc.returncode == 1
    assert "nope" in proc.stderr
