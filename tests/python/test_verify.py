"""`smolq verify` end to end on the real SmolLM2-135M-Instruct (the rebuilt HF checkpoint):

1. a sweep over part of the K-quant ladder writes a consistent report.json: KLD grows as bits
   shrink, sizes and types match the files (read back with gguf-py), the choice is the Pareto
   front / budget rule applied to the numbers, and a quant's numbers equal those of
   `smolq perplexity QUANT --base BASE` on the same text;
2. report.html renders in headless Chromium with no console errors, fetches nothing, and is
   well-formed XML with its three plots;
3. a sweep killed (SIGKILL) midway and run again recomputes only what is missing, and the resumed
   numbers equal an uninterrupted `smolq perplexity --base` run.

The sweep is kept small (two 64-token chunks, 8 generated tokens) so the file runs in a
few minutes on two cores; docs/verify.md shows the full-size run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import browser_tools

TYPES = ["Q8_0", "Q6_K", "Q4_K_M", "Q2_K"]  # largest to smallest
CTX, CHUNKS = 64, 2
# Effective bits per weight of llama.cpp's own quantizer on SmolLM2-135M shapes
# (shared/guides/models.md): rows of 576 fall back to 32-element formats.
LLAMA_CPP_BPW = {"Q2_K": 5.14, "Q4_K_M": 6.17, "Q6_K": 8.12}


def sweep_args(real_ckpt, d: Path, types):
    return ["verify", real_ckpt, "-f", d / "wiki.txt", "--types", ",".join(types), "--ctx", CTX, "--chunks", CHUNKS,
            "--prompts", d / "prompts.txt", "--n-predict", 8, "--out", d / "out", "-t", 2]


@pytest.fixture(scope="module")
def sweep(run_smolq, real_ckpt, wikitext, tmp_path_factory):
    d = tmp_path_factory.mktemp("verify")
    (d / "wiki.txt").write_text(wikitext(5000), encoding="utf-8")
    (d / "prompts.txt").write_text("What is the capital of France?\n", encoding="utf-8")
    proc = run_smolq(*sweep_args(real_ckpt, d, TYPES), timeout=1500)
    return {"dir": d, "out": d / "out", "stdout": proc.stdout,
            "report": json.loads((d / "out" / "report.json").read_text(encoding="utf-8"))}


def perplexity_base(run_smolq, quant, real_ckpt, text):
    proc = run_smolq("perplexity", quant, "--base", real_ckpt, "-f", text, "--ctx", CTX, "--chunks", CHUNKS,
                     "-t", 2, "--json", timeout=900)
    return json.loads(proc.stdout)


def assert_same_kld(report_quant, ppl_json):
    ours = report_quant["kld_report"]
    for key in ["count", "kld", "ppl_q", "ppl_base", "same_top_p", "rms_p_diff", "p_diff", "kld_percentiles",
                "rms_logit_drift", "max_logit_drift"]:
        assert ours[key] == ppl_json[key], key


def test_report_is_consistent(sweep, real_ckpt):
    import gguf

    r = sweep["report"]
    quants = r["quants"]
    assert [q["label"] for q in quants] == TYPES  # largest file first
    assert r["evaluation"]["n_chunks"] == CHUNKS and r["evaluation"]["positions"] == CHUNKS * (CTX - CTX // 2 - 1)
    kld = [q["kld_mean"] for q in quants]
    assert all(a < b for a, b in zip(kld, kld[1:])), f"KLD must grow down the ladder: {kld}"
    assert quants[0]["same_top_percent"] > quants[-1]["same_top_percent"]
    for q in quants:
        path = Path(q["path"])
        assert q["file_size"] == path.stat().st_size
        assert q["bpw"] == pytest.approx(8 * q["tensor_bytes"] / q["n_elements"], rel=1e-9)
        assert q["n_elements"] == r["model"]["n_params"]  # every tensor's elements, norms included
        # Types and sizes as a real GGUF client reads the file.
        reader = gguf.GGUFReader(str(path))
        counts = {}
        for t in reader.tensors:
            counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
        assert counts == q["tensor_types"]
        assert sum(int(t.n_bytes) for t in reader.tensors) == q["tensor_bytes"]
        # The summary fields are read off the KLD block.
        kr = q["kld_report"]
        assert kr["count"] == r["evaluation"]["positions"]
        assert q["kld_mean"] == pytest.approx(kr["kld"]["value"], rel=1e-8)
        assert q["kld_median"] == pytest.approx(kr["kld_percentiles"]["median"], rel=1e-8)
        assert q["same_top_percent"] == pytest.approx(100 * kr["same_top_p"]["value"], rel=1e-8)
        assert q["ppl"] == pytest.approx(kr["ppl_q"]["value"], rel=1e-8)
        assert r["baseline"]["ppl"] == pytest.approx(kr["ppl_base"]["value"], rel=1e-8)
        # Per-tensor error: token_embd (tied) + 30 layers x 7 matrices.
        assert len(q["tensors"]) == 211 and len(q["layer_rel_error"]) == 30
        assert all(0 < t["rel_error"] < 1 for t in q["tensors"])
    for name, bpw in LLAMA_CPP_BPW.items():
        assert next(q for q in quants if q["label"] == name)["bpw"] == pytest.approx(bpw, abs=0.01)
    # Q8_0's weights are closer to the baseline than Q2_K's, tensor by tensor (both files keep the
    # tied embedding / LM head in Q8_0).
    for a, b in zip(quants[0]["tensors"], quants[-1]["tensors"]):
        assert a["name"] == b["name"]
        assert a["rel_error"] < b["rel_error"] if a["layer"] >= 0 else a["rel_error"] <= b["rel_error"]

    # The choice: Pareto front of (size, mean KLD) and the smallest quant within the budget.
    front = [q["label"] for q in sorted(quants, key=lambda q: q["file_size"])
             if not any((o["file_size"] <= q["file_size"] and o["kld_mean"] < q["kld_mean"]) or
                        (o["file_size"] < q["file_size"] and o["kld_mean"] <= q["kld_mean"]) for o in quants)]
    assert r["pareto"] == front
    within = [q for q in quants if q["kld_mean"] <= r["kld_budget"]]
    assert r["recommended"] == (min(within, key=lambda q: q["file_size"])["label"] if within else None)
    assert [q["label"] for q in quants if q["recommended"]] == ([r["recommended"]] if r["recommended"] else [])

    # Generations through the chat template; the real model knows this one.
    assert r["prompt_format"] == "the model's chat template"
    assert "Paris" in r["baseline"]["generations"][0]["text"]
    assert all(len(q["generations"]) == 1 for q in quants)
    # The terminal table filled in, one row per quant.
    lines = sweep["stdout"].splitlines()
    assert any(line.startswith("type") and "KLD mean" in line for line in lines)
    for name in TYPES:
        assert any(line.startswith(name + " ") for line in lines)
    md = (sweep["out"] / "report.md").read_text(encoding="utf-8")
    assert "## Summary" in md and "## Where the error comes from" in md and "## Generations" in md


def test_values_equal_perplexity_base(sweep, run_smolq, real_ckpt):
    q = next(q for q in sweep["report"]["quants"] if q["label"] == "Q4_K_M")
    assert_same_kld(q, perplexity_base(run_smolq, q["path"], real_ckpt, sweep["dir"] / "wiki.txt"))


def test_html_renders_in_headless_chromium(sweep, tmp_path):
    html = sweep["out"] / "report.html"
    text = html.read_text(encoding="utf-8")
    # Well-formed XML, three inline plots, nothing to fetch.
    root = ET.fromstring(text.split("\n", 1)[1])  # after <!DOCTYPE html>
    svgs = [e for e in root.iter() if e.tag.endswith("svg")]
    assert len(svgs) == 3
    assert "<script" not in text and "src=" not in text and "@import" not in text and "url(http" not in text
    rows = [e for e in root.iter("tr")]
    assert len(rows) >= len(TYPES) + 1

    page = browser_tools.render(html, tmp_path)
    assert not page.console, "\n".join(page.console)
    assert (page.width, page.height) == (1280, 2000)
    assert page.distinct > 20, "the screenshot looks blank"

    # What the browser built from it: the plots and every quant's row are in the DOM.
    assert page.dom.count("<svg") == 3
    for name in TYPES:
        assert f"<b>{name}</b>" in page.dom


def test_resume_after_kill(sweep, smolq_bin, run_smolq, real_ckpt):
    d, out = sweep["dir"], sweep["out"]
    # Q3_K_M joins between Q4_K_M and Q2_K. (Not Q5_K_M: this checkpoint was rebuilt from Q4_1
    # weights, which Q5_K's scale-and-minimum sub-blocks fit better than Q6_K's symmetric ones,
    # so on it Q5_K_M really is closer to the baseline than Q6_K — see docs/verify.md.)
    types = TYPES[:3] + ["Q3_K_M"] + TYPES[3:]
    args = [str(smolq_bin)] + [str(a) for a in sweep_args(real_ckpt, d, types)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 900
        first = None
        while time.time() < deadline and proc.poll() is None:
            found = list(out.glob("cache/eval-Q3_K_M-*/chunk-00000.bin"))
            if found:
                first = found[0]
                break
            time.sleep(0.05)
        assert first is not None, "the new quant's first chunk never appeared"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (first.parent / "chunk-00001.bin").exists(), "the sweep finished before it could be killed"

    run_smolq(*sweep_args(real_ckpt, d, types), timeout=1500)
    r = json.loads((out / "report.json").read_text(encoding="utf-8"))
    c = r["cache"]
    # Only Q3_K_M's second chunk was missing; its build, the baseline logits and everything else
    # came from the cache.
    assert (c["builds_done"], c["builds_reused"]) == (0, 5)
    assert (c["chunks_computed"], c["chunks_reused"]) == (1, 5 * CHUNKS - 1)
    assert (c["base_chunks_computed"], c["base_chunks_reused"]) == (0, 1)
    q3 = next(q for q in r["quants"] if q["label"] == "Q3_K_M")
    assert (q3["chunks_computed"], q3["chunks_cached"]) == (1, 1)
    assert [q["label"] for q in r["quants"]] == types
    kld = [q["kld_mean"] for q in r["quants"]]
    assert all(a < b for a, b in zip(kld, kld[1:])), f"KLD must grow down the ladder: {kld}"
    # The resumed numbers are those of one uninterrupted run.
    assert_same_kld(q3, perplexity_base(run_smolq, q3["path"], real_ckpt, d / "wiki.txt"))
    # Earlier quants kept their numbers exactly.
    before = {q["label"]: q["kld_report"] for q in sweep["report"]["quants"]}
    for q in r["quants"]:
        if q["label"] in before:
            assert q["kld_report"] == before[q["label"]]
