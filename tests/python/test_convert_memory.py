"""Streaming conversion keeps memory bounded by the tensors in flight, not by the model (issue 18).

A sharded BF16 checkpoint of 4 layers (1024 wide, FFN 4096: 128 MB of weights whose largest
tensor is 8 MB) is converted to F16 and Q4_K_M in one pass (`convert --also`). Its peak RSS,
minus the fixed cost of the same command that only plans (`--dry-run`: the binary, config,
tokenizer and safetensors headers), must stay under 2 x the largest tensor (its mapped source
and a slower thread's re-read) plus the output buffers (that tensor in F16 and in Q4_K_M), with
a little allowance for per-thread chunk buffers. A converter that held the model (128 MB) or
all its output (~170 MB) would be far over; the bound itself is ~35 MB (measured: ~20 MB).

The peak is ru_maxrss of a child process (getrusage), not a time: this test does not depend on
the machine's speed. The files written in one pass are also compared with two separate runs
(same bytes), and `smolq quantize` of the F16 to Q4_K_M is held to the same kind of bound.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fixtures import synthetic

# Big enough that tensors dominate the fixed cost, small enough to build in a few seconds.
SHAPE = replace(synthetic.ALIGNED_SMALL, hidden=1024, ffn=4096, layers=4, heads=8, kv_heads=8, tied=True,
                seed=1800)
CHUNK_ALLOWANCE = 8 << 20  # per-thread f32 row chunks (~1 MB each, quantize/tensor_quantizer.cpp) and allocator slack

_MEASURE = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stderr.write(r.stderr)\n"
    "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def peak_rss_bytes(*cmd) -> int:
    """Runs cmd in a fresh process and returns its peak RSS (ru_maxrss is per child tree)."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, *map(str, cmd)], capture_output=True, text=True,
                         timeout=600)
    rc, kb = out.stdout.split()
    assert rc == "0", f"{cmd} failed:\n{out.stderr[-2000:]}"
    return int(kb) * 1024


@pytest.fixture(scope="module")
def sharded_ckpt(fixtures_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt")
    s = synthetic.Synthetic("convert-memory-4x1024", SHAPE, "bf16", sharded=True)
    synthetic.build(s, out, fixtures_dir / "tokenizers" / SHAPE.tokenizer)
    return out


def largest_tensors(folder: Path) -> tuple[list[str], int]:
    """Names of the largest tensors (all of that size) and their size in bytes."""
    sizes = {}
    for f in folder.glob("*.safetensors"):
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        sizes.update({k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__"})
    big = max(sizes.values())
    return sorted(k for k, v in sizes.items() if v == big), big


def gguf_name(hf: str) -> str:
    if hf in ("model.embed_tokens.weight", "lm_head.weight"):
        return "token_embd.weight" if hf.startswith("model.embed") else "output.weight"
    for a, b in ((".mlp.gate_proj", ".ffn_gate"), (".mlp.up_proj", ".ffn_up"), (".mlp.down_proj", ".ffn_down"),
                 (".self_attn.q_proj", ".attn_q"), (".self_attn.k_proj", ".attn_k"),
                 (".self_attn.v_proj", ".attn_v"), (".self_attn.o_proj", ".attn_output")):
        hf = hf.replace(a, b)
    return hf.replace("model.layers.", "blk.")


def test_convert_two_outputs_streams(smolq_bin, sharded_ckpt, out_dir):
    from gguf import GGUFReader

    assert len(list(sharded_ckpt.glob("model-*-of-*.safetensors"))) == 2
    names, big = largest_tensors(sharded_ckpt)
    total = sum(f.stat().st_size for f in sharded_ckpt.glob("*.safetensors"))
    f16, q4 = out_dir / "m-f16.gguf", out_dir / "m-q4_k_m.gguf"
    base = [smolq_bin, "convert", sharded_ckpt, "-t", "2", "-q"]
    fixed = peak_rss_bytes(*base, "-o", f16, "--outtype", "f16", "--also", f"Q4_K_M={q4}", "--dry-run")
    peak = peak_rss_bytes(*base, "-o", f16, "--outtype", "f16", "--also", f"Q4_K_M={q4}")

    # The output buffers held while the largest tensor is written: its bytes in each file (the
    # largest such sum when several tensors share the largest size).
    out_sizes = [{t.name: int(t.n_bytes) for t in GGUFReader(str(p)).tensors} for p in (f16, q4)]
    out_buffers = max(sum(s[gguf_name(n)] for s in out_sizes) for n in names)
    name = names[0]
    bound = 2 * big + out_buffers + CHUNK_ALLOWANCE
    grown = peak - fixed
    msg = (f"convert held {grown / 2**20:.1f} MiB over its fixed cost ({fixed / 2**20:.1f} MiB); bound "
           f"{bound / 2**20:.1f} MiB = 2 x {big / 2**20:.1f} (largest tensor {name}) + {out_buffers / 2**20:.1f} "
           f"(its outputs) + {CHUNK_ALLOWANCE / 2**20:.0f}; the checkpoint is {total / 2**20:.0f} MiB")
    print(msg)
    assert total > 3 * bound, "the model must be much larger than the bound, or the test proves nothing"
    assert grown < bound, msg

    # quantize streams its GGUF input the same way (it held the whole mapped F16 before).
    q4r = out_dir / "r-q4.gguf"
    qfixed = peak_rss_bytes(smolq_bin, "quantize", f16, q4r, "Q4_K_M", "-t", "2", "--dry-run")
    qpeak = peak_rss_bytes(smolq_bin, "quantize", f16, q4r, "Q4_K_M", "-t", "2")
    qbound = 2 * max(out_sizes[0].values()) + max(out_sizes[1].values()) + CHUNK_ALLOWANCE
    qmsg = f"quantize held {(qpeak - qfixed) / 2**20:.1f} MiB over its fixed cost; bound {qbound / 2**20:.1f} MiB"
    print(qmsg)
    assert qpeak - qfixed < qbound, qmsg

    # One pass writes what two separate runs write.
    f16b, q4b = out_dir / "b-f16.gguf", out_dir / "b-q4.gguf"
    subprocess.run([*map(str, base), "-o", str(f16b), "--outtype", "f16"], check=True, capture_output=True)
    subprocess.run([*map(str, base), "-o", str(q4b), "--type", "Q4_K_M"], check=True, capture_output=True)
    assert f16.read_bytes() == f16b.read_bytes()
    assert q4.read_bytes() == q4b.read_bytes()


def test_also_usage_errors(run_smolq, synthetic, out_dir):
    ckpt = synthetic("smollm2-tiny-bf16-sharded")
    bad = [
        (["--also", "Q9_K=x.gguf"], "unknown file type 'Q9_K'"),
        (["--also", "=x.gguf"], "--also needs TYPE[=PATH]"),
        (["--also", "Q4_K_M", "--target-bpw", "5"], "--also writes fixed types"),
        (["--also", "Q4_K_M", "--json"], "--json prints one file's summary"),
    ]
    for extra, message in bad:
        r = run_smolq("convert", ckpt, "-o", out_dir / "a.gguf", *extra, check=False)
        assert r.returncode != 0 and message in r.stderr, (extra, r.stderr)
        assert not (out_dir / "a.gguf").exists()
    # A dry run prints every file's plan and writes nothing.
    r = run_smolq("convert", ckpt, "-o", out_dir / "a.gguf", "--also", f"Q4_K_M={out_dir / 'b.gguf'}", "--dry-run")
    assert "--also" in r.stdout
    assert not (out_dir / "a.gguf").exists() and not (out_dir / "b.gguf").exists()
