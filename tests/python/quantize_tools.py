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

import ctypes
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import struct
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

SOURCE_DIR = Path(os.environ.get("SMOLQ_SOURCE_DIR", Path(__file__).resolve().parents[2]))
TOOLS_DIR = Path(os.environ.get("LLAMA_TOOLS_DIR", SOURCE_DIR / "build" / "llama-tools")) / "bin"
BUILD_DIR = Path(os.environ.get("SMOLQ_BUILD_DIR", SOURCE_DIR / "build"))
CACHE_DIR = BUILD_DIR / "test-cache" / "quantize"
THREADS = 2

# Every llama_ftype issues #3 and #4 ask to prove, in llama-quantize's spelling, by family (each
# group is its own ctest entry on the real model, test_quantize_llama{,_k,_iq,_iq34,_other}.py,
# so that no entry runs long and ctest -j2 can balance them).
LEGACY_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
K_TYPES = ["Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K"]
LEGACY_K_TYPES = LEGACY_TYPES + K_TYPES
FLOAT_TYPES = ["F32", "F16", "BF16"]
IQ_TYPES = ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M",
            "IQ4_NL", "IQ4_XS"]
# Ternary, FP4 and the recent 1-2 bit types. The pinned llama.cpp knows all of them as tensor
# types; llama-quantize has no NVFP4 file type (see LLAMA_RECIPES).
OTHER_TYPES = ["TQ1_0", "TQ2_0", "MXFP4_MOE", "NVFP4", "Q2_0", "Q1_0"]
ALL_TYPES = LEGACY_K_TYPES + FLOAT_TYPES + IQ_TYPES + OTHER_TYPES


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

_SHA_MEMO: dict = {}


def sha256_file(path: Path) -> str:
    """Content hash, memoised by (path, size, mtime): the 270 MB F16 is keyed into every cached
    figure of the real model."""
    st = os.stat(path)
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_MEMO[memo] = h.hexdigest()
    return _SHA_MEMO[memo]


