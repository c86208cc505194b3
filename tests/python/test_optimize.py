"""`--optimize` (issue 17, docs/optimize.md): error-feedback rounding beats the plain quantizer,
as llama.cpp measures it.

Default run (cheap): on the real SmolLM2-135M-Instruct, Q4_K_M and IQ4_XS, each made plainly and
with --optimize from the same F16 file and the same llama-imatrix importance matrix; llama.cpp's
`llama-perplexity --kl-divergence` on 4 chunks of 512 WikiText-2 test tokens must give the
optimised file at most 0.90x the plain file's mean KLD (llama.cpp loading and running the file is
part of that). The file records its settings (smolq.optimize.*, shown by `smolq inspect`), and
bytes do not depend on the thread count (synthetic 256-aligned model, straight from the HF
folder with `convert --type --optimize`).

The real checkpoint was rebuilt from a Q4_1 GGUF: its matrices sit on a Q4_1 grid, which the
32-element fallbacks of its 576-wide rows (Q5_0, Q5_1, IQ4_NL...) nearly reproduce; the
synthetic 256-aligned model is the second witness in the long run.

SMOLQ_LONG_TESTS=1: the full table of docs/optimize.md — Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, IQ2_XS,
IQ3_XXS, IQ4_XS on both models with the shipped calibration defaults, 12 chunks, against
llama-quantize and the plain quantizer — written to
$SMOLQ_BUILD_DIR/test-cache/optimize/results-<model>.json; on the real model every type but
Q5_K_M must meet issue 17's goals (<= 0.65x llama-quantize's KLD, <= 0.80x our plain file's).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from optimize_tools import (calib_file, env_chunks, eval_file, imatrix_for, kld_base, llama_file_kld, mean_kld,
                            optimize_args, smolq_file, table, write_results)
from quantize_tools import fields, gguf_tensor_table, smolq_f16

CALIB_CHUNKS = 8
GAIN = 0.90                 # optimised KLD <= GAIN x plain KLD on the cheap subset
LONG = os.environ.get("SMOLQ_LONG_TESTS") == "1"
LONG_TYPES = ["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "IQ2_XS", "IQ3_XXS", "IQ4_XS"]
GOAL_LLAMA, GOAL_PLAIN = 0.65, 0.80  # issue 17 on the real model: optimised KLD vs llama-quantize's, vs our plain


def compare(run_smolq, f16, calib, imatrix, base, ftype, out_dir, llama=True, chunks: int | None = CALIB_CHUNKS) -> dict:
    """Plain and optimised files of `ftype` with the same imatrix; chunks None: the calibration
    that ships for the file type (the lattice types' 16 x 512), recorded in the row."""
    plain = out_dir / f"{ftype}.plain.gguf"
    opt = out_dir / f"{ftype}.opt.gguf"
    t_plain = smolq_file(run_smolq, f16, plain, ftype, imatrix)
    t_opt = smolq_file(run_smolq, f16, opt, ftype, imatrix, *optimize_args(calib, chunks))
    # Same tensors, types and data bytes; the files differ only by the smolq.optimize.* keys.
    tp, to = gguf_tensor_table(plain), gguf_tensor_table(opt)
    assert [(t.name, t.type_id, t.shape) for t in tp] == [(t.name, t.type_id, t.shape) for t in to]
    assert 0 < opt.stat().st_size - plain.stat().st_size < 1024
    row = {"type": ftype, "size": opt.stat().st_size, "plain": mean_kld(plain, base), "opt": mean_kld(opt, base),
           "t_plain": t_plain, "t_opt": t_opt, "calib_chunks": int(fields(opt)["smolq.optimize.calib.chunks"][1])}
    if llama:
        row["llama"] = llama_file_kld(f16, ftype, imatrix, base)["kld"]
    return row


def test_optimize_beats_plain_on_real_model(smolq_bin, real_ckpt, wikitext, run_smolq, out_dir):
    f16 = smolq_f16(smolq_bin, real_ckpt, "real")
    calib = calib_file(wikitext)
    imatrix = imatrix_for(f16, calib, "real-opt", CALIB_CHUNKS)
    chunks = env_chunks(4)
    base = kld_base(f16, eval_file(wikitext, chunks), chunks)
    rows = [compare(run_smolq, f16, calib, imatrix, base, t, out_dir, llama=False) for t in ("Q4_K_M", "IQ4_XS")]
    for r in rows:
        print(f"{r['type']}: plain KLD {r['plain']:.6f}, optimised {r['opt']:.6f} ({r['opt'] / r['plain']:.3f}x); "
              f"{r['t_plain']:.1f} s vs {r['t_opt']:.1f} s")
    for r in rows:
        assert r["opt"] <= GAIN * r["plain"], f"{r['type']}: optimised KLD {r['opt']:.6f} vs plain {r['plain']:.6f}"
    meta = {k: v for k, (_, v) in fields(out_dir / "Q4_K_M.opt.gguf", "smolq.optimize.").items()}
    assert meta["smolq.optimize.method"] == "error-feedback"
    assert meta["smolq.optimize.calib.file"] == calib.name
    assert len(meta["smolq.optimize.calib.xxh3"]) == 16
    assert meta["smolq.optimize.calib.chunks"] == CALIB_CHUNKS
    assert meta["smolq.optimize.importance"] == "imatrix file"
    shown = run_smolq("inspect", out_dir / "Q4_K_M.opt.gguf").stdout
    assert f"optimised: error-feedback on {calib.name}" in shown
    assert "optimised:" not in run_smolq("inspect", out_dir / "Q4_K_M.plain.gguf").stdout


def test_optimize_bytes_do_not_depend_on_threads(synthetic, wikitext, run_smolq, out_dir):
    ckpt = synthetic("aligned256-small-bf16")
    calib = calib_file(wikitext)
    files = []
    for t in (1, 2):
        out = out_dir / f"t{t}.gguf"
        run_smolq("convert", ckpt, "-o", out, "--type", "IQ4_XS", "-q", "-t", t,
                  *optimize_args(calib, 2, ctx=128))
        files.append(out.read_bytes())
    assert files[0] == files[1]
    meta = {k: v for k, (_, v) in fields(out_dir / "t1.gguf", "smolq.optimize.").items()}
    assert meta["smolq.optimize.importance"] == "diag(H)/n"  # no --imatrix: the Gram diagonal
    # A lattice file type calibrates on 16 chunks unless --opt-chunks is given (docs/optimize.md).
    for extra, want in (([], 16), (["--opt-chunks", "3"], 3)):
        out = out_dir / "lattice.gguf"
        run_smolq("convert", ckpt, "-o", out, "--type", "IQ2_XS", "-q", "--optimize", "--calib", calib,
                  "--opt-ctx", 128, *extra)
        meta = {k: v for k, (_, v) in fields(out, "smolq.optimize.").items()}
        assert meta["smolq.optimize.calib.chunks"] == want
        assert meta["smolq.optimize.lattice_asym_alpha"] == pytest.approx(0.5)
    # Options are checked before any work.
    bad = run_smolq("quantize", out_dir / "t1.gguf", out_dir / "x.gguf", "Q4_0", "--opt-damp", "0.1", check=False)
    assert bad.returncode == 2 and "needs --optimize" in bad.stderr


@pytest.mark.skipif(not LONG, reason="SMOLQ_LONG_TESTS=1: the full table of docs/optimize.md")
@pytest.mark.parametrize("model", ["real", "aligned256"])
def test_optimize_table(model, smolq_bin, real_ckpt, synthetic, wikitext, run_smolq, out_dir):
    ckpt = real_ckpt if model == "real" else synthetic("aligned256-bf16")
    f16 = smolq_f16(smolq_bin, ckpt, model)
    calib = calib_file(wikitext)
    imatrix = imatrix_for(f16, calib, f"{model}-opt", CALIB_CHUNKS)
    chunks = env_chunks(12)
    base = kld_base(f16, eval_file(wikitext, chunks), chunks)
    rows = []
    for t in LONG_TYPES:  # the shipped defaults: no --opt-chunks (16 x 512 for IQ2_XS, IQ3_XXS)
        rows.append(compare(run_smolq, f16, calib, imatrix, base, t, out_dir, chunks=None))
        write_results(model, rows)
    print("\n" + table(rows))
    for r in rows:
        if r["type"] != "Q5_K_M":
            assert r["opt"] < r["plain"], f"{r['type']}: optimised {r['opt']:.6f} vs plain {r['plain']:.6f}"
        if model == "real" and r["type"] != "Q5_K_M":  # issue 17's goals (Q5_K_M: the Q4_1 grid, reported only)
            assert r["opt"] <= GOAL_LLAMA * r["llama"] and r["opt"] <= GOAL_PLAIN * r["plain"], r


def test_verify_row_optimized_next_to_plain(synthetic, wikitext, run_smolq, out_dir):
    """`smolq verify --types Q4_K_M,Q4_K_M+opt`: both rows in one report, the +opt file the same
    types and size as the plain one (plus the smolq.optimize.* keys) and a lower KLD on the
    evaluation text (WikiText-2 test; calibration on a validation excerpt)."""
    ckpt = synthetic("aligned256-small-bf16")
    calib = calib_file(wikitext)
    text = out_dir / "test.txt"
    text.write_text(wikitext(40000, split="test"), encoding="utf-8")
    run_smolq("verify", ckpt, "-f", text, "--types", "Q4_K_M,Q4_K_M+opt", "--calib", calib, "--ctx", 128,
              "--chunks", 4, "--n-predict", 0, "-t", 2, "--out", out_dir / "v")
    rep = json.loads((out_dir / "v" / "report.json").read_text())
    rows = {q["label"]: q for q in rep["quants"]}
    assert set(rows) == {"Q4_K_M", "Q4_K_M+opt"}
    plain, opt = rows["Q4_K_M"], rows["Q4_K_M+opt"]
    assert 0 < opt["file_size"] - plain["file_size"] < 1024
    assert opt["kld_mean"] < plain["kld_mean"], (opt["kld_mean"], plain["kld_mean"])
    meta = {k: v for k, (_, v) in fields(Path(opt["path"]), "smolq.optimize.").items()}
    assert meta["smolq.optimize.method"] == "error-feedback"
    assert meta["smolq.optimize.calib.ctx"] == 128
    bad = run_smolq("verify", ckpt, "-f", text, "--types", "Q4_K_M@target+opt", "--out", out_dir / "w", check=False)
    assert bad.returncode == 2 and "+opt" in bad.stderr


@pytest.mark.skipif(not LONG, reason="SMOLQ_LONG_TESTS=1: issue 17's --target-size comparison (docs/optimize.md)")
@pytest.mark.parametrize("model", ["aligned256", "real"])
def test_optimize_with_target_size(model, smolq_bin, real_ckpt, synthetic, wikitext, run_smolq, out_dir):
    """A --target-size file at the size of llama-quantize's Q4_K_M file (same imatrix): measured
    allocation and error-feedback rounding together beat each alone (KLD by llama.cpp, 12 x 512
    WikiText-2 test tokens). Both target files share one sensitivity profile."""
    ckpt = real_ckpt if model == "real" else synthetic("aligned256-bf16")
    f16 = smolq_f16(smolq_bin, ckpt, model)
    calib = calib_file(wikitext)
    imatrix = imatrix_for(f16, calib, f"{model}-opt", CALIB_CHUNKS)
    chunks = env_chunks(12)
    base = kld_base(f16, eval_file(wikitext, chunks), chunks)
    llama = llama_file_kld(f16, "Q4_K_M", imatrix, base)
    prof = out_dir / "profile.json"
    target = ["--target-size", llama["size"], "--calib", calib, "--profile", prof]
    files = {"target": ([], target), "target+opt": ([], target + optimize_args(None, CALIB_CHUNKS)),
             "Q4_K_M": (["Q4_K_M"], []), "Q4_K_M+opt": (["Q4_K_M"], optimize_args(calib, CALIB_CHUNKS))}
    row = {"model": model, "size": llama["size"], "llama": llama["kld"]}
    for name, (ftype, extra) in files.items():
        out = out_dir / f"{name}.gguf"
        run_smolq("quantize", f16, out, *ftype, "-q", "-t", 2, "--imatrix", imatrix, *extra)
        assert out.stat().st_size <= llama["size"] + 1024
        row[name] = mean_kld(out, base)
    write_results(f"target-{model}", [row])
    print(row)
    assert row["target+opt"] < row["target"] and row["target+opt"] < row["Q4_K_M+opt"], row
