"""Measured mixed precision on the command line (`--target-size` / `--target-bpw`, issue 9), on
the small synthetic aligned256-small-bf16 model (1,024-token vocabulary, every width a
multiple of 256, so every candidate type is in play): budgets are never exceeded, plans and
bytes do not depend on the thread count, the profile is measured once and reused, a profile of
another model is refused, the plan is recorded in the file and shown by `smolq inspect`, and
llama.cpp loads and runs the result. The quality comparison against fixed mixtures is in
test_mixed_real.py and test_mixed_synthetic.py."""
from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from mixed_tools import FILE_LINE, bits_per_weight, calib_file, mix_fields
from quantize_tools import smolq_f16

SIZE = re.compile(r"target size (\d+) bytes: \d+ tensors allocated, file (\d+) bytes")


@pytest.fixture(scope="module")
def small(smolq_bin, synthetic, wikitext):
    return smolq_f16(smolq_bin, synthetic("aligned256-small-bf16"), "small")


@pytest.fixture(scope="module")
def calib(wikitext):
    return calib_file(wikitext)


@pytest.fixture(scope="module")
def profiled(small, calib, run_smolq, tmp_path_factory):
    """A profile measured once for this module (and the log of the run that measured it)."""
    d = tmp_path_factory.mktemp("profile")
    prof = d / "small.smolq-profile.json"
    proc = run_smolq("quantize", small, d / "first.gguf", "--target-bpw", "5", "--calib", calib, "--profile", prof,
                     "-q", "-t", 2, "--calib-ctx", 128)
    return prof, proc


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_profile_is_measured_then_reused(profiled, small, calib, run_smolq, out_dir):
    prof, first = profiled
    assert "profile built in" in first.stderr and "profile reused" not in first.stderr
    doc = json.loads(prof.read_text())
    assert doc["format"] == "smolq-sensitivity-profile"
    assert len(doc["tensors"]) == 16  # 2 layers x 7 matrices, output and token_embd
    assert doc["calibration"].startswith(calib.name)
    # The predictor was checked against direct measurements and the result recorded.
    assert len(doc["predictor"]["single_checks"]) == 6 and len(doc["predictor"]["model_checks"]) == 2
    for c in doc["predictor"]["model_checks"]:
        assert c["measured"] > 0 and c["predicted"] > 0
    # A second target: no measurement at all (no base pass, no group pass).
    second = run_smolq("quantize", small, out_dir / "b.gguf", "--target-bpw", "6", "--calib", calib, "--profile",
                       prof, "-q", "-t", 2, "--calib-ctx", 128)
    assert "profile reused" in second.stderr
    assert "] profile: base pass" not in second.stderr and "] profile: group" not in second.stderr
    # Without --calib the existing profile is enough.
    third = run_smolq("quantize", small, out_dir / "c.gguf", "--target-bpw", "6", "--profile", prof, "-q",
                      "--calib-ctx", 128)
    assert "profile reused" in third.stderr
    assert sha(out_dir / "b.gguf") == sha(out_dir / "c.gguf")


def test_never_exceeds_target_size(profiled, small, run_smolq, out_dir):
    prof, _ = profiled
    f16_size = small.stat().st_size
    for frac in (0.22, 0.3, 0.37, 0.45, 0.6, 0.9):
        want = int(f16_size * frac)
        proc = run_smolq("quantize", small, "--target-size", want, "--profile", prof, "--dry-run", "--calib-ctx", 128)
        planned = int(FILE_LINE.search(proc.stdout).group(1))
        assert planned <= want
        # The allocator leaves little on the table: less than the smallest tensor step.
        assert planned >= want * 0.97, (planned, want)
    # Written files are exactly the planned size.
    want = int(f16_size * 0.37)
    dry = run_smolq("quantize", small, "--target-size", want, "--profile", prof, "--dry-run", "--calib-ctx", 128)
    run_smolq("quantize", small, out_dir / "w.gguf", "--target-size", want, "--profile", prof, "-q", "--calib-ctx", 128)
    assert (out_dir / "w.gguf").stat().st_size == int(FILE_LINE.search(dry.stdout).group(1)) <= want
    # Units: 1.5MiB is 1572864 bytes.
    proc = run_smolq("quantize", small, "--target-size", "1.5MiB", "--profile", prof, "--dry-run", "--calib-ctx", 128)
    assert int(FILE_LINE.search(proc.stdout).group(1)) <= 1572864


