"""Writes a random-weight Hugging Face checkpoint in the shape of SmolLM2-1.7B (bench only).

hidden 2048, FFN 8192, 24 layers, 32 attention heads, 32 KV heads, tied embeddings, the real
SmolLM2 tokenizer; weights N(0, 0.02^2), norm gains 1 + N(0, 0.1^2), seed 1700, bf16. The
safetensors file (~3.4 GB) is streamed tensor by tensor, so memory stays at one tensor.
Usage: make_shaped_model.py OUT_DIR [--layers N]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from fixtures import synthetic  # noqa: E402

SHAPE_1_7B = replace(synthetic.SMOLLM2, hidden=2048, ffn=8192, layers=24, heads=32, kv_heads=32, rope_theta=130000.0,
                     seed=1700, chat_template=False)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even f32 -> bf16 bit patterns (no NaNs here)."""
    u = x.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--layers", type=int, default=SHAPE_1_7B.layers)
    a = ap.parse_args()
    shape = replace(SHAPE_1_7B, layers=a.layers)
    s = synthetic.Synthetic("smollm2-1.7b-shaped-random", shape, "bf16")
    a.out.mkdir(parents=True, exist_ok=True)
    special = synthetic.write_smollm2_tokenizer(a.out, with_template=False)
    (a.out / "config.json").write_text(json.dumps(synthetic.config_json(s, special), indent=2))
    shapes = synthetic.tensor_shapes(shape)
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shp in shapes:
        n = int(np.prod(shp)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shp), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    rng = np.random.default_rng(shape.seed)
    tmp = a.out / "model.safetensors.tmp"
    with open(tmp, "wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for name, shp in shapes:
            if len(shp) == 1:
                w = 1.0 + synthetic.NORM_STD * rng.standard_normal(shp, dtype=np.float32)
            else:
                w = synthetic.INIT_STD * rng.standard_normal(shp, dtype=np.float32)
            f.write(bf16_bits(w).tobytes())
    tmp.replace(a.out / "model.safetensors")
    print(f"wrote {a.out} ({off / 1e9:.2f} GB of weights)")


if __name__ == "__main__":
    main()
