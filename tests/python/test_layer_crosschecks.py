"""Cross-checks between commands that must write the same facts (issue 12): a quant built by
`smolq verify` and the same quant made by `smolq convert --type` from the same checkpoint carry
the same tokenizer.* keys (the pre-tokenizer is identified in one place, text/tokenizer_meta.cpp,
whichever command converts). Checked on the real SmolLM2-135M tokenizer (probe hash known to
llama.cpp) and on the Llama-3-style tokenizer of the SmolLM3-shaped synthetic model."""
import numpy as np
import pytest


def tokenizer_kv(path):
    import gguf
    r = gguf.GGUFReader(str(path))
    out = {}
    for name, field in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        if field.types and field.types[0] == gguf.GGUFValueType.ARRAY:
            out[name] = [bytes(field.parts[i]).hex() for i in field.data]
        else:
            out[name] = bytes(field.parts[field.data[0]]).hex() if field.data else None
    return out


@pytest.mark.parametrize("fixture", ["real", "smollm3-tiny-bf16"])
def test_verify_and_convert_write_the_same_tokenizer_keys(fixture, run_smolq, real_ckpt, synthetic, wikitext, tmp_path):
    ckpt = real_ckpt if fixture == "real" else synthetic(fixture)
    text = tmp_path / "wiki.txt"
    text.write_text(wikitext(3000), encoding="utf-8")
    out = tmp_path / "sweep"
    run_smolq("verify", ckpt, "-f", text, "--types", "Q8_0", "--ctx", 32, "--chunks", 1, "--n-predict", 0,
              "--out", out, "-t", 2, timeout=900)
    built = sorted((out / "quants").glob("*.gguf"))
    assert len(built) == 1, built
    converted = tmp_path / "converted.gguf"
    run_smolq("convert", ckpt, "--type", "Q8_0", "-o", converted, "-t", 2, timeout=900)
    ours, theirs = tokenizer_kv(built[0]), tokenizer_kv(converted)
    assert "tokenizer.ggml.pre" in ours
    assert ours == theirs
