"""Quality and cost of `smolq quantize --optimize` against the amount of calibration text.

For each model (real SmolLM2-135M, the 256-aligned synthetic model) and file type: smolq's
plain file with llama-imatrix's importance (8 x 512 tokens of WikiText-2 validation) and
optimised files calibrated on 2, 4, 8 ... chunks of 512 tokens of the same text; mean KLD from
the F16 file measured by llama.cpp (`llama-perplexity --kl-divergence`, N x 512 WikiText-2 test
tokens: the protocol of tests/python/test_optimize.py, helpers in optimize_tools.py) and the CPU
seconds (user + system) of each smolq run. `--bin LABEL=PATH[@C,C..]` (repeatable) compares smolq
builds (e.g. a double-precision factorisation against the float one) on the same files, at the
given chunk counts (default: --chunks); `--flags LABEL=FLAGS` adds smolq options to that build's
optimised runs (e.g. `--bin seq=build/smolq@8 --bin asym=build/smolq@8 --flags "asym=--opt-inputs asym"`).

  .venv/bin/python bench/optimize_calib_sweep.py [--models real,aligned256] [--types Q4_K_M,Q2_K,IQ4_XS]
      [--chunks 2,4,8] [--eval-chunks 12] [--bin float=build/smolq --bin double=/tmp/smolq-double@8]
      [--flags "LABEL=--opt-inputs asym"]

Results: a markdown table on stdout and build/test-cache/optimize/calib-sweep-*.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests" / "python"))
sys.path.insert(0, str(HERE / "scripts"))

from conftest import wikitext_excerpt  # noqa: E402
from optimize_tools import CACHE_DIR, calib_file, eval_file, imatrix_for, kld_base, mean_kld  # noqa: E402
from quantize_tools import THREADS, smolq_f16  # noqa: E402

CALIB_CHUNKS = 8  # the imatrix's calibration, as in test_optimize.py


def checkpoint(model: str) -> Path:
    gen = HERE / "testdata" / "generated"
    manifest = json.loads((gen / "manifest.json").read_text())
    name = "smollm2-135m-instruct" if model == "real" else "aligned256-bf16"
    return gen / manifest[name]["path"]


def timed(cmd: list) -> float:
    """Runs cmd; returns its CPU seconds (user + system of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{proc.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="real,aligned256")
    ap.add_argument("--types", default="Q4_K_M,Q2_K,IQ4_XS")
    ap.add_argument("--chunks", default="2,4,8")
    ap.add_argument("--eval-chunks", type=int, default=12)
    ap.add_argument("--bin", action="append", default=[], help="LABEL=PATH of a smolq build (default: build/smolq)")
    ap.add_argument("--flags", action="append", default=[], help="LABEL=FLAGS: extra smolq options for that build")
    ap.add_argument("--out", default=str(HERE / "build" / "calib-sweep"))
    args = ap.parse_args()
    flags = {}
    for spec in args.flags:
        label, opts = spec.split("=", 1)
        flags[label] = opts.split()
    bins = []
    for spec in args.bin or [f"smolq={HERE / 'build' / 'smolq'}"]:
        label, rest = spec.split("=", 1)
        exe, _, chunks = rest.partition("@")
        bins.append((label, exe, [int(c) for c in (chunks or args.chunks).split(",")]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calib = calib_file(wikitext_excerpt)
    rows = []
    print("| model | type | build | calib chunks | plain KLD | opt KLD | opt / plain | plain CPU s | opt CPU s | CPU ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        f16 = smolq_f16(Path(bins[0][1]), checkpoint(model), model)
        imatrix = imatrix_for(f16, calib, f"{model}-opt", CALIB_CHUNKS)
        base = kld_base(f16, eval_file(wikitext_excerpt, args.eval_chunks), args.eval_chunks)
        for ftype in args.types.split(","):
            plain = out / f"{model}-{ftype}-plain.gguf"
            common = ["quantize", f16, None, ftype, "-q", "-t", THREADS, "--imatrix", imatrix]
            cpu_plain = timed([bins[0][1]] + [plain if c is None else c for c in common])
            kld_plain = mean_kld(plain, base)
            for label, exe, chunk_counts in bins:
                for ch in chunk_counts:
                    f = out / f"{model}-{ftype}-{label}-{ch}.gguf"
                    cpu = timed([exe] + [f if c is None else c for c in common] +
                                ["--optimize", "--calib", calib, "--opt-chunks", ch, "--opt-ctx", 512] +
                                flags.get(label, []))
                    kld = mean_kld(f, base)
                    f.unlink()
                    row = {"model": model, "type": ftype, "build": label, "chunks": ch, "plain": kld_plain,
                           "opt": kld, "cpu_plain": cpu_plain, "cpu_opt": cpu}
                    rows.append(row)
                    print(f"| {model} | {ftype} | {label} | {ch} | {kld_plain:.6f} | {kld:.6f} | {kld / kld_plain:.3f}x | "
                          f"{cpu_plain:.2f} | {cpu:.1f} | {cpu / cpu_plain:.1f}x |", flush=True)
                    CACHE_DIR.mkdir(parents=True, exist_ok=True)
                    (CACHE_DIR / f"calib-sweep-{os.getpid()}.json").write_text(json.dumps(rows, indent=1))
            plain.unlink()


if __name__ == "__main__":
    main()
