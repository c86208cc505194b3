"""Helpers for the measured mixed-precision tests (test_mixed_*.py, docs/mixed-precision.md).

The comparison the issue asks for: for each standard mixture (Q3_K_M, Q4_K_M, Q5_K_M) make
the fixed-rule file with `smolq quantize`, then a target-driven file of (at most) the same size
with `--target-size`, and measure both with llama.cpp (llama-cpp-python): mean KL divergence of
their next-token distributions from the F16 model's, on a WikiText-2 *test* excerpt. The
profile is measured on a WikiText-2 *validation* excerpt, so calibration and evaluation never
share text.

The sensitivity profile is kept in $SMOLQ_BUILD_DIR/test-cache/mixed/ and smolq itself decides
whether it can be reused (its key holds the model's, the calibration text's and the settings'
hashes); a fresh build directory measures it again.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from quantize_tools import BUILD_DIR, THREADS, fields, llama_logits, mean_kld

CACHE_DIR = BUILD_DIR / "test-cache" / "mixed"
STANDARD = ["Q3_K_M", "Q4_K_M", "Q5_K_M"]
FILE_LINE = re.compile(r"output file: (\d+) bytes")


def calib_file(wikitext, n_chars: int = 60000) -> Path:
    """A WikiText-2 validation excerpt as a file (the profile's calibration text)."""
    text = wikitext(n_chars, split="valid")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"calib-{hashlib.sha256(text.encode()).hexdigest()[:16]}.txt"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path


def mix_fields(path: Path) -> dict:
    """{key: value} of a file's smolq.mix.* metadata (gguf-py)."""
    return {k: v for k, (_, v) in fields(path, "smolq.mix.").items()}


def bits_per_weight(path: Path) -> float:
    """8 x tensor bytes / elements over every tensor (llama-quantize's definition)."""
    import gguf
    r = gguf.GGUFReader(str(path))
    nbytes = sum(int(t.n_bytes) for t in r.tensors)
    elems = sum(int(t.n_elements) for t in r.tensors)
    return 8.0 * nbytes / elems


def compare_at_standard_sizes(name: str, f16: Path, run_smolq, out_dir: Path, calib: Path, eval_text: str,
                              n_tokens: int, extra: list | None = None) -> list[dict]:
    """Fixed mixture vs target allocation at the fixed file's size, for each STANDARD type.
    Returns one row per type; writes them to CACHE_DIR/results-<name>.json for the docs."""
    extra = [str(a) for a in (extra or [])]
    profile = CACHE_DIR / f"{name}.smolq-profile.json"
    ref_logits, _ = llama_logits(f16, eval_text, n_tokens)
    rows = []
    for i, ftype in enumerate(STANDARD):
        fixed = out_dir / f"{name}-{ftype}.gguf"
        run_smolq("quantize", f16, fixed, ftype, "-q", "-t", THREADS)
        size = fixed.stat().st_size
        target = out_dir / f"{name}-{ftype}-target.gguf"
        proc = run_smolq("quantize", f16, target, "--target-size", size, "--calib", calib, "--profile", profile,
                         "-q", "-t", THREADS, *extra, timeout=1800)
        tsize = target.stat().st_size
        kf = mean_kld(ref_logits, llama_logits(fixed, eval_text, n_tokens)[0])
        kt = mean_kld(ref_logits, llama_logits(target, eval_text, n_tokens)[0])
        meta = mix_fields(target)
        rows.append({"type": ftype, "fixed_bytes": size, "target_bytes": tsize, "fixed_kld": kf, "target_kld": kt,
                     "ratio": kt / kf, "predicted_kld": meta["smolq.mix.predicted_kld"],
                     "target_bpw": meta["smolq.mix.bpw"], "fixed_bpw": bits_per_weight(fixed),
                     "profile_reused": "profile reused" in proc.stderr})
        if i > 0:  # the first target measures (or reuses a cached) profile; the others must reuse it
            assert "profile reused" in proc.stderr, proc.stderr[-2000:]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    (CACHE_DIR / f"results-{name}.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{name}: type, fixed bytes, target bytes, fixed KLD, target KLD, ratio, predicted")
    for r in rows:
        print(f"  {r['type']:7s} {r['fixed_bytes']:>11d} {r['target_bytes']:>11d} {r['fixed_kld']:.6f} "
              f"{r['target_kld']:.6f} {r['ratio']:.3f} {r['predicted_kld']:.6f}")
    return rows


def check_rows(rows: list[dict]):
    for r in rows:
        # Never above the requested size, and within 1% of it (the "same size").
        assert r["target_bytes"] <= r["fixed_bytes"], r
        assert r["target_bytes"] >= 0.99 * r["fixed_bytes"], r
        # Lower measured divergence than the fixed rules at the same size.
        assert r["target_kld"] < r["fixed_kld"], r
