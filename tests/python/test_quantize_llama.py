"""`smolq quantize` judged by llama.cpp, legacy and float file types (issue #3) on the
real SmolLM2-135M-Instruct: every file type loads and runs in llama.cpp (llama-cpp-python), has
llama-quantize's type for every tensor and its bits per weight, and its perplexity on a
WikiText-2 test excerpt is no worse than that of llama.cpp's own quantizer (the built
llama-quantize) given the same F16 source and the same importance matrix (llama-imatrix on a
WikiText-2 *validation* excerpt). `smolq convert --type Q4_K_M` straight from the checkpoint
must give the plan of quantizing the F16 and a file llama.cpp runs as well.

The other file types and models are their own ctest entries, so ctest -j2 runs them side by
side: test_quantize_llama_iq.py (IQ types, real model), test_quantize_llama_other.py (ternary,
FP4, Q1_0/Q2_0, real model), test_quantize_llama_syn.py (every type on the 256-aligned
synthetic model). The criterion, its tolerances and the shared caches are in quantize_tools.py:
perplexity on 384 tokens no worse than llama-quantize's by more than 0.5% plus two standard
errors of the paired per-token difference, mean KL divergence from the F16 within 1.25x.
llama.cpp's side (F16 logits, imatrix, its files' figures) is cached by input hashes in
$SMOLQ_BUILD_DIR/test-cache/quantize; smolq's side is always recomputed. The table is printed
at the end (ctest -V) and written to $SMOLQ_BUILD_DIR/test-results/quantize_ppl_real-legacy.txt.
"""
from __future__ import annotations

import pytest

from quantize_tools import (FLOAT_TYPES, LEGACY_TYPES, N_TOKENS, THREADS, check_type, llama_dry_run_types,
                            make_model, ours, perplexity, tensor_types, write_table)


@pytest.fixture(scope="module")
def real(request, smolq_bin, real_ckpt, wikitext):
    m = make_model("real", "real-legacy", real_ckpt, smolq_bin, wikitext)
    yield m
    write_table(request, m)


@pytest.mark.parametrize("ftype", LEGACY_TYPES + FLOAT_TYPES)
def test_real_135m(ftype, real, run_smolq, smolq_bin, tmp_path_factory):
    check_type(real, ftype, run_smolq, smolq_bin, tmp_path_factory.mktemp("real"))


def test_convert_type_q4_k_m_real(real, run_smolq, smolq_bin, real_ckpt, tmp_path_factory):
    """`smolq convert --type Q4_K_M` from the bf16 checkpoint: the tensor types of quantizing
    our F16 (and of llama.cpp's plan for it), and a file llama.cpp runs about as well. The
    weights are the same numbers (bf16 values are f16-exact except below f16's normal range),
    so the perplexity must match the F16 route closely."""
    out_dir = tmp_path_factory.mktemp("convert")
    out = out_dir / "convert-q4km.gguf"
    run_smolq("convert", real_ckpt, "-o", out, "--type", "Q4_K_M", "--imatrix", real.imatrix, "-t", THREADS, "-q",
              timeout=900)
    types = tensor_types(out)
    planned = llama_dry_run_types(real.f16, "Q4_K_M", imatrix=real.imatrix)
    assert types == planned, {n: (t, planned.get(n)) for n, t in types.items() if planned.get(n) != t}
    via_f16 = ours(real, "Q4_K_M", run_smolq, out_dir)
    assert types == via_f16["types"]
    ppl, _ = perplexity(out, real.text, N_TOKENS["real"])
    assert abs(ppl / via_f16["ppl"] - 1) < 0.005, f"convert --type: {ppl:.4f}, quantize of F16: {via_f16['ppl']:.4f}"
