"""Helpers shared by the imatrix interop tests (test_imatrix_interop.py, test_imatrix_parity.py):
llama.cpp's tools from scripts/build_llama_tools.sh (a test needing one is skipped when it is not
built) and GGUF imatrix files read with gguf-py.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

TOOLS = Path(os.environ.get("SMOLQ_SOURCE_DIR", Path(__file__).resolve().parents[2])) / "build" / "llama-tools" / "bin"


def tool(name: str) -> Path:
    p = TOOLS / name
    if not p.is_file():
        pytest.skip(f"{p} not built (scripts/build_llama_tools.sh)")
    return p


def run_tool(*args, timeout=600):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def read_gguf_imatrix(path: Path) -> dict:
    """{weight name: (sums, counts)} and the metadata, read with the gguf package."""
    import gguf
    r = gguf.GGUFReader(str(path))
    meta = {}
    for f in r.fields.values():
        if f.name.startswith("imatrix.") or f.name == "general.type":
            meta[f.name] = f.contents()
    sums, counts = {}, {}
    for t in r.tensors:
        if t.name.endswith(".in_sum2"):
            sums[t.name[: -len(".in_sum2")]] = np.array(t.data, dtype=np.float64).reshape(-1)
        elif t.name.endswith(".counts"):
            counts[t.name[: -len(".counts")]] = np.array(t.data, dtype=np.float64).reshape(-1)
    assert sums.keys() == counts.keys()
    return {"meta": meta, "entries": {k: (sums[k], counts[k]) for k in sums}}


def cosine(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