def test_target_bpw_is_met(profiled, small, run_smolq, out_dir):
    prof, _ = profiled
    for bpw in (3.0, 4.5, 6.0):
        out = out_dir / f"bpw{bpw}.gguf"
        run_smolq("quantize", small, out, "--target-bpw", bpw, "--profile", prof, "-q", "--calib-ctx", 128)
        got = bits_per_weight(out)
        assert got <= bpw + 1e-9 and got >= bpw - 0.25, (bpw, got)
        assert mix_fields(out)["smolq.mix.bpw"] == pytest.approx(got, rel=1e-6)


def test_same_plan_and_bytes_for_any_thread_count(profiled, small, calib, run_smolq, out_dir, tmp_path):
    prof, _ = profiled
    want = int(small.stat().st_size * 0.4)
    run_smolq("quantize", small, out_dir / "t1.gguf", "--target-size", want, "--profile", prof, "-q", "-t", 1,
              "--calib-ctx", 128)
    run_smolq("quantize", small, out_dir / "t2.gguf", "--target-size", want, "--profile", prof, "-q", "-t", 2,
              "--calib-ctx", 128)
    assert sha(out_dir / "t1.gguf") == sha(out_dir / "t2.gguf")
    # A profile measured from scratch on one thread gives the same file as the shared one.
    fresh = tmp_path / "fresh.smolq-profile.json"
    run_smolq("quantize", small, out_dir / "t3.gguf", "--target-size", want, "--calib", calib, "--profile", fresh,
              "-q", "-t", 1, "--calib-ctx", 128)
    assert sha(out_dir / "t3.gguf") == sha(out_dir / "t1.gguf")


def test_metadata_inspect_and_llama_cpp(profiled, small, run_smolq, out_dir, llama_model):
    prof, _ = profiled
    want = int(small.stat().st_size * 0.35)
    out = out_dir / "m.gguf"
    run_smolq("quantize", small, out, "--target-size", want, "--profile", prof, "-q", "--calib-ctx", 128)
    meta = mix_fields(out)
    assert meta["smolq.mix.target"] == f"size {want} bytes"
    assert meta["smolq.mix.predicted_kld"] > 0
    assert re.fullmatch(r"[0-9a-f]{16}", meta["smolq.mix.profile"])
    shown = run_smolq("inspect", out).stdout
    assert f"made by target allocation (smolq): target size {want} bytes" in shown
    # llama.cpp loads it and computes finite logits that follow the F16 model's.
    toks = list(range(10, 60))
    m = llama_model(out, n_ctx=64)
    m.eval(toks)
    q = np.array(m.scores[: len(toks)], dtype=np.float64)
    r = llama_model(small, n_ctx=64)
    r.eval(toks)
    ref = np.array(r.scores[: len(toks)], dtype=np.float64)
    assert np.isfinite(q).all()
    assert np.corrcoef(q.ravel(), ref.ravel())[0, 1] > 0.95