def cache_key(*parts) -> str:
    """sha256 over the parts; Paths contribute their content hash, everything else its str()."""
    h = hashlib.sha256()
    for p in parts:
        h.update((sha256_file(p) if isinstance(p, Path) else str(p)).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


@contextmanager
def _cache_lock(name: str):
    """An exclusive lock per cache entry: ctest runs several test files at once and they share
    the F16, the imatrix and the reference logits; the second one waits and then reuses."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f".lock-{name}", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_file(name: str, key: str, make) -> Path:
    """CACHE_DIR/<key>-<name>, made by make(tmp_path) when absent (atomically renamed in)."""
    dst = CACHE_DIR / f"{key}-{name}"
    if dst.exists():
        return dst
    with _cache_lock(f"{key}-{name}"):
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
    with _cache_lock(f"{key}-{name}"):
        if path.exists():
            return json.loads(path.read_text())
        value = compute()
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


def llama_quantize(inp: Path, out: Path, ftype: str, *opts, imatrix: Path | None = None, threads: int = THREADS,
                   check: bool = True):
    args = list(opts) + (["--imatrix", imatrix] if imatrix else [])
    return run(tool("llama-quantize"), *args, inp, out, ftype, threads, check=check)


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

# gguf-py 0.19 does not know Q2_0 (ggml type 42) and cannot decode Q1_0, so the tensor table is
# read here (the GGUF v3 header: a spec fact) and tensors are decoded by llama.cpp's own ggml.
_EXTRA_TYPE_NAMES = {42: "Q2_0"}
# GGUF metadata value type -> struct format of a scalar (8 = string, 9 = array are handled apart).
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class TensorInfo:
    def __init__(self, name: str, type_id: int, shape: tuple, offset: int):
        self.name, self.type_id, self.shape, self.offset = name, type_id, shape, offset
        self.n = int(np.prod(shape)) if shape else 1

    @property
    def type_name(self) -> str:
        import gguf
        try:
            return gguf.GGMLQuantizationType(self.type_id).name
        except ValueError:
            return _EXTRA_TYPE_NAMES.get(self.type_id, f"TYPE{self.type_id}")


def gguf_tensor_table(path: Path) -> list:
    """[TensorInfo] of a GGUF file, offsets absolute in the file."""
    with open(path, "rb") as f:
        data = f.read(64 << 20)  # the header of every model here fits (the 49k vocab: ~2 MB)
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v

    def string():
        nonlocal pos
        n = take("Q")
        pos += n
        return data[pos - n: pos].decode("utf-8", "replace")

    def value(vtype):
        if vtype == 8:
            return string()
        if vtype == 9:
            etype, count = take("I"), take("Q")
            return [value(etype) for _ in range(count)]
        return take(_GGUF_SCALARS[vtype])

    magic, version, n_tensors, n_kv = take("4s"), take("I"), take("Q"), take("Q")
    assert magic == b"GGUF" and version >= 2, f"{path}: not a GGUF v2/v3 file"
    alignment = 32
    for _ in range(n_kv):
        key = string()
        v = value(take("I"))
        if key == "general.alignment":
            alignment = int(v)
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = tuple(take("Q") for _ in range(take("I")))
        infos.append((name, take("I"), dims, take("Q")))
    data_start = (pos + alignment - 1) // alignment * alignment
    return [TensorInfo(n, t, d, data_start + o) for n, t, d, o in infos]


_GGML = None


def _ggml():
    """llama.cpp's libggml-base from the llama-cpp-python wheel (the tests' llama.cpp)."""
    global _GGML
    if _GGML is None:
        import llama_cpp

        class Traits(ctypes.Structure):  # struct ggml_type_traits of the pinned ggml.h
            _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                        ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                        ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                        ("from_float_ref", ctypes.c_void_p)]
        lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
        lib.ggml_get_type_traits.restype = ctypes.POINTER(Traits)
        lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
        _GGML = lib
    return _GGML


def tensor_nbytes(info: TensorInfo) -> int:
    tr = _ggml().ggml_get_type_traits(info.type_id).contents
    assert info.n % tr.blck_size == 0, f"{info.name}: {info.n} weights, blocks of {tr.blck_size}"
    return info.n // tr.blck_size * tr.type_size


def dequantize_tensor(path: Path, info: TensorInfo) -> np.ndarray:
    """float32 [rows, row] of one tensor, decoded by ggml's own to_float (F32 copied)."""
    nbytes = tensor_nbytes(info)
    raw = np.fromfile(path, dtype=np.uint8, count=nbytes, offset=info.offset)
    if info.type_id == 0:
        out = raw.view(np.float32).copy()
    else:
        tr = _ggml().ggml_get_type_traits(info.type_id).contents
        assert tr.to_float, f"ggml has no decoder for {info.type_name}"
        out = np.empty(info.n, dtype=np.float32)
        fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(tr.to_float)
        fn(raw.ctypes.data, out.ctypes.data, info.n)
    return out.reshape(-1, info.shape[0]) if info.shape else out


def tensor_types(path: Path) -> dict:
    """{tensor: type name as gguf-py spells it ('Q4_K', 'IQ2_XS', 'Q2_0')}."""
    return {t.name: t.type_name for t in gguf_tensor_table(path)}


