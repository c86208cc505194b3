"""`smolq quantize` judged by llama.cpp, K-quant file types (issue #3) on the real
SmolLM2-135M-Instruct: Q2_K ... Q6_K load and run in llama.cpp, have llama-quantize's plan and
bits per weight, and their perplexity is no worse than llama-quantize's with the same F16 and
imatrix (criterion and caches: quantize_tools.py; the module docstring of
test_quantize_llama.py explains the split into ctest entries).

On the 135M only ffn_down (1536 wide) takes the K type itself; the 576-wide tensors fall back
to 32-weight types, as llama.cpp does. The table goes to
$SMOLQ_BUILD_DIR/test-results/quantize_ppl_real-k.txt.
"""
from __future__ import annotations

import pytest

from quantize_tools import K_TYPES, check_type, make_model, write_table


@pytest.fixture(scope="module")
def real(request, smolq_bin, real_ckpt, wikitext):
    m = make_model("real", "real-k", real_ckpt, smolq_bin, wikitext)
    yield m
    write_table(request, m)


@pytest.mark.parametrize("ftype", K_TYPES)
def test_real_135m(ftype, real, run_smolq, smolq_bin, tmp_path_factory):
    check_type(real, ftype, run_smolq, smolq_bin, tmp_path_factory.mktemp("real"))
