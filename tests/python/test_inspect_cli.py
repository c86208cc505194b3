"""`smolq inspect` through the CLI: agrees with the `gguf` package on the real SmolLM2-135M GGUF,
and reports (exit code 1, readable output, no crash) every kind of damaged file."""
from __future__ import annotations

import json
import struct

import pytest


def inspect_json(run_smolq, path, check=True):
    proc = run_smolq("inspect", path, "--json", check=check)
    return proc, json.loads(proc.stdout)


def test_real_gguf_matches_gguf_py(run_smolq, real_gguf, real_gguf_reader):
    proc, r = inspect_json(run_smolq, real_gguf)
    assert proc.returncode == 0
    ref = real_gguf_reader
    assert len(r["tensors"]) == len(ref.tensors)
    by_name = {t["name"]: t for t in r["tensors"]}
    for t in ref.tensors:
        ours = by_name[t.name]
        assert ours["type"] == t.tensor_type.name
        assert ours["bytes"] == t.n_bytes
        assert ours["shape"] == [int(d) for d in t.shape]
    assert r["parameters"] == sum(int(t.n_elements) for t in ref.tensors)
    assert r["tokenizer"]["vocab_size"] == 49152
    assert r["tokenizer"]["merges"] == 48900
    assert r["tokenizer"]["pre"] == "smollm"
    assert r["tokenizer"]["chat_template"] is True
    assert r["architecture"]["n_layer"] == 30
    # long arrays are summarised, not dumped
    toks = r["metadata"]["tokenizer.ggml.tokens"]
    assert toks["count"] == 49152 and len(toks["first"]) == 8
    assert not [f for f in r["findings"] if f["severity"] == "error"]
    # text: metadata and a tensor table by default; per-layer table on request
    text = run_smolq("inspect", real_gguf).stdout
    assert "## metadata" in text and "## tensors (272)" in text and "blk.29.ffn_down.weight" in text
    layers = run_smolq("inspect", real_gguf, "--layers").stdout
    assert "bits per weight by layer" in layers and "## metadata" not in layers


def _damage(data: bytes, kind: str) -> bytes:
    b = bytearray(data)
    if kind == "truncated-header":
        return bytes(b[: len(b) // 100])
    if kind == "truncated-data":
        return bytes(b[: len(b) - 1_000_000])
    if kind == "bad-magic":
        b[0:4] = b"GGUX"
    elif kind == "bad-version":
        b[4:8] = struct.pack("<I", 99)
    elif kind == "huge-kv-count":
        b[16:24] = struct.pack("<Q", 1 << 40)
    elif kind == "bad-tensor-type":
        name = b"output_norm.weight"
        at = bytes(b).index(name) + len(name)  # n_dims u32, dims, type u32
        n_dims = struct.unpack_from("<I", b, at)[0]
        struct.pack_into("<I", b, at + 4 + 8 * n_dims, 77)
    elif kind == "misaligned":
        name = b"output_norm.weight"
        at = bytes(b).index(name) + len(name)
        n_dims = struct.unpack_from("<I", b, at)[0]
        off_at = at + 4 + 8 * n_dims + 4
        struct.pack_into("<Q", b, off_at, struct.unpack_from("<Q", b, off_at)[0] + 2)
    return bytes(b)


@pytest.mark.parametrize("kind", ["truncated-header", "truncated-data", "bad-magic", "bad-version",
                                  "huge-kv-count", "bad-tensor-type", "misaligned"])
def test_damaged_files_are_reported(run_smolq, real_gguf, out_dir, kind):
    path = out_dir / f"{kind}.gguf"
    path.write_bytes(_damage(real_gguf.read_bytes(), kind))
    proc, r = inspect_json(run_smolq, path, check=False)
    assert proc.returncode == 1, proc.stderr
    errors = [f for f in r["findings"] if f["severity"] == "error"]
    assert errors, r["findings"]
    text = run_smolq("inspect", path, check=False)
    assert text.returncode == 1
    assert "## integrity" in text.stdout and "error:" in text.stdout
    if kind in ("truncated-data", "bad-tensor-type", "misaligned"):
        # the header was intact: everything else is still shown
        assert len(r["tensors"]) == 272
        assert r["tokenizer"]["vocab_size"] == 49152


def test_hf_folder_and_safetensors(run_smolq, real_ckpt):
    proc, r = inspect_json(run_smolq, real_ckpt)
    assert proc.returncode == 0
    assert r["kind"] == "hf-folder"
    assert len(r["tensors"]) == 272
    assert r["parameters"] == 134515008
    assert r["tokenizer"]["vocab_size"] == 49152
    assert {t["type"] for t in r["tensors"]} == {"BF16"}
    proc, st = inspect_json(run_smolq, real_ckpt / "model.safetensors")
    assert st["kind"] == "safetensors" and len(st["tensors"]) == 272


def test_damaged_safetensors_is_reported(run_smolq, real_ckpt, out_dir):
    bad = out_dir / "model.safetensors"
    bad.write_bytes((real_ckpt / "model.safetensors").read_bytes()[:5000])
    proc, r = inspect_json(run_smolq, bad, check=False)
    assert proc.returncode == 1
    assert any(f["severity"] == "error" for f in r["findings"])
