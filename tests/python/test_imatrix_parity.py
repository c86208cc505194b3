"""`smolq imatrix` against llama-imatrix, option for option (issue 16, must-show 2):

  - `--show-statistics`: on the same imatrix file (llama.cpp's GGUF, its legacy .dat, smolq's
    GGUF) both tools print the same tables; for the same model, text and settings (the
    SmolLM2-135M fixture, llama.cpp given its F32 GGUF with exact arithmetic: F32 cache, no
    flash attention) the statistics agree within the rounding of the printed digits;
  - `--in-file` merging of GGUF and legacy files equals llama-imatrix's merge of the same
    inputs, tensor for tensor (read with gguf-py) and byte for byte;
  - merging with a new collection (`--in-file` with `-f`), `--chunk`, `--save-frequency`: the same
    counts, chunk numbers, datasets and file names as llama-imatrix, and the same sums within
    float rounding;
  - `--process-output` on an untied model collects output.weight as llama.cpp does;
  - the coverage report names entries with partial data.
Needs the llama.cpp tools built by scripts/build_llama_tools.sh (skipped otherwise).
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest

from imatrix_tools import read_gguf_imatrix, run_tool, tool

CTX = 128
# llama.cpp's arithmetic made exact where smolq's is: F32 weights, F32 K/V cache, no flash
# attention (its F16 Q.K product moves attn_output's sums by ~4e-4), one chunk per batch.
EXACT = ["-c", CTX, "-b", CTX, "-t", 2, "--no-ppl", "-ctk", "f32", "-ctv", "f32", "-fa", "off"]
COLUMNS = ["sum", "min", "max", "mean", "std", "active", "n", "entropy", "e_norm", "zd", "cossim"]
DECIMALS = [2, 4, 4, 2, 2, 2, 0, 4, 2, 2, 4]  # as printed (llama-imatrix's formats)
LOG_PREFIX = re.compile(r"^[0-9.]+ [IWE] ")


def parse_statistics(text: str) -> dict:
    """The two tables of --show-statistics: {(layer, tensor): [11 numbers]}, {layer: [3]}."""
    rows, layers = {}, {}
    for line in text.splitlines():
        cells = [c.strip().rstrip("%") for c in LOG_PREFIX.sub("", line).split("\t")]
        if len(cells) == 13 and cells[0] != "Layer":
            rows[(cells[0], cells[1])] = [float(c) for c in cells[2:]]
        elif len(cells) == 4 and cells[0] != "Layer":
            layers[int(cells[0])] = [float(c) for c in cells[1:]]
    return {"rows": rows, "layers": layers}


def llama_statistics(model: Path, imatrix: Path, n_rows: int, n_layers: int = 30) -> dict:
    """llama-imatrix --show-statistics. Its log goes through an asynchronous writer that is
    not flushed at exit, so a run may lose its last lines: run until the table is whole."""
    for _ in range(60):
        proc = run_tool(tool("llama-imatrix"), "-m", model, "--in-file", imatrix, "-c", CTX, "--show-statistics",
                        "-lv", 3)
        s = parse_statistics(proc.stdout + proc.stderr)
        if len(s["rows"]) == n_rows and len(s["layers"]) == n_layers:
            return s
    pytest.fail("llama-imatrix never printed its whole statistics table")


def smolq_statistics(run_smolq, imatrix: Path, ctx: int = CTX) -> dict:
    proc = run_smolq("imatrix", "--in-file", imatrix, "--show-statistics", "-c", ctx)
    return parse_statistics(proc.stdout)


def worst_differences(a: dict, b: dict) -> dict:
    """Per column, the largest |a - b| in units of the printed last digit."""
    assert a["rows"].keys() == b["rows"].keys()
    worst = {}
    for i, (col, dec) in enumerate(zip(COLUMNS, DECIMALS)):
        worst[col] = max(abs(a["rows"][k][i] - b["rows"][k][i]) * 10 ** dec for k in a["rows"])
    assert a["layers"].keys() == b["layers"].keys()
    for i, (col, dec) in enumerate(zip(["layer_sum", "layer_zd", "layer_cossim"], [2, 4, 4])):
        worst[col] = max(abs(a["layers"][k][i] - b["layers"][k][i]) * 10 ** dec for k in a["layers"])
    return worst


@pytest.fixture(scope="module")
def calib(wikitext, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("calib") / "calib.txt"
    p.write_text(wikitext(6000, offset=20000), encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def f32_gguf(run_smolq, real_ckpt, tmp_path_factory) -> Path:
    """The fixture as an F32 GGUF for llama.cpp (smolq reads the checkpoint folder itself)."""
    out = tmp_path_factory.mktemp("f32") / "smollm2-f32.gguf"
    run_smolq("convert", real_ckpt, "--type", "F32", "-o", out, "-q")
    return out


@pytest.fixture(scope="module")
def runs(run_smolq, real_ckpt, f32_gguf, calib, tmp_path_factory) -> dict:
    """The same three collections by both tools: A = chunks 0-1 (GGUF), B = chunks 2-3 (legacy
    .dat, via --chunk 2), N = chunks 4-5 merged onto A and B with a copy after every chunk."""
    imatrix = tool("llama-imatrix")
    files = {}
    for who in ("llama", "smolq"):
        d = tmp_path_factory.mktemp(who)
        sets = [("A.gguf", ["--chunks", 2], []), ("B.dat", ["--chunk", 2, "--chunks", 2], ["--output-format", "dat"]),
                ("N.gguf", ["--from-chunk", 4, "--chunks", 2, "--save-frequency", 1], None)]
        for name, opts, fmt in sets:
            if fmt is None:
                opts = opts + ["--in-file", d / "A.gguf", "--in-file", d / "B.dat"]
                fmt = []
            if who == "llama":
                run_tool(imatrix, "-m", f32_gguf, "-f", calib, *EXACT, *opts, *fmt, "-o", d / name)
            else:
                run_smolq("imatrix", real_ckpt, "-f", calib, "-c", CTX, "-t", 2, "--no-ppl", "-q", *opts, *fmt,
                          "-o", d / name)
            files[(who, name)] = d / name
        files[(who, "dir")] = d
    return files


def test_statistics_of_the_same_file_agree(run_smolq, f32_gguf, runs):
    """Both tools' tables of one file: the same rows in the same order, every number equal
    within one unit of its last printed digit (in practice the text is identical)."""
    for key in [("llama", "A.gguf"), ("llama", "B.dat"), ("smolq", "A.gguf")]:
        theirs = llama_statistics(f32_gguf, runs[key], 210)
        ours = smolq_statistics(run_smolq, runs[key])
        assert list(ours["rows"]) == list(theirs["rows"])  # print order too
        worst = worst_differences(ours, theirs)
        print(key, "largest difference in printed last digits:", worst)
        assert max(worst.values()) <= 1.0001, worst


def test_statistics_same_model_text_and_settings(run_smolq, f32_gguf, runs):
    """Collected independently by the two tools (smolq from the checkpoint, llama.cpp from its
    F32 GGUF): the statistics agree within rounding. The sums themselves differ by float
    summation order only (~1e-6 relative), so every printed number is within a few units of
    its last digit; columns that count (N, % Active) are equal."""
    theirs = llama_statistics(f32_gguf, runs[("llama", "A.gguf")], 210)
    ours = smolq_statistics(run_smolq, runs[("smolq", "A.gguf")])
    worst = worst_differences(ours, theirs)
    print("largest difference in printed last digits:", worst)
    assert worst["n"] == 0 and worst["active"] == 0
    # Sums of 576-2000 importances printed with 2 decimals: 1e-6 relative of a sum near 10^4 is
    # a few hundredths; one column crossing the one-sigma line moves ZD by 100/576 = 0.17%.
    assert worst["sum"] <= 5 and worst["layer_sum"] <= 5
    assert worst["zd"] <= 18 and worst["layer_zd"] <= 30
    for col in ("min", "mean", "std", "entropy", "e_norm", "cossim", "layer_cossim"):
        assert worst[col] <= 2, (col, worst)
    rel_max = max(abs(ours["rows"][k][2] - theirs["rows"][k][2]) / theirs["rows"][k][2] for k in theirs["rows"])
    print("largest relative difference of Max:", rel_max)
    assert rel_max < 1e-4


def test_merge_equals_llama_imatrix(run_smolq, f32_gguf, runs, tmp_path):
    """`--in-file` only (no text): GGUF + legacy + GGUF inputs, both output formats. The GGUF
    results hold the same tensors (gguf-py, bit for bit) and metadata; the files are equal."""
    inputs = [runs[("llama", "A.gguf")], runs[("llama", "B.dat")], runs[("smolq", "A.gguf")]]
    ins = [a for f in inputs for a in ("--in-file", f)]
    for fmt in ("gguf", "dat"):
        theirs, ours = tmp_path / f"theirs.{fmt}", tmp_path / f"ours.{fmt}"
        run_tool(tool("llama-imatrix"), "-m", f32_gguf, *ins, "-c", CTX, "--output-format", fmt, "-o", theirs)
        run_smolq("imatrix", *ins, "-c", CTX, "-o", ours)
        if fmt == "gguf":
            a, b = read_gguf_imatrix(ours), read_gguf_imatrix(theirs)
            assert a["meta"] == b["meta"]
            assert a["meta"]["imatrix.chunk_count"] == 6
            assert a["entries"].keys() == b["entries"].keys() and len(a["entries"]) == 210
            for k, (s, c) in b["entries"].items():
                np.testing.assert_array_equal(a["entries"][k][0], s)
                np.testing.assert_array_equal(a["entries"][k][1], c)
        assert ours.read_bytes() == theirs.read_bytes(), fmt


def test_merge_with_collection_chunk_and_save_frequency(runs):
    """N: --in-file A --in-file B, then chunks 4-5 (--from-chunk 4), a copy after every chunk.
    Same file names (.at_5, .at_6: chunks continue the inputs' count), datasets, counts and
    chunk counts as llama-imatrix; the sums agree within float rounding. Each smolq copy holds
    exactly N chunks in every entry; llama.cpp takes its copy inside the chunk's forward pass,
    so its first entry is one chunk ahead of the other 209 (measured, not reproduced)."""
    ld, sd = runs[("llama", "dir")], runs[("smolq", "dir")]
    assert sorted(p.name for p in sd.glob("N.gguf*")) == sorted(p.name for p in ld.glob("N.gguf*")) == \
        ["N.gguf", "N.gguf.at_5", "N.gguf.at_6"]
    a, b = read_gguf_imatrix(sd / "N.gguf"), read_gguf_imatrix(ld / "N.gguf")
    assert a["meta"] == b["meta"]
    assert a["meta"]["imatrix.chunk_count"] == 6 and len(a["meta"]["imatrix.datasets"]) == 3
    worst = 0.0
    for k, (s, c) in b["entries"].items():
        np.testing.assert_array_equal(a["entries"][k][1], c)
        assert c[0] == 6 * CTX
        worst = max(worst, float(np.max(np.abs(a["entries"][k][0] - s) / np.maximum(np.abs(s), 1e-3))))
    print("largest relative difference of the merged sums:", worst)
    assert worst < 1e-4
    for n in (5, 6):
        copy = read_gguf_imatrix(sd / f"N.gguf.at_{n}")
        assert copy["meta"]["imatrix.chunk_count"] == n
        assert {float(c[0]) for _, c in copy["entries"].values()} == {n * CTX}
        theirs = read_gguf_imatrix(ld / f"N.gguf.at_{n}")
        counts = sorted(float(c[0]) for _, c in theirs["entries"].values())
        assert counts[-1] == n * CTX and counts[0] >= (n - 1) * CTX
    final = read_gguf_imatrix(sd / "N.gguf.at_6")
    for k, (s, c) in a["entries"].items():
        np.testing.assert_array_equal(final["entries"][k][0], s)


def test_chunk_skips_the_same_tokens(runs):
    """--chunk 2: smolq's B.dat holds llama-imatrix's B.dat numbers (legacy: mean * ncall)."""
    def read_dat(p: Path) -> dict:
        data, out = p.read_bytes(), {}
        (n,), off = struct.unpack_from("<i", data, 0), 4
        for _ in range(n):
            (ln,) = struct.unpack_from("<i", data, off)
            name = data[off + 4: off + 4 + ln].decode()
            off += 4 + ln
            ncall, nval = struct.unpack_from("<ii", data, off)
            out[name] = (ncall, np.frombuffer(data, dtype="<f4", count=nval, offset=off + 8))
            off += 8 + 4 * nval
        return out
    a, b = read_dat(runs[("smolq", "B.dat")]), read_dat(runs[("llama", "B.dat")])
    assert a.keys() == b.keys()
    for k in a:
        assert a[k][0] == b[k][0] == 2
        np.testing.assert_allclose(a[k][1], b[k][1], rtol=1e-4, atol=1e-7)


def test_process_output_on_an_untied_model(run_smolq, synthetic, calib, tmp_path):
    """--process-output on the 256-aligned synthetic model (untied lm_head): both tools collect
    output.weight besides the 14 blk.* weights, with the same counts and sums within float
    rounding; the statistics table gives it the layer "-" (no block, CosSim 0)."""
    ckpt = synthetic("aligned256-small-bf16")
    f32 = tmp_path / "small-f32.gguf"
    run_smolq("convert", ckpt, "--type", "F32", "-o", f32, "-q")
    ctx = 64
    theirs, ours = tmp_path / "theirs.gguf", tmp_path / "ours.gguf"
    exact = [a if a != CTX else ctx for a in EXACT]
    run_tool(tool("llama-imatrix"), "-m", f32, "-f", calib, *exact, "--chunks", 2, "--process-output", "-o", theirs)
    run_smolq("imatrix", ckpt, "-f", calib, "-c", ctx, "--chunks", 2, "--no-ppl", "--process-output", "-o", ours, "-q")
    a, b = read_gguf_imatrix(ours), read_gguf_imatrix(theirs)
    assert a["meta"] == b["meta"]
    assert a["entries"].keys() == b["entries"].keys() and "output.weight" in a["entries"] and len(a["entries"]) == 15
    worst = 0.0
    for k, (s, c) in b["entries"].items():
        np.testing.assert_array_equal(a["entries"][k][1], c)
        worst = max(worst, float(np.max(np.abs(a["entries"][k][0] - s) / np.maximum(np.abs(s), 1e-6))))
    print("--process-output: largest relative difference of the sums:", worst)
    assert worst < 1e-5
    stats = smolq_statistics(run_smolq, ours, ctx)
    assert stats["rows"][("-", "output")][-1] == 0.0
    assert worst_differences(stats, llama_statistics(f32, ours, 15, n_layers=2)) == dict.fromkeys(
        COLUMNS + ["layer_sum", "layer_zd", "layer_cossim"], 0.0)


def test_coverage_names_partial_entries(run_smolq, runs, tmp_path):
    """An imatrix whose expert entry has a matrix without data, and a weight counted over fewer
    tokens: the coverage report names both; --show-statistics without -o writes nothing."""
    import gguf
    p = tmp_path / "partial.gguf"
    w = gguf.GGUFWriter(str(p), arch="imatrix")
    w.add_string("general.type", "imatrix")
    w.add_array("imatrix.datasets", ["x.txt"])
    w.add_uint32("imatrix.chunk_count", 2)
    w.add_uint32("imatrix.chunk_size", CTX)
    entries = {"blk.0.attn_q.weight": (np.ones(8), [2 * CTX]),
               "blk.0.attn_k.weight": (np.ones(8), [CTX]),
               "blk.0.ffn_up_exps.weight": (np.ones((4, 8)), [2 * CTX, 0, 2 * CTX, 0])}
    for name, (sums, counts) in entries.items():
        w.add_tensor(name + ".in_sum2", sums.astype(np.float32))
        w.add_tensor(name + ".counts", np.array(counts, dtype=np.float32).reshape(len(counts), 1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    proc = run_smolq("imatrix", "--in-file", p, "--show-statistics", "-c", CTX, cwd=tmp_path)
    assert "partial data: blk.0.ffn_up_exps.weight (2 of 4 matrices, 50.00%)" in proc.stderr
    assert f"fewer tokens: blk.0.attn_k.weight ({CTX} of {2 * CTX})" in proc.stderr
    assert "blk.0.attn_q.weight" not in proc.stderr.split("coverage:")[1]
    assert "Computing statistics for" in proc.stdout
    assert not (tmp_path / "imatrix.gguf").exists()
    # A complete collection says so.
    proc = run_smolq("imatrix", "--in-file", runs[("smolq", "N.gguf")], "-c", CTX, "-o", tmp_path / "n.gguf")
    assert "every entry has full data" in proc.stderr
