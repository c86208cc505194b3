"""Helpers for the `--optimize` tests (test_optimize.py, docs/optimize.md).

The comparison issue 17 asks for, for one model and one file type:
  - llama.cpp's file:  llama-quantize with the imatrix llama-imatrix made on the calibration text;
  - smolq's plain file: `smolq quantize` with the same imatrix (same per-tensor types and size);
  - smolq's optimised file: the same plus `--optimize --calib TEXT` on the same calibration text.
All three are measured by llama.cpp itself: `llama-perplexity --kl-divergence` against the F16
file's logits (`--kl-divergence-base`), n chunks of 512 tokens of WikiText-2 *test*. Calibration
is WikiText-2 *validation* (this machine's assets have no train split), so the texts never meet.

Cached under $SMOLQ_BUILD_DIR/test-cache/optimize (keyed by every input): the F16 logits base
and llama.cpp's own files and numbers. Everything smolq makes is made fresh.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from quantize_tools import (BUILD_DIR, THREADS, cache_key, cached_file, cached_json, llama_imatrix, llama_quantize,
                            run, tool, tool_id)

CACHE_DIR = BUILD_DIR / "test-cache" / "optimize"
CTX = 512
MEAN_KLD = re.compile(r"Mean\s+KLD:\s+([0-9.eE+-]+)")


def text_file(text: str, stem: str) -> Path:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"{stem}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.txt"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path


def calib_file(wikitext, n_chars: int = 120000) -> Path:
    """WikiText-2 validation excerpt: the calibration text of the imatrix and of --optimize."""
    return text_file(wikitext(n_chars, split="valid"), "calib")


def eval_file(wikitext, chunks: int) -> Path:
    """WikiText-2 test excerpt with at least `chunks` chunks of 512 tokens (~4.3 chars a token)."""
    return text_file(wikitext(int(chunks * CTX * 5.0) + 4000, split="test"), f"eval{chunks}")


def imatrix_for(f16: Path, calib: Path, name: str, chunks: int) -> Path:
    """llama-imatrix on the calibration text: the importance every file of a comparison uses."""
    return llama_imatrix(f16, calib.read_text(encoding="utf-8"), name, ctx=CTX, chunks=chunks)


def kld_base(f16: Path, evalf: Path, chunks: int) -> Path:
    """llama-perplexity --kl-divergence-base of the F16 file (cached)."""
    exe = tool("llama-perplexity")
    key = cache_key(f16, evalf, chunks, CTX, tool_id(exe))

    def make(tmp: Path):
        run(exe, "-m", f16, "-f", evalf, "--kl-divergence-base", tmp, "-c", CTX, "--chunks", chunks, "-t", THREADS,
            "-b", CTX)
    return cached_file("f16.kld", key, make)


def mean_kld(model: Path, base: Path) -> float:
    """Mean KL divergence of `model` from the base logits, as llama-perplexity prints it."""
    proc = run(tool("llama-perplexity"), "-m", model, "--kl-divergence-base", base, "--kl-divergence", "-t", THREADS,
               "-b", CTX)
    m = MEAN_KLD.search(proc.stdout + proc.stderr)
    assert m, f"no 'Mean KLD' in llama-perplexity's output:\n{(proc.stdout + proc.stderr)[-2000:]}"
    return float(m.group(1))


def llama_file_kld(f16: Path, ftype: str, imatrix: Path, base: Path) -> dict:
    """llama-quantize's file of `ftype` with `imatrix`: size and mean KLD (cached)."""
    exe = tool("llama-quantize")
    key = cache_key(f16, ftype, imatrix, base, tool_id(exe))

    def compute():
        out = CACHE_DIR / f".llama-{key}-{ftype}.gguf"
        llama_quantize(f16, out, ftype, imatrix=imatrix)
        try:
            return {"size": out.stat().st_size, "kld": mean_kld(out, base)}
        finally:
            out.unlink()
    return cached_json(f"llama-{ftype}", key, compute)


def smolq_file(run_smolq, f16: Path, out: Path, ftype: str, imatrix: Path | None, *extra) -> float:
    """Makes a smolq file; returns the seconds it took."""
    args = ["quantize", f16, out, ftype, "-q", "-t", THREADS] + (["--imatrix", imatrix] if imatrix else []) + list(extra)
    proc = run_smolq(*args)
    m = re.search(r"([0-9.]+) s on [0-9]+ threads", proc.stdout + proc.stderr)
    return float(m.group(1)) if m else 0.0


def optimize_args(calib: Path | None, chunks: int | None, *extra, ctx: int = CTX) -> list:
    """--optimize's options; calib None when the command line already has --calib (--target-size);
    chunks None for the file type's default calibration (8 x 512, 16 x 512 for the lattice types)."""
    return (["--optimize"] + (["--calib", calib] if calib else []) + (["--opt-chunks", chunks] if chunks else []) +
            ["--opt-ctx", ctx] + list(extra))


def write_results(name: str, rows: list[dict]):
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    (CACHE_DIR / f"results-{name}.json").write_text(json.dumps(rows, indent=1))


def table(rows: list[dict]) -> str:
    lines = ["| type | llama-quantize KLD | smolq plain KLD | smolq --optimize KLD | opt / llama | opt / plain | size (bytes) "
             "| calibration chunks |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['type']} | {r['llama']:.6f} | {r['plain']:.6f} | {r['opt']:.6f} | "
                     f"{r['opt'] / r['llama']:.3f} | {r['opt'] / r['plain']:.3f} | {r['size']} | {r.get('calib_chunks', '')} |")
    return "\n".join(lines)


def env_chunks(default: int) -> int:
    return int(os.environ.get("SMOLQ_OPT_EVAL_CHUNKS", default))
