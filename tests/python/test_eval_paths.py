"""The evaluator's kernel paths end to end (docs/evaluator.md): the same logits, byte for byte,
whatever the SIMD level picked on an AVX-512 machine (AVX2 4x3 tiles or AVX-512 packed 8-row
tiles), thread count and batch size for the f32 reference pass (SMOLQ_EVAL_MATMUL=f32); the default
pass (the integer matmul for block-quantized and F16 weights on AVX-512 VNNI CPUs) thread- and
batch-independent too, and close to the f32 reference.

Small: the 256-aligned synthetic model as Q8_0, Q4_K and F16 (every tensor takes the type),
2 chunks of 64 tokens."""
from __future__ import annotations

import os

import numpy as np
import pytest

CTX, CHUNKS = 64, 2


@pytest.fixture(scope="module")
def text_file(tmp_path_factory, wikitext):
    p = tmp_path_factory.mktemp("text") / "wiki.txt"
    p.write_text(wikitext(6000), encoding="utf-8")
    return p


def logits(run_smolq, model, text, tmp_path, name, threads=2, batch=None, **env):
    npy = tmp_path / f"{name}.npy"
    e = dict(os.environ)
    e.pop("SMOLQ_SIMD", None)
    e.pop("SMOLQ_EVAL_MATMUL", None)
    e.update(env)
    args = ["perplexity", model, "-f", text, "--ctx", CTX, "--chunks", CHUNKS, "--threads", threads,
            "--dump-logits", npy, "-q"]
    if batch:
        args += ["--batch", batch]
    run_smolq(*args, env=e)
    return np.load(npy)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_K", "F16"])
def test_paths_agree(qtype, run_smolq, synthetic, text_file, tmp_path):
    model = tmp_path / f"aligned256-{qtype}.gguf"
    run_smolq("convert", synthetic("aligned256-bf16"), "-o", model, "--type", qtype, "--pure", "-q")
    # The f32 reference pass (SMOLQ_EVAL_MATMUL=f32): the same bytes for any SIMD level and threads.
    ref = logits(run_smolq, model, text_file, tmp_path, "ref", SMOLQ_EVAL_MATMUL="f32")
    assert np.array_equal(logits(run_smolq, model, text_file, tmp_path, "avx2", SMOLQ_SIMD="avx2",
                                 SMOLQ_EVAL_MATMUL="f32"), ref)
    assert np.array_equal(logits(run_smolq, model, text_file, tmp_path, "t1", threads=1, SMOLQ_EVAL_MATMUL="f32"), ref)
    # Batches of 13 tokens: every batch but the first appends keys to a partly filled group of
    # the packed K cache (AVX-512), and attention blocks start at other positions.
    assert np.array_equal(logits(run_smolq, model, text_file, tmp_path, "b13", threads=1, batch=13,
                                 SMOLQ_EVAL_MATMUL="f32"), ref)
    # The default pass (the integer path on AVX-512 VNNI CPUs, the reference elsewhere):
    # independent of threads and batch, the same as asking for the integer path, and near the
    # reference. Capped at AVX2 it is the reference.
    q = logits(run_smolq, model, text_file, tmp_path, "int")
    q1 = logits(run_smolq, model, text_file, tmp_path, "int1", threads=1, batch=16)
    assert np.array_equal(q, q1)
    assert np.array_equal(logits(run_smolq, model, text_file, tmp_path, "int2", SMOLQ_EVAL_MATMUL="int"), q)
    assert np.array_equal(logits(run_smolq, model, text_file, tmp_path, "dflt-avx2", SMOLQ_SIMD="avx2"), ref)
    d = np.abs(q.astype(np.float64) - ref)
    print(f"{qtype}: default (integer) pass vs reference: max |d| {d.max():.2e}, mean {d.mean():.2e}, "
          f"logit std {ref.std():.3f}")
    # On a CPU without AVX-512 VNNI the integer path is not taken: the bytes are the reference's.
    assert d.max() < 0.01 * ref.std() + 1e-6
    assert (q.argmax(1) == ref.argmax(1)).mean() >= 0.98
