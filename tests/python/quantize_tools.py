"""Helpers shared by the `smolq quantize` interop tests (test_quantize_*.py): llama.cpp's own
tools (llama-quantize, llama-imatrix from scripts/build_llama_tools.sh), a small on-disk cache
for expensive inputs that do not depend on the code under test, GGUF tensor tables through
gguf-py, and perplexity from llama.cpp's logits (llama-cpp-python).

What is cached (under $SMOLQ_BUILD_DIR/test-cache/quantize, keyed by the sha256 of every input
that can change the result): llama.cpp-made files and numbers — the imatrix llama-imatrix
computes, llama-quantize's outputs' perplexities — and the F16 GGUF of the real checkpoint,
keyed by the smolq binary itself. Everything smolq produces in a test is made fresh.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

SOURCE_DIR = Path(os.environ.get("SMOLQ_SOURCE_DIR", Path(__file__).resolve().parents[2]))
TOOLS_DIR = Path(os.environ.get("LLAMA_TOOLS_DIR", SOURCE_DIR / "build" / "llama-tools")) / "bin"
BUILD_DIR = Path(os.environ.get("SMOLQ_BUILD_DIR", SOURCE_DIR / "build"))
CACHE_DIR = BUILD_DIR / "test-cache" / "quantize"
THREADS = 2
FULL = os.environ.get("SMOLQ_FULL_TESTS", "") not in ("", "0")

# Every llama_ftype the issue asks to prove, in llama-quantize's spelling.
ALL_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L",
             "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "F32", "F16", "BF16"]


def tool(name: str) -> Path:
    p = TOOLS_DIR / name
    if not p.is_file():
        pytest.skip(f"{p} not built (run scripts/build_llama_tools.sh)")
    return p


def run(*args, timeout: float = 900, check: bool = True, env=None) -> subprocess.CompletedProcess:
    cmd = [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        pytest.fail(f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- stdout ---\n{proc.stdout[-3000:]}"
                    f"\n--- stderr ---\n{proc.stderr[-3000:]}", pytrace=False)
    return proc


# --- cache -----------------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(*parts) -> str:
    """sha256 over the parts; Paths contribute their content hash, everything else its str()."""
    h = hashlib.sha256()
    for p in parts:
        h.update((sha256_file(p) if isinstance(p, Path) else str(p)).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def cached_file(name: str, key: str, make) -> Path:
    """CACHE_DIR/<key>-<name>, made by make(tmp_path) when absent (atomically renamed in)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    dst = CACHE_DIR / f"{key}-{name}"
    if not dst.exists():
        fd, tmp = tempfile.mkstemp(dir=CACHE_DIR, prefix=".tmp-")
        os.close(fd)
        try:
            make(Path(tmp))
            os.replace(tmp, dst)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return dst


def cached_json(name: str, key: str, compute):
    path = CACHE_DIR / f"{key}-{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
    return value


def tool_id(path: Path) -> str:
    """The llama.cpp build a cached result came from (the stamp names the pinned version)."""
    stamps = sorted(p.name for p in path.parent.parent.glob(".built-*"))
    st = path.stat()
    return f"{','.join(stamps)}:{st.st_size}:{int(st.st_mtime)}"


# --- inputs ----------------------------------------------------------------------------------

def smolq_f16(smolq_bin: Path, ckpt: Path, name: str) -> Path:
    """`smolq convert --outtype f16` of a checkpoint, cached by the smolq binary and the
    checkpoint's fixture key (the conversion itself is proved by test_convert.py)."""
    key_file = ckpt / ".fixture-key"
    ck = key_file.read_text() if key_file.exists() else cache_key(*sorted(ckpt.glob("*.safetensors")))
    key = cache_key(Path(smolq_bin), ck, "f16")

    def make(tmp: Path):
        run(smolq_bin, "convert", ckpt, "-o", tmp, "--outtype", "f16", "-q", "-t", THREADS)
    return cached_file(f"{name}-f16.gguf", key, make)


def llama_imatrix(model: Path, text: str, name: str, ctx: int = 256, chunks: int = 4, fmt: str = "gguf") -> Path:
    """llama.cpp's importance matrix of `model` over `text` (cached). A power-of-two chunk
    count makes the legacy .dat values (mean * ncall) divide back to the GGUF means exactly."""
    exe = tool("llama-imatrix")
    key = cache_key(model, text, ctx, chunks, fmt, tool_id(exe))

    def make(tmp: Path):
        with tempfile.TemporaryDirectory() as d:
            calib = Path(d) / "wiki.valid.excerpt.txt"
            calib.write_text(text, encoding="utf-8")
            out = Path(d) / f"imatrix.{fmt}"
            run(exe, "-m", model, "-f", calib, "-o", out, "--output-format", fmt, "-c", ctx, "--chunks", chunks,
                "-t", THREADS, "--no-ppl")
            shutil.copyfile(out, tmp)
    return cached_file(f"{name}-imatrix.{fmt}", key, make)


def llama_quantize(inp: Path, out: Path, ftype: str, *opts, imatrix: Path | None = None, threads: int = THREADS):
    args = list(opts) + (["--imatrix", imatrix] if imatrix else [])
    return run(tool("llama-quantize"), *args, inp, out, ftype, threads)