def tensor_bytes(path: Path) -> dict:
    out = {}
    with open(path, "rb") as f:
        for t in gguf_tensor_table(path):
            f.seek(t.offset)
            out[t.name] = f.read(tensor_nbytes(t))
    return out


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
    entry). Decoded by ggml (llama.cpp's own decoders), independently of smolq."""
    src = {t.name: t for t in gguf_tensor_table(source)}
    total = 0.0
    for t in gguf_tensor_table(quantized):
        s = src[t.name]
        if t.type_id == s.type_id and t.type_name in ("F32", "F16", "BF16"):
            continue  # copied unchanged
        w = dequantize_tensor(source, s).astype(np.float64)
        q = dequantize_tensor(quantized, t).astype(np.float64)
        imp = importance.get(t.name, np.ones(w.shape[-1]))
        total += float((((q - w) ** 2) * imp).sum())
    return total


# --- "no worse than llama-quantize": the harness of test_quantize_llama*.py -------------------
#
# Each file type is quantized from the same F16 by smolq and by llama-quantize, with the same
# llama-imatrix (WikiText-2 validation excerpt), and both files are run by llama.cpp
# (llama-cpp-python) on one window of WikiText-2 test text.

# Real model: perplexity ours <= theirs * (1 + PPL_TOLERANCE), up to the measurement's own noise.
# Two equally good quantizations differ on a few hundred tokens by up to ~2% of perplexity either
# way (measured over the legacy/K types: -2.0% to +2.3%), so the bound is one-sided at two
# standard errors of the paired per-token log-likelihood difference: a quantizer that is really
# worse by more than PPL_TOLERANCE fails with ~97.5% probability, one that is equal passes as often.
PPL_TOLERANCE = 0.005
PAIRED_SIGMAS = 2.0
PPL_MODELS = {"real"}           # trained weights: perplexity means something
WEIGHT_ERROR_MODELS = {"syn"}   # random weights: compare the quantizers' objective instead
WSSE_TOLERANCE = 0.005
# Mean KL(F16 || quant) may exceed llama.cpp's by this factor (chance on a 2-layer random
# model; on the real 135M, whose weights were born as Q4_1, llama.cpp's Q4_1 lands closer to
# the original grid: 1.17x). A broken file is off by orders of magnitude.
KLD_NOISE = 1.25
N_TOKENS = {"real": 384, "syn": 512}         # tokens llama.cpp evaluates per file (one window)
CALIB_CHARS = {"real": 12000, "syn": 12000}  # WikiText-2 validation characters for llama-imatrix
SYN_CHECKPOINT = "aligned256-small-bf16"     # every width a multiple of 256, 1k vocabulary
_BPW = re.compile(r"effective ([\d.]+) bits per weight")
_PLAN_LINE = re.compile(r"^(\S+)\s+\d[\d x]*\s+\S+\s+->\s+(\S+)", re.M)


class Model:
    """One source model (F16 GGUF, imatrix, evaluation text) and the results gathered on it."""

    def __init__(self, name: str, label: str, f16: Path, imatrix: Path, text: str):
        self.name, self.label, self.f16, self.imatrix, self.text = name, label, f16, imatrix, text
        self.rows: dict[str, dict] = {}  # ftype -> results, for the table
        self.ours: dict[str, dict] = {}  # ftype -> our file's figures (memo)
        self._ref = None
        self._importance = None

    @property
    def n_tokens(self) -> int:
        return N_TOKENS[self.name]

    def reference_logits(self):
        """llama.cpp's logits for the F16 source (the KL divergence reference), cached."""
        if self._ref is None:
            key = cache_key(self.f16, self.text, self.n_tokens, "logits-v2")
            path = cached_file(f"{self.name}-f16-logits.npy", key,
                               lambda tmp: np.save(open(tmp, "wb"), llama_logits(self.f16, self.text,
                                                                                 self.n_tokens)[0]
                                                   .astype(np.float32)))
            self._ref = np.load(path)
        return self._ref

    def figures(self, path: Path) -> dict:
        """What the table shows of one quantized file: types, llama.cpp perplexity and mean KL
        divergence from the F16 source's logits, and (synthetic model) the weighted weight error."""
        logits, toks = llama_logits(path, self.text, self.n_tokens)
        nll = token_nll(logits, toks)
        out = {"types": tensor_types(path), "ppl": float(np.exp(nll.mean())), "nll": nll.tolist(),
               "kld": mean_kld(self.reference_logits(), logits)}
        if self.name in WEIGHT_ERROR_MODELS:
            if self._importance is None:
                self._importance = imatrix_importance(self.imatrix)
            out["wsse"] = weighted_sse(self.f16, path, self._importance)
        return out


def make_model(name: str, label: str, ckpt: Path, smolq_bin: Path, wikitext) -> Model:
    """name: 'real' or 'syn' (selects the criterion); label names the table file."""
    tool("llama-quantize")
    f16 = smolq_f16(smolq_bin, ckpt, name)
    imatrix = llama_imatrix(f16, wikitext(CALIB_CHARS[name], split="valid"), name)
    return Model(name, label, f16, imatrix, wikitext(8000, split="test"))


def smolq_plan(smolq_bin: Path, model: Model, ftype: str) -> dict:
    """{tensor: lower-case type} of `smolq quantize --dry-run`."""
    proc = run(smolq_bin, "quantize", model.f16, ftype, "--dry-run", "--imatrix", model.imatrix)
    plan = dict(_PLAN_LINE.findall(proc.stdout))
    assert plan, f"no plan lines in smolq's --dry-run:\n{proc.stdout[-2000:]}"
    return plan


def llama_recipe(smolq_bin: Path, model: Model, ftype: str, work: Path) -> tuple[str, list]:
    """(llama-quantize file type, extra options) that make llama.cpp's counterpart of ftype.
    llama-quantize has no NVFP4 file type (ggml and llama.cpp's loader know the tensor type), so
    it gets our plan tensor by tensor through --tensor-type-file on top of Q8_0, and what is
    compared is the two NVFP4 quantizers on the same tensors."""
    if ftype != "NVFP4":
        return ftype, []
    plan = smolq_plan(smolq_bin, model, ftype)
    spec = work / "nvfp4-tensor-types.txt"
    spec.write_text("\n".join(f"^{re.escape(n)}$={t}" for n, t in sorted(plan.items())
                              if t not in ("f32", "f16", "bf16")) + "\n")
    return "Q8_0", ["--tensor-type-file", spec]


def theirs(model: Model, ftype: str, smolq_bin: Path) -> dict:
    """llama-quantize's file for ftype: its tensor types, bits per weight and figures (cached:
    none of it depends on smolq, except NVFP4's recipe, which is part of the key). A file type
    llama-quantize cannot make for this model gives {"refused": reason}."""
    exe = tool("llama-quantize")
    with tempfile.TemporaryDirectory(dir=model.f16.parent) as d:
        lftype, opts = llama_recipe(smolq_bin, model, ftype, Path(d))
        recipe = [Path(o) if isinstance(o, Path) else o for o in opts]
        key = cache_key(model.f16, model.imatrix, ftype, lftype, *recipe, model.text, model.n_tokens, tool_id(exe),
                        "v4")

        def compute():
            out = Path(d) / f"theirs-{ftype}.gguf"
            proc = llama_quantize(model.f16, out, lftype, *opts, imatrix=model.imatrix, check=False)
            log = proc.stdout + proc.stderr
            if proc.returncode != 0:
                m = re.search(r"no tensor type fallback is defined for type \S+", log)
                assert m, f"llama-quantize {ftype} failed:\n{log[-3000:]}"
                return {"refused": m.group(0)}
            bpw = float(re.search(r"quant size\s*=\s*[\d.]+ MiB \(([\d.]+) BPW\)", log).group(1))
            return {**model.figures(out), "bpw": bpw}
        return cached_json(f"{model.name}-llama-{ftype}", key, compute)


def ours(model: Model, ftype: str, run_smolq, out_dir: Path) -> dict:
    if ftype not in model.ours:
        out = out_dir / f"smolq-{model.name}-{ftype}.gguf"
        proc = run_smolq("quantize", model.f16, out, ftype, "--imatrix", model.imatrix, "-t", THREADS, "-q",
                         timeout=900, check=False)
        if proc.returncode != 0:
            assert not out.exists(), "a refused quantization left its output behind"
            model.ours[ftype] = {"refused": proc.stderr.strip()}
        else:
            model.ours[ftype] = {**model.figures(out), "bpw": float(_BPW.search(proc.stdout).group(1))}
            out.unlink()
    return model.ours[ftype]


def check_type(model: Model, ftype: str, run_smolq, smolq_bin: Path, out_dir: Path):
    their = theirs(model, ftype, smolq_bin)
    mine = ours(model, ftype, run_smolq, out_dir)
    if "refused" in their:
        # Q1_0 on SmolLM2-135M: 128-weight blocks, 576-wide rows, and llama.cpp defines no
        # fallback type. smolq must refuse as well, naming the row length.
        assert "refused" in mine, f"{ftype}: llama-quantize refuses ({their['refused']}); smolq wrote a file"
        assert "not a multiple of" in mine["refused"], mine["refused"]
        model.rows[ftype] = {"refused": True}
        return
    assert "refused" not in mine, f"{ftype}: smolq refused: {mine['refused']}"
    model.rows[ftype] = {"bpw": mine["bpw"], "ours": mine, "theirs": their}
    diff = {n: (t, their["types"].get(n)) for n, t in mine["types"].items() if their["types"].get(n) != t}
    assert not diff, f"{ftype}: tensor types differ from llama-quantize's (ours, theirs): {diff}"
    # llama-quantize prints the BPW rounded to 2 decimals.
    assert abs(mine["bpw"] - their["bpw"]) < 0.006, f"{ftype}: {mine['bpw']} vs {their['bpw']} bits per weight"
    if model.name in PPL_MODELS:
        d = np.array(mine["nll"]) - np.array(their["nll"])
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if d.any() else 0.0
        model.rows[ftype]["se"] = se
        bound = np.log1p(PPL_TOLERANCE) + PAIRED_SIGMAS * se
        assert d.mean() <= bound, (
            f"{ftype}: perplexity {mine['ppl']:.4f} vs llama.cpp's {their['ppl']:.4f} "
            f"({100 * (mine['ppl'] / their['ppl'] - 1):+.2f}%; allowed {100 * np.expm1(bound):.2f}% = "
            f"{100 * PPL_TOLERANCE:.1f}% + {PAIRED_SIGMAS:g} standard errors of the paired difference)")
        assert mine["kld"] <= their["kld"] * KLD_NOISE + 1e-6, (
            f"{ftype}: KL divergence from F16 {mine['kld']:.6f} vs llama.cpp's {their['kld']:.6f}")
    else:
        # Random weights: perplexity sits at the vocabulary size and moves by chance, so the
        # quantizers are compared on what they minimise, and llama.cpp's outputs only have to
        # stay as close to the F16 model's as llama.cpp's own file does, within chance.
        assert mine["wsse"] <= their["wsse"] * (1 + WSSE_TOLERANCE), (
            f"{ftype}: weighted squared error {mine['wsse']:.6g} vs llama.cpp's {their['wsse']:.6g}")
        assert mine["kld"] <= their["kld"] * KLD_NOISE + 1e-9, (
            f"{ftype}: KL divergence from F16 {mine['kld']:.6f} vs llama.cpp's {their['kld']:.6f}")


def write_table(request, model: Model):
    """Print the module's table (ctest -V shows it) and write it to
    $SMOLQ_BUILD_DIR/test-results/quantize_ppl_<label>.txt."""
    if not model.rows:
        return
    lines = [f"{model.label}: {model.n_tokens} WikiText-2 test tokens through llama.cpp; same llama-imatrix "
             f"for both quantizers; KLD = mean KL(F16 || quant); wSSE = imatrix-weighted squared weight error",
             f"{'type':9} {'bpw':>7} {'PPL smolq':>10} {'PPL llama':>10} {'ratio':>6} {'2SE':>6} {'KLD smolq':>10} "
             f"{'KLD llama':>10} {'wSSE ratio':>10}"]
    for t in ALL_TYPES:
        r = model.rows.get(t)
        if not r:
            continue
        if r.get("refused"):
            lines.append(f"{t:9} both refuse: no fallback type for rows that are not a multiple of the block")
            continue
        m, th = r["ours"], r["theirs"]
        wr = "" if "wsse" not in m else ("-" if th["wsse"] == 0 else f"{m['wsse'] / th['wsse']:.4f}")
        se = f"{100 * np.expm1(PAIRED_SIGMAS * r['se']):5.2f}%" if "se" in r else ""
        lines.append(f"{t:9} {r['bpw']:7.4f} {m['ppl']:10.4f} {th['ppl']:10.4f} {m['ppl'] / th['ppl']:6.4f} {se:>6} "
                     f"{m['kld']:10.6f} {th['kld']:10.6f} {wr:>10}")
    text = "\n".join(lines) + "\n"
    out = BUILD_DIR / "test-results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"quantize_ppl_{model.label}.txt").write_text(text)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line("\n" + text)
