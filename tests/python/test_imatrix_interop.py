"""`smolq imatrix` against llama.cpp's llama-imatrix, both directions of file exchange:
  - the same model and text give the same importance data (per-tensor cosine similarity of the
    sums >= 0.99, identical tensor set and token counts);
  - smolq reads llama.cpp's files, GGUF and legacy .dat (through --in-file), to the same numbers;
  - llama.cpp's quantizer accepts smolq's files in both formats;
  - the `gguf` Python package reads smolq's GGUF imatrix with llama.cpp's key and tensor layout.
Needs the llama.cpp tools built by scripts/build_llama_tools.sh (skipped otherwise).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imatrix_tools import cosine, read_gguf_imatrix, run_tool, tool

CTX = 256
CHUNKS = 3


@pytest.fixture(scope="module")
def calib(wikitext, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("calib") / "calib.txt"
    p.write_text(wikitext(6000, offset=50000), encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def theirs(real_gguf, calib, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("llama")
    imatrix = tool("llama-imatrix")
    common = ["-m", real_gguf, "-f", calib, "-c", CTX, "--chunks", CHUNKS, "-t", 2, "--no-ppl"]
    run_tool(imatrix, *common, "-o", out / "theirs.gguf")
    # Their legacy file from their GGUF (llama-imatrix only combines when given no text).
    run_tool(imatrix, "-m", real_gguf, "--in-file", out / "theirs.gguf", "-c", CTX, "-o", out / "theirs.dat",
             "--output-format", "dat")
    return {"gguf": out / "theirs.gguf", "dat": out / "theirs.dat"}


@pytest.fixture(scope="module")
def ours(run_smolq, real_gguf, calib, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("smolq")
    common = [real_gguf, "-f", calib, "--ctx", CTX, "--chunks", CHUNKS, "-t", 2, "--no-ppl"]
    run_smolq("imatrix", *common, "-o", out / "ours.gguf")
    run_smolq("imatrix", "--in-file", out / "ours.gguf", "--ctx", CTX, "-o", out / "ours.dat")
    return {"gguf": out / "ours.gguf", "dat": out / "ours.dat"}


def test_same_importance_as_llama_imatrix(ours, theirs):
    a, b = read_gguf_imatrix(ours["gguf"]), read_gguf_imatrix(theirs["gguf"])
    assert a["entries"].keys() == b["entries"].keys()
    assert len(a["entries"]) == 30 * 7  # every blk.* matmul; the tied output is not collected
    worst = min((cosine(a["entries"][k][0], b["entries"][k][0]), k) for k in a["entries"])
    print("lowest per-tensor cosine similarity:", worst)
    assert worst[0] >= 0.99
    for k in a["entries"]:
        np.testing.assert_array_equal(a["entries"][k][1], b["entries"][k][1])  # token counts
        assert a["entries"][k][1][0] == CTX * CHUNKS
    assert a["meta"]["general.type"] == "imatrix"
    assert a["meta"]["imatrix.chunk_count"] == b["meta"]["imatrix.chunk_count"] == CHUNKS
    assert a["meta"]["imatrix.chunk_size"] == b["meta"]["imatrix.chunk_size"] == CTX
    assert len(a["meta"]["imatrix.datasets"]) == 1


def test_smolq_reads_llama_cpp_files(run_smolq, theirs, tmp_path):
    """--in-file with no text only combines: reading theirs and writing GGUF must give their
    numbers back (legacy .dat: mean * ncall, turned back into sums with the chunk size)."""
    b = read_gguf_imatrix(theirs["gguf"])
    for fmt in ("gguf", "dat"):
        out = tmp_path / f"from-{fmt}.gguf"
        run_smolq("imatrix", "--in-file", theirs[fmt], "--ctx", CTX, "-o", out)
        r = read_gguf_imatrix(out)
        assert r["entries"].keys() == b["entries"].keys()
        for k, (s, c) in b["entries"].items():
            mean_theirs = s / c[0]
            mean_ours = r["entries"][k][0] / r["entries"][k][1][0]
            np.testing.assert_allclose(mean_ours, mean_theirs, rtol=1e-5, atol=1e-12)
        assert r["meta"]["imatrix.chunk_count"] == CHUNKS


def test_llama_quantize_accepts_smolq_imatrix(ours, real_gguf, tmp_path):
    quantize = tool("llama-quantize")
    for fmt in ("gguf", "dat"):
        out = tmp_path / f"q-{fmt}.gguf"
        proc = run_tool(quantize, "--allow-requantize", "--imatrix", ours[fmt], real_gguf, out, "Q4_0", 2)
        log = proc.stdout + proc.stderr
        assert f"loaded {30 * 7} importance matrix entries" in log, log[-3000:]
        assert out.stat().st_size > 0


def test_dat_and_gguf_outputs_agree(ours):
    """The legacy writer stores mean * ncall; read back by smolq it gives the GGUF's means."""
    import struct
    g = read_gguf_imatrix(ours["gguf"])
    data = ours["dat"].read_bytes()
    (n,) = struct.unpack_from("<i", data, 0)
    off, seen = 4, 0
    for _ in range(n):
        (ln,) = struct.unpack_from("<i", data, off)
        name = data[off + 4: off + 4 + ln].decode()
        off += 4 + ln
        ncall, nval = struct.unpack_from("<ii", data, off)
        off += 8
        vals = np.frombuffer(data, dtype="<f4", count=nval, offset=off)
        off += 4 * nval
        s, c = g["entries"][name]
        assert ncall == CHUNKS
        np.testing.assert_allclose(vals / ncall, s / c[0], rtol=1e-5)
        seen += 1
    assert seen == len(g["entries"])
    (chunks, ds_len) = struct.unpack_from("<ii", data, off)
    assert chunks == CHUNKS and off + 8 + ds_len == len(data)