_DRY_LINE = re.compile(r"^\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[[^\]]*\], type =\s*(\S+), size =[^(\n]*(?:\((\S+)\))?",
                       re.M)


def llama_dry_run_types(inp: Path, ftype: str, *opts, imatrix: Path | None = None) -> dict:
    """{tensor: type name (upper case)} as `llama-quantize --dry-run` plans it."""
    args = ["--dry-run"] + list(opts) + (["--imatrix", imatrix] if imatrix else [])
    proc = run(tool("llama-quantize"), *args, inp, ftype)
    types = {m.group(1): (m.group(3) or m.group(2)).upper() for m in _DRY_LINE.finditer(proc.stdout + proc.stderr)}
    assert types, f"no tensor lines in llama-quantize --dry-run output:\n{proc.stderr[-2000:]}"
    return types


# --- reading results -------------------------------------------------------------------------

def tensor_types(path: Path) -> dict:
    import gguf
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}


def tensor_bytes(path: Path) -> dict:
    import gguf
    return {t.name: bytes(np.asarray(t.data).view(np.uint8).reshape(-1)) for t in gguf.GGUFReader(str(path)).tensors}


def fields(path: Path, prefix: str = "") -> dict:
    """{key: (GGUF value type name, value)} of the metadata keys starting with prefix."""
    import gguf
    out = {}
    for f in gguf.GGUFReader(str(path)).fields.values():
        if f.name.startswith(prefix) and not f.name.startswith("GGUF."):
            out[f.name] = (f.types[0].name if f.types else "?", f.contents())
    return out


def llama_logits(gguf_path: Path, text: str, n_tokens: int) -> tuple[np.ndarray, list]:
    """llama.cpp's (llama-cpp-python) logits [n_tokens, vocab] for the first n_tokens tokens of
    `text` in one window, and the tokens."""
    import llama_cpp
    m = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=n_tokens, n_batch=n_tokens, logits_all=True, verbose=False,
                        seed=0, n_threads=THREADS)
    try:
        toks = m.tokenize(text.encode("utf-8"), add_bos=True)[:n_tokens]
        assert len(toks) == n_tokens, f"excerpt too short: {len(toks)} tokens"
        m.eval(toks)
        logits = np.array(m.scores[:n_tokens], dtype=np.float64)
    finally:
        if hasattr(m, "close"):
            m.close()
    assert np.isfinite(logits).all(), f"{gguf_path.name}: llama.cpp produced non-finite logits"
    return logits, [int(t) for t in toks]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    mx = logits.max(axis=1, keepdims=True)
    return logits - (np.log(np.exp(logits - mx).sum(axis=1, keepdims=True)) + mx)


def token_nll(logits: np.ndarray, toks: list) -> np.ndarray:
    """Negative log-likelihood of every token after the first (natural log)."""
    lp = log_softmax(logits)
    return -lp[np.arange(len(toks) - 1), toks[1:]]


def perplexity_of(logits: np.ndarray, toks: list) -> float:
    """exp(mean negative log-likelihood) of every token after the first."""
    return float(np.exp(token_nll(logits, toks).mean()))


def mean_kld(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean over positions of KL(ref || model), natural log."""
    lp_ref, lp = log_softmax(ref_logits), log_softmax(logits)
    return float((np.exp(lp_ref) * (lp_ref - lp)).sum(axis=1).mean())


def perplexity(gguf_path: Path, text: str, n_tokens: int) -> tuple[float, list]:
    logits, toks = llama_logits(gguf_path, text, n_tokens)
    return perplexity_of(logits, toks), toks


def imatrix_importance(imatrix: Path) -> dict:
    """{weight: per-column importance = in_sum2 / counts} of a GGUF imatrix (dense weights)."""
    import gguf
    t = {x.name: np.asarray(x.data, dtype=np.float64).reshape(-1) for x in gguf.GGUFReader(str(imatrix)).tensors}
    return {n[: -len(".in_sum2")]: v / t[n[: -len(".in_sum2")] + ".counts"][0]
            for n, v in t.items() if n.endswith(".in_sum2")}


def weighted_sse(source: Path, quantized: Path, importance: dict) -> float:
    """Sum over the quantized tensors of importance[col] * (dequantized - source)^2: the error
    both llama.cpp's and smolq's quantizers minimise (importance 1 where the imatrix has no
    entry). Decoded by gguf-py, independently of smolq."""
    import gguf
    from gguf.quants import dequantize
    src = {t.name: t for t in gguf.GGUFReader(str(source)).tensors}
    total = 0.0
    for t in gguf.GGUFReader(str(quantized)).tensors:
        s = src[t.name]
        if t.tensor_type == s.tensor_type and t.tensor_type.name in ("F32", "F16", "BF16"):
            continue  # copied unchanged
        w = dequantize(s.data, s.tensor_type).astype(np.float64)
        q = dequantize(t.data, t.tensor_type).astype(np.float64)
        imp = importance.get(t.name, np.ones(w.shape[-1]))
        total += float((((q - w) ** 2) * imp).sum())
    return total
