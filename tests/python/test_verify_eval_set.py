"""`smolq verify --eval-set` on the real SmolLM2-135M-Instruct with the bundled evaluation set
(testdata/evalset, eval/eval_set.h) and five quant types (issue 16, must show 1):

1. one sweep evaluates every category and writes the category x quant table (report.md,
   report.json, and report.html with its plot);
2. the WikiText category's statistics equal those of a plain `-f` sweep of the same text and
   settings, run in another folder (no shared cache) on the same quant files;
3. --budget-all-categories recommends the smallest quant whose worst category is within the
   budget, computed here from the report's own numbers;
4. a bad manifest is one error line naming the file and the field.

The real weights sit on a Q4_1 grid, so the types avoid Q4_1/Q5_1. Kept cheap for CI (64-token
chunks, one per category); SMOLQ_LONG_TESTS=1 runs the categories at their own contexts
(512, and 4096 for the long documents) with two chunks each."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SOURCE_DIR = Path(os.environ.get("SMOLQ_SOURCE_DIR", Path(__file__).resolve().parents[2]))
EVALSET = SOURCE_DIR / "testdata" / "evalset"
TYPES = ["Q8_0", "Q6_K", "Q4_K_M", "Q3_K_M", "Q2_K"]
LONG = os.environ.get("SMOLQ_LONG_TESTS") == "1"
# CI: every category capped at 64-token chunks, one chunk each. Long: own contexts, 2 chunks.
CTX_ARGS = [] if LONG else ["--max-ctx", 64]
CHUNKS = 2 if LONG else 1
WIKI_CTX = 512 if LONG else 64


@pytest.fixture(scope="module")
def sweep(run_smolq, real_ckpt, tmp_path_factory):
    d = tmp_path_factory.mktemp("evalset")
    out = d / "out"
    run_smolq("verify", real_ckpt, "--eval-set", "default", *CTX_ARGS, "--chunks", CHUNKS, "--types", ",".join(TYPES),
              "-n", 0, "-t", 2, "-q", "--out", out, timeout=3600)
    return {"dir": d, "out": out, "report": json.loads((out / "report.json").read_text(encoding="utf-8"))}


def test_category_table(sweep):
    r = sweep["report"]
    manifest = json.loads((EVALSET / "evalset.json").read_text(encoding="utf-8"))
    names = [c["name"] for c in manifest["categories"]]
    assert [c["name"] for c in r["categories"]] == names
    labels = [q["label"] for q in r["quants"]]
    assert sorted(labels) == sorted(TYPES)
    for c in r["categories"]:
        assert c["n_chunks"] == CHUNKS
        assert c["positions"] == CHUNKS * (c["n_ctx"] - c["n_ctx"] // 2 - 1)
        assert [q["label"] for q in c["quants"]] == labels
        for q in c["quants"]:
            assert q["kld_mean"] >= 0 and 0 <= q["same_top_percent"] <= 100
    chat = next(c for c in r["categories"] if c["name"] == "chat")
    assert chat["chat"] and chat["templated"], "the real model has a chat template"
    if LONG:
        assert next(c for c in r["categories"] if c["name"] == "long")["n_ctx"] == 4096
    # The pooled mean is the position-weighted mean of the categories' means.
    for qi, q in enumerate(r["quants"]):
        pooled = sum(c["quants"][qi]["kld_mean"] * c["positions"] for c in r["categories"]) / r["evaluation"]["positions"]
        assert q["kld_mean"] == pytest.approx(pooled, rel=1e-8)
    # Q8_0 hurts every category less than Q2_K.
    by = {q["label"]: qi for qi, q in enumerate(r["quants"])}
    for c in r["categories"]:
        assert c["quants"][by["Q8_0"]]["kld_mean"] < c["quants"][by["Q2_K"]]["kld_mean"], c["name"]

    md = (sweep["out"] / "report.md").read_text(encoding="utf-8")
    table = md.split("## Per category", 1)[1].split("\n## ", 1)[0]
    rows = [l for l in table.splitlines() if l.startswith("| ") and not l.startswith("| category")]
    assert [l.split("|")[1].strip() for l in rows[:len(names)]] == names
    assert rows[len(names)].startswith("| **all (pooled)**")
    html = (sweep["out"] / "report.html").read_text(encoding="utf-8")
    assert 'aria-label="mean KLD per category and quant"' in html


def test_wikitext_category_equals_plain_sweep(sweep, run_smolq, real_ckpt):
    r = sweep["report"]
    wiki = next(c for c in r["categories"] if c["name"] == "wikitext")
    assert wiki["n_ctx"] == WIKI_CTX
    # The same quant files, given as files to a plain sweep in a folder of its own.
    files = [q["path"] for q in r["quants"]]
    out2 = sweep["dir"] / "plain"
    run_smolq("verify", real_ckpt, *files, "-f", EVALSET / "wikitext" / "wiki.test.excerpt.raw", "--ctx", WIKI_CTX,
              "--chunks", CHUNKS, "-n", 0, "-t", 2, "-q", "--out", out2, timeout=3600)
    plain = json.loads((out2 / "report.json").read_text(encoding="utf-8"))
    assert plain["cache"]["chunks_reused"] == 0 and plain["cache"]["base_chunks_reused"] == 0
    by_path = {q["path"]: q for q in plain["quants"]}
    for qi, q in enumerate(r["quants"]):
        p = by_path[q["path"]]
        cell = wiki["quants"][qi]
        assert cell["label"] == q["label"]
        assert p["kld_report"]["count"] == wiki["positions"]
        assert cell["kld_mean"] == p["kld_mean"], q["label"]
        assert cell["same_top_percent"] == p["same_top_percent"], q["label"]
        assert cell["ppl"] == p["ppl"], q["label"]
    assert wiki["base_ppl"] == plain["baseline"]["ppl"]


def test_budget_all_categories(sweep, run_smolq, real_ckpt):
    r = sweep["report"]
    # A budget between Q4_K_M's pooled mean and its worst category: the pooled rule takes it
    # (or something smaller), the every-category rule must not.
    q4 = next(q for q in r["quants"] if q["label"] == "Q4_K_M")
    qi = r["quants"].index(q4)
    worst = max(c["quants"][qi]["kld_mean"] for c in r["categories"])
    assert worst > q4["kld_mean"]
    budget = (q4["kld_mean"] + worst) / 2
    out = sweep["out"]
    run_smolq("verify", real_ckpt, "--eval-set", "default", *CTX_ARGS, "--chunks", CHUNKS, "--types", ",".join(TYPES),
              "-n", 0, "-t", 2, "-q", "--out", out, "--kld-budget", budget, "--budget-all-categories", timeout=1800)
    again = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert again["cache"]["chunks_computed"] == 0, "a rerun reads every chunk from the cache"
    assert again["budget_every_category"] is True
    worst_of = {q["label"]: max(c["quants"][i]["kld_mean"] for c in again["categories"])
                for i, q in enumerate(again["quants"])}
    fitting = [q for q in again["quants"] if worst_of[q["label"]] <= budget]
    expect = min(fitting, key=lambda q: q["file_size"])["label"] if fitting else None
    assert again["recommended"] == expect
    assert again["recommended"] != "Q4_K_M"


def test_bad_manifest_is_one_error(run_smolq, real_ckpt, tmp_path):
    (tmp_path / "t.txt").write_text("text\n", encoding="utf-8")
    (tmp_path / "evalset.json").write_text('{"categories": [{"name": "a", "path": "t.txt", "ctx": "big"}]}',
                                           encoding="utf-8")
    proc = run_smolq("verify", real_ckpt, "--eval-set", tmp_path, "--types", "Q8_0", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 1
    assert f"{tmp_path / 'evalset.json'}: categories[0].ctx: expected an integer" in proc.stderr
    assert not (tmp_path / "o").exists()
    proc = run_smolq("verify", real_ckpt, "--eval-set", "default", "-f", tmp_path / "t.txt", check=False)
    assert proc.returncode == 2 and "exclusive" in proc.stderr


def test_imatrix_over_the_set(run_smolq, real_ckpt, tmp_path):
    out = tmp_path / "set.imatrix.gguf"
    proc = run_smolq("imatrix", real_ckpt, "--eval-set", "default", "-c", 64, "--chunks", 8, "--no-ppl", "-t", 2, "-q",
                     "-o", out, timeout=900)
    names = [c["name"] for c in json.loads((EVALSET / "evalset.json").read_text(encoding="utf-8"))["categories"]]
    for n in names:  # every category's calibration text is read
        assert f"category {n}:" in proc.stderr
    # Round-robin whole chunks: 8 chunks are one from each of the 8 categories.
    assert "computing over 8 chunks" in proc.stderr
    assert "8 chunks of 64 tokens" in proc.stderr
    import gguf
    r = gguf.GGUFReader(str(out))
    assert len([t for t in r.tensors if t.name.endswith(".in_sum2")]) == 210
    bad = run_smolq("imatrix", real_ckpt, "--eval-set", "default", "-f", EVALSET / "evalset.json", "-o", tmp_path / "x.gguf",
                    check=False)
    assert bad.returncode == 2 and "exclusive" in bad.stderr
