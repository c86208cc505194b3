"""Measured mixed precision against llama.cpp-style fixed mixtures on the synthetic
aligned256-bf16 model (hidden 256, FFN 768, 2 layers, the real 49,152-token vocabulary, untied
embeddings; every width a multiple of 256, so K-quants apply everywhere without fallbacks).

For Q3_K_M, Q4_K_M and Q5_K_M: a `--target-size` file of the fixed file's size must not be
larger, must be within 1% of it, and must have a lower mean KL divergence from the F16 model
on a WikiText-2 test excerpt, as measured by llama.cpp (llama-cpp-python), which therefore
also loads and runs every file. The profile is measured on a WikiText-2 validation excerpt.
Numbers go to $SMOLQ_BUILD_DIR/test-cache/mixed/results-syn.json (docs/mixed-precision.md)."""
from __future__ import annotations

from mixed_tools import calib_file, check_rows, compare_at_standard_sizes
from quantize_tools import smolq_f16

N_TOKENS = 512


def test_target_beats_fixed_mixtures(smolq_bin, synthetic, wikitext, run_smolq, out_dir):
    f16 = smolq_f16(smolq_bin, synthetic("aligned256-bf16"), "syn")
    rows = compare_at_standard_sizes("syn", f16, run_smolq, out_dir, calib_file(wikitext),
                                     wikitext(8000, split="test"), N_TOKENS)
    check_rows(rows)
