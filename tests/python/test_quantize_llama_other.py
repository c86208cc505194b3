"""`smolq quantize` judged by llama.cpp, ternary, FP4 and the recent 1-2 bit file types
(TQ1_0, TQ2_0, MXFP4_MOE, NVFP4, Q2_0, Q1_0) on the real SmolLM2-135M-Instruct, with the
criterion of quantize_tools.py (see test_quantize_llama.py).

What these mean on this model:
  - TQ1_0 / TQ2_0 are for ternary-trained weights; on SmolLM2 only ffn_down takes them (the rest
    falls back to q4_0) and the perplexity is far above F16's for both quantizers. The criterion
    is unchanged: no worse than llama-quantize's ternarization of the same weights.
  - MXFP4_MOE puts mxfp4 on expert tensors only; a dense model gets q8_0 everywhere.
  - NVFP4: llama.cpp loads and runs it, but llama-quantize has no NVFP4 file type, so it is given
    our plan tensor by tensor (--tensor-type-file over Q8_0) and the two NVFP4 quantizers are
    compared on the same tensors.
  - Q1_0 has 128-weight blocks and no fallback type: both quantizers refuse SmolLM2's 576-wide
    rows (checked), and the 256-aligned synthetic model (test_quantize_llama_syn.py) covers it.
The table goes to $SMOLQ_BUILD_DIR/test-results/quantize_ppl_real-other.txt.
"""
from __future__ import annotations

import pytest

from quantize_tools import OTHER_TYPES, check_type, make_model, write_table


@pytest.fixture(scope="module")
def real(request, smolq_bin, real_ckpt, wikitext):
    m = make_model("real", "real-other", real_ckpt, smolq_bin, wikitext)
    yield m
    write_table(request, m)


@pytest.mark.parametrize("ftype", OTHER_TYPES)
def test_real_135m(ftype, real, run_smolq, smolq_bin, tmp_path_factory):
    check_type(real, ftype, run_smolq, smolq_bin, tmp_path_factory.mktemp("real"))
