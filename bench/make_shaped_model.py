"""Writes a synthetic-weight Hugging Face checkpoint in the shape of SmolLM2-1.7B or SmolLM3-3B
(benchmarks only: speed and memory at real sizes; the weights mean nothing).

Shapes (docs: /work/shared/guides/models.md, the configs' own numbers):
  1.7b  SmolLM2-1.7B: hidden 2048, FFN 8192, 24 layers, 32 / 32 heads, vocab 49,152, tied,
        the real SmolLM2 tokenizer (pre-tokenizer `smollm`)
  3b    SmolLM3-3B: hidden 2048, FFN 11008, 36 layers, 16 / 4 heads (head dim 128), vocab 128,256,
        tied, NoPE on every 4th layer, rope theta 5e6. SmolLM3's Llama-3 tokenizer is not
        available here: the 1,024-token Llama-3-style fixture tokenizer is used and the
        vocabulary padded to 128,256 (ids >= 1,024 become [PAD] tokens, as llama.cpp's converter
        does for padded vocabularies), so the embedding matrix has its real 262.7M weights.
        Convert it with `--pre-tokenizer llama-bpe` (the fixture's hash matches no entry).

Storage: BF16 safetensors in shards named as transformers' save_pretrained names them
(model-0000i-of-0000n.safetensors + model.safetensors.index.json), cut at --shard-gb (default
2 GB for 1.7b -> 2 shards, 5 GB for 3b -> 2 shards, as the published SmolLM3-3B).

Weights look trained enough for quantizers to have work to do (not iid gaussian): each matrix is
   w_ij = INIT_STD * r_i * c_j * z_ij,   r_i ~ logN(0, 0.35^2) per row, c_j ~ logN(0, 0.2^2) per
   input column, z ~ N(0, 1), and one weight in 2,000 multiplied by U(4, 8) (outliers)
so rows differ in scale (what the per-block scales absorb), some input channels are larger
(what an importance matrix sees) and tails are heavier than gaussian. Norm gains are
1 + N(0, 0.1^2). Every tensor has its own generator seeded by (shape seed, tensor index):
the same bytes on every run and machine. Tensors are generated and written in blocks of rows,
so memory stays ~100 MB whatever the model size.

Usage: make_shaped_model.py OUT_DIR [--shape 1.7b|3b] [--layers N] [--shard-gb G]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from fixtures import common, llama3_tokenizer, synthetic  # noqa: E402

SHAPE_1_7B = replace(synthetic.SMOLLM2, hidden=2048, ffn=8192, layers=24, heads=32, kv_heads=32, rope_theta=130000.0,
                     seed=1700, chat_template=False)
SHAPE_3B = replace(synthetic.SMOLLM3, hidden=2048, ffn=11008, layers=36, heads=16, kv_heads=4, seed=3000)
SHAPES = {
    # name: (shape, vocabulary, default shard size in GB, folder name for general.name)
    "1.7b": (SHAPE_1_7B, 49152, 2.0, "smollm2-1.7b-shaped-synthetic"),
    "3b": (SHAPE_3B, 128256, 5.0, "smollm3-3b-shaped-synthetic"),
}
ROW_LOG_STD = 0.35      # per-row scale spread (log-normal)
COL_LOG_STD = 0.2       # per-input-column scale spread
OUTLIER_RATE = 1 / 2000  # fraction of weights scaled by U(4, 8)
BLOCK_ELEMS = 1 << 24   # rows generated per block: ~64 MB of f32


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even f32 -> bf16 bit patterns (no NaNs here)."""
    u = x.astype(np.float32, copy=False).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def tensor_shapes(shape, vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    out = []
    for name, shp in synthetic.tensor_shapes(shape):
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            shp = (vocab, shp[1])
        out.append((name, shp))
    return out


def write_tensor(f, rng: np.random.Generator, shp: tuple[int, ...]) -> None:
    """Generates one tensor block by block and writes its bf16 bytes to `f`."""
    if len(shp) == 1:
        f.write(bf16_bits(1.0 + synthetic.NORM_STD * rng.standard_normal(shp, dtype=np.float32)).tobytes())
        return
    rows, cols = shp
    row_scale = np.exp(ROW_LOG_STD * rng.standard_normal(rows, dtype=np.float32)) * synthetic.INIT_STD
    col_scale = np.exp(COL_LOG_STD * rng.standard_normal(cols, dtype=np.float32))
    step = max(1, BLOCK_ELEMS // cols)
    for r0 in range(0, rows, step):
        n = min(step, rows - r0)
        w = rng.standard_normal((n, cols), dtype=np.float32)
        k = rng.binomial(n * cols, OUTLIER_RATE)
        idx = rng.integers(0, n * cols, size=k)
        w.reshape(-1)[idx] *= rng.uniform(4.0, 8.0, size=k).astype(np.float32)
        w *= col_scale
        w *= row_scale[r0:r0 + n, None]
        f.write(bf16_bits(w).tobytes())


def shard_plan(shapes: list[tuple[str, tuple[int, ...]]], shard_bytes: float) -> list[list[int]]:
    """Tensor indices per shard, in state-dict order, each shard at most shard_bytes (a
    tensor larger than that gets a shard of its own), as save_pretrained cuts."""
    shards, cur, size = [], [], 0
    for i, (_, shp) in enumerate(shapes):
        n = int(np.prod(shp)) * 2
        if cur and size + n > shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += n
    shards.append(cur)
    return shards


def write_shard(path: Path, shapes, indices: list[int], seed: int) -> int:
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for i in indices:
        name, shp = shapes[i]
        n = int(np.prod(shp)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shp), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for i in indices:
            write_tensor(f, np.random.default_rng([seed, i]), shapes[i][1])
    tmp.replace(path)
    return off


def write_config_and_tokenizer(out: Path, name: str, shape, vocab: int) -> None:
    s = synthetic.Synthetic(name, shape, "bf16", sharded=True)
    if shape.tokenizer == "smollm2":
        special = synthetic.write_smollm2_tokenizer(out, with_template=False)
    else:
        tok_dir = Path(__file__).resolve().parents[1] / "testdata" / "generated" / "tokenizers" / "llama3-style-1k"
        if not (tok_dir / "tokenizer.json").exists():
            raise SystemExit(f"missing {tok_dir}/tokenizer.json: run scripts/make_fixtures.py first")
        ids = llama3_tokenizer.write_hf_files(tok_dir, out, shape.max_pos)
        special = {"bos": ids["<|begin_of_text|>"], "eos": ids["<|im_end|>"], "pad": ids["<|end_of_text|>"]}
    cfg = synthetic.config_json(s, special)
    cfg["vocab_size"] = vocab
    common.write_json(out / "config.json", cfg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1.7b")
    ap.add_argument("--layers", type=int, help="fewer layers than the real model (tests)")
    ap.add_argument("--shard-gb", type=float, help="largest shard in GB (default: per shape)")
    a = ap.parse_args()
    shape, vocab, shard_gb, name = SHAPES[a.shape]
    if a.layers:
        shape = replace(shape, layers=a.layers)
    shard_gb = a.shard_gb or shard_gb
    a.out.mkdir(parents=True, exist_ok=True)
    write_config_and_tokenizer(a.out, name, shape, vocab)
    shapes = tensor_shapes(shape, vocab)
    shards = shard_plan(shapes, shard_gb * 1e9)
    weight_map, total = {}, 0
    for k, indices in enumerate(shards, start=1):
        fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        total += write_shard(a.out / fname, shapes, indices, shape.seed)
        for i in indices:
            weight_map[shapes[i][0]] = fname
    common.write_json(a.out / "model.safetensors.index.json",
                      {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    largest = max(int(np.prod(s)) * 2 for _, s in shapes)
    print(f"wrote {a.out}: {a.shape}, {len(shapes)} tensors in {len(shards)} shards, "
          f"{total / 1e9:.2f} GB of weights, largest tensor {largest / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
