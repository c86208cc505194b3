"""`smolq quantize` judged by llama.cpp on the synthetic `aligned256-small-bf16` (every width a
multiple of 256, so every tensor takes its file type's own type natively; 1k vocabulary, so each
type runs in seconds): every file type of issues #3 and #4 loads and runs in llama.cpp, has
llama-quantize's plan and bits per weight, and — the weights being random, so that perplexity
sits at the vocabulary size and moves by chance — its imatrix-weighted squared weight error is
no worse than llama-quantize's (+0.5%) and its mean KL divergence from the F16 model's logits
within 1.25x of llama-quantize's file's (quantize_tools.py). Both get the same llama-imatrix.
The table goes to $SMOLQ_BUILD_DIR/test-results/quantize_ppl_syn.txt.
"""
from __future__ import annotations

import pytest

from quantize_tools import ALL_TYPES, SYN_CHECKPOINT, check_type, make_model, write_table


@pytest.fixture(scope="module")
def syn(request, smolq_bin, synthetic, wikitext):
    m = make_model("syn", "syn", synthetic(SYN_CHECKPOINT), smolq_bin, wikitext)
    yield m
    write_table(request, m)


@pytest.mark.parametrize("ftype", ALL_TYPES)
def test_synthetic_aligned256(ftype, syn, run_smolq, smolq_bin, out_dir):
    check_type(syn, ftype, run_smolq, smolq_bin, out_dir)