def test_errors(profiled, small, synthetic, smolq_bin, calib, run_smolq, out_dir):
    prof, _ = profiled
    # Smaller than the smallest candidates allow: a usage error naming the minimum.
    p = run_smolq("quantize", small, out_dir / "x.gguf", "--target-size", "100KiB", "--profile", prof,
                  "--calib-ctx", 128, check=False)
    assert p.returncode == 2 and "too small" in p.stderr
    # A profile of another model given explicitly is refused.
    other = smolq_f16(smolq_bin, synthetic("aligned256-small-f16-sharded"), "small-sharded")
    if sha(other) != sha(small):
        p = run_smolq("quantize", other, out_dir / "y.gguf", "--target-size", "2MiB", "--profile", prof,
                      "--calib-ctx", 128, check=False)
        assert p.returncode == 2 and "measured on another model" in p.stderr
    # Both targets, or a target and a type.
    p = run_smolq("quantize", small, out_dir / "z.gguf", "--target-size", "2MiB", "--target-bpw", "4", check=False)
    assert p.returncode == 2
    p = run_smolq("quantize", small, out_dir / "z.gguf", "Q4_K_M", "--target-bpw", "4", check=False)
    assert p.returncode == 2
    # No profile and no calibration text: says what to do.
    p = run_smolq("quantize", small, out_dir / "z.gguf", "--target-bpw", "4", "--profile", out_dir / "none.json",
                  check=False, env={"PATH": "/usr/bin:/bin"})
    assert p.returncode == 2 and "--calib" in p.stderr


def test_convert_takes_the_same_options(small, synthetic, calib, run_smolq, out_dir):
    ckpt = synthetic("aligned256-small-bf16")
    want = int(small.stat().st_size * 0.4)
    out = out_dir / "conv.gguf"
    proc = run_smolq("convert", ckpt, "-o", out, "--target-size", want, "--calib", calib, "--profile",
                     out_dir / "hf.smolq-profile.json", "-q", "--calib-ctx", 128)
    assert "profile built in" in proc.stderr
    assert out.stat().st_size <= want
    assert mix_fields(out)["smolq.mix.target"] == f"size {want} bytes"
    dry = run_smolq("convert", ckpt, "--target-size", want, "--profile", out_dir / "hf.smolq-profile.json",
                    "--dry-run", "--calib-ctx", 128)
    assert "profile reused" in dry.stderr
    assert int(FILE_LINE.search(dry.stdout).group(1)) == out.stat().st_size


def test_exclude_types(profiled, small, run_smolq, out_dir):
    prof, _ = profiled
    from quantize_tools import tensor_types
    out = out_dir / "ex.gguf"
    proc = run_smolq("quantize", small, out, "--target-bpw", "4", "--profile", prof, "-q", "--calib-ctx", 128,
                     "--exclude-types", "Q2_K,Q4_K,IQ4_XS")
    assert "profile reused" in proc.stderr
    used = set(tensor_types(out).values())
    assert not used & {"Q2_K", "Q4_K", "IQ4_XS"}, used
    assert bits_per_weight(out) <= 4.0
    assert mix_fields(out)["smolq.mix.target"] == "bpw 4 excluding Q2_K,Q4_K,IQ4_XS"
    p = run_smolq("quantize", small, out_dir / "ex2.gguf", "--target-bpw", "4", "--profile", prof,
                  "--calib-ctx", 128, "--exclude-types", "Q9_9", check=False)
    assert p.returncode == 2 and "unknown type" in p.stderr


def test_verify_rows_at_the_size_of_a_mixture(small, calib, run_smolq, out_dir, wikitext):
    """`smolq verify --types Q4_K_M,Q4_K_M@target`: both rows in the report, the target row no
    larger than the Q4_K_M file and with a lower KLD on the evaluation text (a WikiText-2 test
    excerpt; the profile is measured on --calib, a validation excerpt)."""
    text = out_dir / "test.txt"
    text.write_text(wikitext(40000, split="test"), encoding="utf-8")
    run_smolq("verify", small, "-f", text, "--types", "Q4_K_M,Q4_K_M@target", "--calib", calib, "--ctx", 128,
              "--chunks", 4, "--n-predict", 0, "-t", 2, "--out", out_dir / "v")
    rep = json.loads((out_dir / "v" / "report.json").read_text())
    rows = {q["label"]: q for q in rep["quants"]}
    assert set(rows) == {"Q4_K_M", "Q4_K_M@target"}
    fixed, target = rows["Q4_K_M"], rows["Q4_K_M@target"]
    assert target["file_size"] <= fixed["file_size"]
    assert target["kld_mean"] < fixed["kld_mean"]
    assert (out_dir / "v" / "cache").is_dir() and any((out_dir / "v" / "cache").glob("profile-*.json"))
