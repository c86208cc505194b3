"""Where does an optimised file's KLD come from? Hybrid files of two files with the same layout.

For one model and one file type: llama-quantize's file, smolq's plain file and smolq's
`--optimize` file (the protocol of tests/python/test_optimize.py: the same llama-imatrix on 8 x 512
WikiText-2 validation tokens, --optimize calibrated on the same tokens), then hybrids that take
the tensors whose names match a regex from one file and everything else from another (same
tensor names, types and byte sizes; the data are copied byte for byte), each measured by
llama.cpp (`llama-perplexity --kl-divergence`, N x 512 WikiText-2 test tokens).

  .venv/bin/python bench/optimize_splice.py [--model real] [--type IQ2_XS] [--split ffn_down]
      [--eval-chunks 12] [--keep DIR] [--flags "--opt-cd 4"]

Rows: plain, opt, llama; opt with `split` from plain (the gain of the other tensors alone);
plain with `split` from opt (the gain of `split` alone); the same two with llama's file.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import gguf

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests" / "python"))
sys.path.insert(0, str(HERE / "bench"))

from conftest import wikitext_excerpt  # noqa: E402
from optimize_calib_sweep import CALIB_CHUNKS, checkpoint, timed  # noqa: E402
from optimize_tools import calib_file, eval_file, imatrix_for, kld_base, llama_quantize, mean_kld  # noqa: E402
from quantize_tools import THREADS, smolq_f16  # noqa: E402


def tensor_spans(path: Path) -> dict:
    """name -> (type, data offset, byte count) of every tensor."""
    r = gguf.GGUFReader(str(path))
    return {t.name: (int(t.tensor_type), int(t.data_offset), int(t.n_bytes)) for t in r.tensors}


def splice(base: Path, donor: Path, pattern: str, out: Path) -> int:
    """out = base with the data of the tensors matching `pattern` taken from donor; returns their count."""
    a, b = tensor_spans(base), tensor_spans(donor)
    if set(a) != set(b):
        sys.exit(f"{base} and {donor}: different tensor names")
    shutil.copyfile(base, out)
    rx = re.compile(pattern)
    n = 0
    with open(donor, "rb") as src, open(out, "r+b") as dst:
        for name, (ty, off, size) in a.items():
            if not rx.search(name):
                continue
            if b[name][0] != ty or b[name][2] != size:
                sys.exit(f"{name}: type or size differs between {base} and {donor}")
            src.seek(b[name][1])
            dst.seek(off)
            dst.write(src.read(size))
            n += 1
    return n


def kld_cached(path: Path, base: Path, cache: Path) -> float:
    """mean_kld, remembered per file (name, size, mtime) in `cache` (hybrids are made afresh)."""
    memo = json.loads(cache.read_text()) if cache.exists() else {}
    st = path.stat()
    key = f"{path.name}:{st.st_size}:{st.st_mtime_ns}:{base.name}"
    if key not in memo:
        memo[key] = mean_kld(path, base)
        cache.write_text(json.dumps(memo, indent=1))
    return memo[key]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="real")
    ap.add_argument("--type", default="IQ2_XS")
    ap.add_argument("--split", default="ffn_down", help="regex of the tensor names to swap")
    ap.add_argument("--eval-chunks", type=int, default=12)
    ap.add_argument("--bin", default=str(HERE / "build" / "smolq"))
    ap.add_argument("--flags", default="", help="extra smolq options for the optimised file")
    ap.add_argument("--variant", action="append", default=[],
                    help="LABEL=FLAGS: also an optimised file with these smolq options; rows: it alone and the "
                         "default optimised file with `split` from it (a per-family setting without code)")
    ap.add_argument("--base", default="opt", help="the file the variants' `split` tensors go into (opt or a variant)")
    ap.add_argument("--only-variants", action="store_true", help="skip the plain / llama hybrids")
    ap.add_argument("--keep", default=str(HERE / "build" / "splice"), help="directory of the files")
    args = ap.parse_args()
    out = Path(args.keep)
    out.mkdir(parents=True, exist_ok=True)
    calib = calib_file(wikitext_excerpt)
    f16 = smolq_f16(Path(args.bin), checkpoint(args.model), args.model)
    imatrix = imatrix_for(f16, calib, f"{args.model}-opt", CALIB_CHUNKS)
    base = kld_base(f16, eval_file(wikitext_excerpt, args.eval_chunks), args.eval_chunks)
    stem = f"{args.model}-{args.type}"
    files = {k: out / f"{stem}-{k}.gguf" for k in ("plain", "opt", "llama")}
    common = ["quantize", f16, None, args.type, "-q", "-t", THREADS, "--imatrix", imatrix]
    if not files["plain"].exists():
        timed([args.bin] + [files["plain"] if c is None else c for c in common])
    if not files["opt"].exists():
        cpu = timed([args.bin] + [files["opt"] if c is None else c for c in common] +
                    ["--optimize", "--calib", calib, "--opt-chunks", CALIB_CHUNKS, "--opt-ctx", 512] +
                    args.flags.split())
        print(f"opt file: {cpu:.1f} CPU s", flush=True)
    if not files["llama"].exists():
        llama_quantize(f16, files["llama"], args.type, imatrix=imatrix)
    for spec in args.variant:
        label, opts = spec.split("=", 1)
        files[label] = out / f"{stem}-{label}.gguf"
        if not files[label].exists():
            chunks = [] if "--opt-chunks" in opts else ["--opt-chunks", CALIB_CHUNKS]
            cpu = timed([args.bin] + [files[label] if c is None else c for c in common] +
                        ["--optimize", "--calib", calib, "--opt-ctx", 512] + chunks + args.flags.split() + opts.split())
            print(f"{label} file ({opts}): {cpu:.1f} CPU s", flush=True)
    hybrids = [] if args.only_variants else [("opt", "plain"), ("plain", "opt"), ("llama", "opt"), ("opt", "llama")]
    hybrids += [(args.base, spec.split("=", 1)[0]) for spec in args.variant if spec.split("=", 1)[0] != args.base and args.base in files]
    print(f"| file ({args.model} {args.type}, split /{args.split}/) | mean KLD |")
    print("|---|---|")
    for k in files:
        print(f"| {k} | {kld_cached(files[k], base, out / 'kld.json'):.6f} |", flush=True)
    for rest, part in hybrids:
        h = out / f"{stem}-{rest}-with-{part}.gguf"
        n = splice(files[rest], files[part], args.split, h)
        print(f"| {rest}, {n} tensors /{args.split}/ from {part} | {mean_kld(h, base):.6f} |", flush=True)
        h.unlink()


if __name__ == "__main__":
    main()
