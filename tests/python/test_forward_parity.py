"""smolq's forward pass against llama.cpp (llama-cpp-python) on real SmolLM2-135M weights and on
quantized synthetic models: logits position by position, and perplexity under llama.cpp's
protocol (chunks of CTX tokens, second half scored), computed here from llama.cpp's own logits.
The default pass (integer matmul with int16 activations for block-quantized weights on AVX-512
VNNI CPUs) everywhere, and the f32 reference (SMOLQ_EVAL_MATMUL=f32) where exactness is checked.

What "agreement" can mean depends on the file. llama.cpp multiplies F32 weights in f32, but for
F16 weights it rounds activations to f16, and for quantized weights it quantizes the activations
to 8 bits (Q8_0/Q8_1/Q8_K) before each product; its default KV cache is f16. smolq computes
everything in f32. So:
  - F32 GGUF with an F32 KV cache: llama.cpp is exact too and the logits must agree to float
    noise (argmax on every position);
  - F16 and quantized files: llama.cpp's own rounding moves its logits; on the real Q4_1 file it
    deviates from a float64 evaluation of the same weights by ~0.15 per logit on average (checked
    below: smolq is within 1e-4 of that float64 evaluation), which flips the argmax wherever the
    top two logits are that close. Thresholds here are set from measurements (see the report in
    docs/perplexity.md) with a margin; perplexity must agree within 0.5% everywhere.
The token ids come from the `tokenizers` package, so these tests do not depend on smolq's tokenizer
(one test checks `-f` through it separately).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

CTX = 64         # tokens per chunk (small: the whole file must stay quick on 2 shared cores)
CHUNKS = 2       # chunks evaluated: CTX * CHUNKS positions compared
GGML_F32 = 0     # ggml type id, for llama.cpp's KV-cache type


# --- helpers -----------------------------------------------------------------------------

def ppl_protocol(logits: np.ndarray, ids: list[int], ctx: int) -> float:
    """llama-perplexity's number from full-chunk logits [n_chunks * ctx, vocab]."""
    nll = []
    for c in range(len(logits) // ctx):
        for j in range(ctx // 2, ctx - 1):
            row = logits[c * ctx + j].astype(np.float64)
            m = row.max()
            nll.append(-(row[ids[c * ctx + j + 1]] - m - np.log(np.exp(row - m).sum())))
    return float(np.exp(np.mean(nll)))


def compare(ours: np.ndarray, theirs: np.ndarray) -> dict:
    d = np.abs(ours.astype(np.float64) - theirs)
    return {"argmax_agree": float((ours.argmax(1) == theirs.argmax(1)).mean()),
            "max_abs": float(d.max()), "mean_abs": float(d.mean())}


@pytest.fixture(scope="module")
def ids(real_ckpt, wikitext) -> list[int]:
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(real_ckpt / "tokenizer.json"))
    # SmolLM2's tokenizer adds no BOS (llama.cpp: add_bos_token = false), so chunks are plain.
    out = tok.encode(wikitext(3000), add_special_tokens=False).ids
    assert len(out) >= CTX * CHUNKS
    return out[: CTX * CHUNKS]


@pytest.fixture(scope="module")
def ids_file(ids, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("ids") / "ids.txt"
    p.write_text(" ".join(map(str, ids)))
    return p


@pytest.fixture(scope="module")
def smolq_logits(run_smolq, ids_file, tmp_path_factory):
    """smolq_logits(model) -> (logits [CTX*CHUNKS, vocab], JSON report) for a GGUF or HF dir."""
    out = tmp_path_factory.mktemp("logits")
    cache = {}

    def get(model: Path, ctx: int = CTX, chunks: int = CHUNKS, matmul: str | None = None):
        """matmul: None for the default pass, "f32" for the f32 reference (SMOLQ_EVAL_MATMUL)."""
        key = (str(model), ctx, chunks, matmul)
        if key not in cache:
            npy = out / f"{len(cache)}.npy"
            env = dict(os.environ)
            env.pop("SMOLQ_EVAL_MATMUL", None)
            if matmul:
                env["SMOLQ_EVAL_MATMUL"] = matmul
            proc = run_smolq("perplexity", model, "--tokens", ids_file, "--ctx", ctx, "--chunks", chunks,
                             "--threads", 2, "--dump-logits", npy, "--json", env=env)
            cache[key] = (np.load(npy), json.loads(proc.stdout))
            npy.unlink()
        return cache[key]
    return get


def llama_chunks(llama_model, llama_logits, model_path, ids, ctx=CTX, **kw) -> np.ndarray:
    """llama.cpp's logits for each chunk evaluated from an empty cache."""
    m = llama_model(model_path, n_ctx=ctx, **kw)
    return np.concatenate([llama_logits(m, ids[c: c + ctx]) for c in range(0, len(ids), ctx)])


@pytest.fixture(scope="module")
def f32_gguf(run_smolq, real_ckpt, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("gguf") / "smollm2-f32.gguf"
    run_smolq("convert", real_ckpt, "-o", p, "--outtype", "f32", "-q")
    return p


# --- tests -------------------------------------------------------------------------------

def test_f32_gguf_matches_llama_cpp_to_float_noise(f32_gguf, ids, smolq_logits, llama_model, llama_logits):
    ours, rep = smolq_logits(f32_gguf)
    theirs = llama_chunks(llama_model, llama_logits, f32_gguf, ids, type_k=GGML_F32, type_v=GGML_F32)
    c = compare(ours, theirs)
    print("F32 GGUF vs llama.cpp (F32 KV):", c)
    assert c["argmax_agree"] >= 0.999, c
    assert c["max_abs"] < 2e-3, c
    ppl_ours, ppl_theirs = ppl_protocol(ours, ids, CTX), ppl_protocol(theirs, ids, CTX)
    assert rep["ppl"] == pytest.approx(ppl_ours, rel=1e-6)  # the CLI scores what it dumps
    assert rep["count"] == CHUNKS * (CTX - CTX // 2 - 1)
    assert ppl_ours == pytest.approx(ppl_theirs, rel=1e-4)


def test_hf_checkpoint_equals_its_f32_gguf(real_ckpt, f32_gguf, smolq_logits):
    # Same values (bf16 -> f32 is exact), Q/K rows permuted by the converter in one case and by
    # the loader's row order in the other: the dot products, hence logits, are bit-identical.
    hf, _ = smolq_logits(real_ckpt)
    gg, _ = smolq_logits(f32_gguf)
    assert np.array_equal(hf, gg)


def test_f16_gguf_agrees_with_llama_cpp(run_smolq, real_ckpt, ids, smolq_logits, llama_model, llama_logits,
                                       tmp_path):
    f16 = tmp_path / "smollm2-f16.gguf"
    run_smolq("convert", real_ckpt, "-o", f16, "--outtype", "f16", "-q")
    ours, rep = smolq_logits(f16)
    theirs = llama_chunks(llama_model, llama_logits, f16, ids)
    c = compare(ours, theirs)
    print("F16 GGUF vs llama.cpp:", c)
    assert c["argmax_agree"] >= 0.99, c
    assert c["max_abs"] < 0.5 and c["mean_abs"] < 0.02, c
    assert rep["ppl"] == pytest.approx(ppl_protocol(theirs, ids, CTX), rel=5e-3)


def test_q4_1_gguf_agrees_with_llama_cpp(real_gguf, ids, smolq_logits, llama_model, llama_logits):
    ours, rep = smolq_logits(real_gguf)
    theirs = llama_chunks(llama_model, llama_logits, real_gguf, ids)
    c = compare(ours, theirs)
    print("Q4_1 GGUF vs llama.cpp:", c, "PPL", rep["ppl"], ppl_protocol(theirs, ids, CTX))
    assert c["argmax_agree"] >= 0.95, c
    assert c["mean_abs"] < 0.25, c
    # llama.cpp's 8-bit activations move its perplexity (see the next test): on this file it sits
    # 0.4-2.5% away from the exact value, in either direction depending on the text; 5% bound.
    assert rep["ppl"] == pytest.approx(ppl_protocol(theirs, ids, CTX), rel=5e-2)


def test_q4_1_gguf_is_exact_where_llama_cpp_rounds(real_gguf, real_gguf_reader, ids, smolq_logits, llama_model,
                                                  llama_logits):
    """float64 numpy evaluation of the Q4_1 file's dequantized weights (llama.cpp layout) on the
    first tokens: smolq is within float noise of it; llama.cpp, with 8-bit activations, is not."""
    import gguf
    sys.path.insert(0, str(Path(os.environ.get("SMOLQ_SOURCE_DIR", ".")) / "scripts"))
    from fixtures.numpy_llama import rope_interleaved
    r = real_gguf_reader
    W = {}
    for t in r.tensors:
        a = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float64)
        W[t.name] = a.reshape([int(x) for x in reversed(t.shape)]) if len(t.shape) > 1 else a.reshape(-1)
    T, E, H, KV, hd, eps, theta = 48, 576, 9, 3, 64, 1e-5, 100000.0
    toks = ids[:T]
    pos = np.arange(T)
    rms = lambda x, w: x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w  # noqa: E731
    causal = np.triu(np.full((T, T), -np.inf), k=1)
    x = W["token_embd.weight"][toks]
    for i in range(30):
        p = f"blk.{i}."
        h = rms(x, W[p + "attn_norm.weight"])
        q = rope_interleaved((h @ W[p + "attn_q.weight"].T).reshape(T, H, hd), pos, theta).astype(np.float64)
        k = rope_interleaved((h @ W[p + "attn_k.weight"].T).reshape(T, KV, hd), pos, theta).astype(np.float64)
        v = (h @ W[p + "attn_v.weight"].T).reshape(T, KV, hd)
        k, v = np.repeat(k, H // KV, axis=1), np.repeat(v, H // KV, axis=1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + causal
        pr = np.exp(s - s.max(-1, keepdims=True))
        pr /= pr.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", pr, v).reshape(T, E) @ W[p + "attn_output.weight"].T
        h = rms(x, W[p + "ffn_norm.weight"])
        g, u = h @ W[p + "ffn_gate.weight"].T, h @ W[p + "ffn_up.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "ffn_down.weight"].T
    exact = rms(x, W["output_norm.weight"]) @ W["token_embd.weight"].T
    ours, _ = smolq_logits(real_gguf, matmul="f32")  # the f32 reference pass (docs/evaluator.md)
    dflt, _ = smolq_logits(real_gguf)  # the default pass: int16 activations on AVX-512 VNNI CPUs
    theirs = llama_chunks(llama_model, llama_logits, real_gguf, ids[:T], ctx=64)
    err_ours = float(np.abs(ours[:T] - exact).max())
    err_theirs = float(np.abs(theirs - exact).mean())
    err_dflt, mean_dflt = float(np.abs(dflt[:T] - exact).max()), float(np.abs(dflt[:T] - exact).mean())
    print(f"vs float64: smolq reference max |d| {err_ours:.2e}, default pass max {err_dflt:.2e} "
          f"mean {mean_dflt:.2e}, llama.cpp mean |d| {err_theirs:.3f}")
    assert err_ours < 1e-3
    assert err_theirs > 10 * err_ours  # the differences above are llama.cpp's rounding
    # The default pass's int16 activations (docs/evaluator.md: max ~1e-2, mean ~1e-3 on this
    # model) stay far closer to the exact values than llama.cpp's 8-bit ones.
    assert err_dflt < 5e-2 and err_theirs > 20 * mean_dflt


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_K"])
def test_quantized_synthetic_agrees_with_llama_cpp(qtype, run_smolq, synthetic, ids, ids_file, llama_model,
                                                    llama_logits, tmp_path):
    """A 256-aligned synthetic model (every tensor takes the type natively) quantized by smolq."""
    src = synthetic("aligned256-bf16")
    gguf_path = tmp_path / f"aligned256-{qtype}.gguf"
    run_smolq("convert", src, "-o", gguf_path, "--type", qtype, "--pure", "-q")
    npy = tmp_path / "logits.npy"
    run_smolq("perplexity", gguf_path, "--tokens", ids_file, "--ctx", CTX, "--chunks", CHUNKS, "--threads", 2,
              "--dump-logits", npy, "--json")
    ours = np.load(npy)
    theirs = llama_chunks(llama_model, llama_logits, gguf_path, ids)
    c = compare(ours, theirs)
    spread = float(theirs.std())
    print(f"{qtype} synthetic vs llama.cpp:", c, "logit std", spread)
    # Random weights give flat distributions (logit std ~0.3 over 49,152 tokens), so the top two
    # logits are often closer than llama.cpp's activation rounding: argmax agreement is loose,
    # the logits themselves are held to 2% (mean) and 15% (max) of their spread.
    assert c["argmax_agree"] >= 0.9, c
    assert c["mean_abs"] < 0.02 * spread and c["max_abs"] < 0.15 * spread, c
    assert ppl_protocol(ours, ids, CTX) == pytest.approx(ppl_protocol(theirs, ids, CTX), rel=5e-3)


def test_text_through_smolq_tokenizer_gives_the_same_ids(run_smolq, real_gguf, real_ckpt, wikitext, tmp_path):
    """`-f TEXT` (smolq's tokenizer from the GGUF metadata) scores exactly what `--tokens` with
    HF tokenizers' ids scores."""
    from tokenizers import Tokenizer
    text = wikitext(600, offset=20000)
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    ids = Tokenizer.from_file(str(real_ckpt / "tokenizer.json")).encode(text, add_special_tokens=False).ids
    (tmp_path / "ids.txt").write_text(" ".join(map(str, ids)))
    args = ["--ctx", 64, "--chunks", 1, "--threads", 2, "--json"]
    a = json.loads(run_smolq("perplexity", real_gguf, "-f", tmp_path / "t.txt", *args).stdout)
    b = json.loads(run_smolq("perplexity", real_gguf, "--tokens", tmp_path / "ids.txt", *args).stdout)
    assert a["ppl"] == b["ppl"]


def test_kl_mode_matches_its_two_perplexity_runs(run_smolq, synthetic, ids, ids_file, tmp_path):
    """KL mode (base = the bf16 HF checkpoint, quant = its Q4_0 GGUF) against the two models'
    separate runs and statistics recomputed here from their dumped logits."""
    base = synthetic("aligned256-bf16")
    quant = tmp_path / "q4_0.gguf"
    run_smolq("convert", base, "-o", quant, "--type", "Q4_0", "--pure", "-q")
    common = ["--tokens", ids_file, "--ctx", CTX, "--chunks", CHUNKS, "--threads", 2]
    rep = json.loads(run_smolq("perplexity", quant, "--base", base, *common, "--json").stdout)
    runs = {}
    for name, model in (("q", quant), ("b", base)):
        npy = tmp_path / f"{name}.npy"
        out = run_smolq("perplexity", model, *common, "--dump-logits", npy, "--json").stdout
        runs[name] = (np.load(npy), json.loads(out))
    (q, q_rep), (b, b_rep) = runs["q"], runs["b"]
    assert rep["count"] == q_rep["count"]
    assert rep["ppl_q"]["value"] == pytest.approx(q_rep["ppl"], rel=1e-8)
    assert rep["ppl_base"]["value"] == pytest.approx(b_rep["ppl"], rel=1e-8)
    kl, same, dp = [], [], []
    for c in range(CHUNKS):
        for j in range(CTX // 2, CTX - 1):
            lb, lq = b[c * CTX + j].astype(np.float64), q[c * CTX + j].astype(np.float64)
            pb = lb - lb.max() - np.log(np.exp(lb - lb.max()).sum())
            pq = lq - lq.max() - np.log(np.exp(lq - lq.max()).sum())
            kl.append(float((np.exp(pb) * (pb - pq)).sum()))
            same.append(lb.argmax() == lq.argmax())
            t = ids[c * CTX + j + 1]
            dp.append(np.exp(pq[t]) - np.exp(pb[t]))
    assert rep["kld"]["value"] == pytest.approx(np.mean(kl), rel=1e-3)
    assert rep["kld_percentiles"]["max"] == pytest.approx(max(kl), rel=1e-3)
    assert rep["same_top_p"]["value"] == pytest.approx(np.mean(same), rel=1e-8)
    assert rep["p_diff"]["value"] == pytest.approx(np.mean(dp), rel=1e-3, abs=1e-9)
    assert rep["kld"]["value"] > 0
    assert rep["rms_logit_drift"] > 0


def test_perplexity_matches_llama_perplexity_tool(run_smolq, f32_gguf, wikitext, tmp_path):
    """Number for number against llama.cpp's own llama-perplexity (built by
    scripts/build_llama_tools.sh) on the same file and text: to 3e-4 on the F32 GGUF with an F32
    KV cache, where llama.cpp is exact too. (On quantized files llama.cpp's 8-bit activations move
    its perplexity by ~1-2%, see the Q4_1 tests above.)"""
    import re
    import subprocess
    tool = Path(os.environ.get("SMOLQ_SOURCE_DIR", ".")) / "build" / "llama-tools" / "bin" / "llama-perplexity"
    if not tool.is_file():
        pytest.skip("llama-perplexity not built (scripts/build_llama_tools.sh)")
    text = tmp_path / "wiki.txt"
    text.write_text(wikitext(1500), encoding="utf-8")
    final = re.compile(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)")
    for model, kv, rel in ((f32_gguf, ["-ctk", "f32", "-ctv", "f32"], 3e-4),):
        proc = subprocess.run([str(tool), "-m", str(model), "-f", str(text), "-c", str(CTX), "--chunks", "3",
                               "-t", "2", "-b", str(CTX), *kv], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        m = final.search(proc.stdout + proc.stderr)
        assert m, proc.stderr[-3000:]
        out = run_smolq("perplexity", model, "-f", text, "--ctx", CTX, "--chunks", 3, "--threads", 2).stdout
        m2 = final.search(out)
        assert m2, out
        print(model.name, "llama-perplexity", m.group(0), "| smolq", m2.group(0))
        assert float(m2.group(1)) == pytest.approx(float(m.group(1)), rel=rel)
        assert float(m2.group(2)) == pytest.approx(float(m.group(2)), rel=max(rel, 1e-3) * 10)


# --- architecture features on small synthetic checkpoints ----------------------------------

def _with_metadata(src: Path, dst: Path, extra: dict) -> None:
    """Copy a GGUF, adding or replacing metadata keys ({key: (value, GGUFValueType)})."""
    import gguf
    r = gguf.GGUFReader(str(src))
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(dst), arch)
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name in ("general.architecture", *extra):
            continue
        sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub)
    for k, (v, t) in extra.items():
        w.add_key_value(k, v, t)
    for t in r.tensors:
        w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _f32_gguf_and_compare(run_smolq, hf_dir, ids, tmp_path, llama_model, llama_logits, name, extra_meta=None):
    """Convert `hf_dir` to F32 GGUF (optionally adding metadata); return (smolq on HF dir, smolq
    on GGUF, llama.cpp on GGUF)."""
    gguf_path = tmp_path / f"{name}.gguf"
    run_smolq("convert", hf_dir, "-o", gguf_path, "--outtype", "f32", "-q")
    if extra_meta:
        plain = tmp_path / f"{name}-plain.gguf"
        gguf_path.rename(plain)
        _with_metadata(plain, gguf_path, extra_meta)
    ids_file = tmp_path / f"{name}.ids"
    ids_file.write_text(" ".join(map(str, ids)))
    ctx = len(ids)

    def ours(model):
        npy = tmp_path / f"{name}.npy"
        run_smolq("perplexity", model, "--tokens", ids_file, "--ctx", ctx // 2, "--chunks", 2, "--threads", 2,
                  "--add-bos", "no", "--dump-logits", npy)
        return np.load(npy)
    theirs = llama_chunks(llama_model, llama_logits, gguf_path, ids, ctx=ctx // 2, type_k=GGML_F32, type_v=GGML_F32)
    return ours(hf_dir), ours(gguf_path), theirs


def test_smollm3_nope_layers(run_smolq, synthetic, hf_forward, load_checkpoint, llama_model, llama_logits, tmp_path):
    """SmolLM3 skips RoPE on every 4th layer: smolq agrees with the numpy transformers-style
    reference (from the HF checkpoint) and with llama.cpp (arch smollm3, from the GGUF)."""
    src = synthetic("smollm3-tiny-bf16")
    cfg = json.loads((src / "config.json").read_text())
    rng = np.random.default_rng(5)
    ids = [int(t) for t in rng.integers(0, cfg["vocab_size"], size=128)]
    hf, gg, theirs = _f32_gguf_and_compare(run_smolq, src, ids, tmp_path, llama_model, llama_logits, "smollm3")
    ref = np.concatenate([hf_forward(load_checkpoint(src), cfg, ids[:64]), hf_forward(load_checkpoint(src), cfg, ids[64:])])
    scale = float(np.abs(ref).max())
    assert np.abs(hf - ref).max() < 1e-4 * max(1.0, scale)
    assert np.array_equal(hf, gg)
    assert np.abs(gg - theirs).max() < 1e-3 * max(1.0, scale)


@pytest.mark.parametrize("scaling", [
    {"rope_type": "linear", "factor": 2.0},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 64},
], ids=["linear", "yarn", "llama3"])
def test_rope_scaling_matches_llama_cpp(scaling, run_smolq, synthetic, llama_model, llama_logits, tmp_path):
    """RoPE scaling from config.json (HF path) and from GGUF metadata / rope_freqs.weight (GGUF
    path) against llama.cpp. The original context is set small so every variant's scaled band is
    exercised within 256 positions."""
    import shutil
    import gguf
    src = synthetic("smollm2-tiny-f32")
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["rope_scaling"] = scaling
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    extra = None
    if scaling["rope_type"] == "yarn":
        # `smolq convert` does not write YaRN yet: convert the unscaled model (config saved
        # aside) and add the keys llama.cpp's converter writes.
        shutil.copy(dst / "config.json", tmp_path / "scaled.json")
        shutil.copy(src / "config.json", dst / "config.json")
        F32, U32, STR = gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.UINT32, gguf.GGUFValueType.STRING
        extra = {"llama.rope.scaling.type": ("yarn", STR), "llama.rope.scaling.factor": (scaling["factor"], F32),
                 "llama.rope.scaling.original_context_length": (scaling["original_max_position_embeddings"], U32)}
    rope_ids = [int(t) for t in np.random.default_rng(11).integers(0, cfg["vocab_size"], size=256)]
    hf, gg, theirs = _f32_gguf_and_compare(run_smolq, dst, rope_ids, tmp_path, llama_model, llama_logits,
                                          scaling["rope_type"], extra)
    ids_file = tmp_path / f"{scaling['rope_type']}.ids"

    def ours(model):
        npy = tmp_path / "o.npy"
        run_smolq("perplexity", model, "--tokens", ids_file, "--ctx", 128, "--chunks", 2, "--threads", 2,
                  "--add-bos", "no", "--dump-logits", npy)
        return np.load(npy)
    if extra:
        shutil.copy(tmp_path / "scaled.json", dst / "config.json")
        hf = ours(dst)  # now with the scaled config
    err = float(np.abs(gg - theirs).max())
    effect = float(np.abs(ours(src) - gg).max())  # how far the unscaled model's logits are
    print(scaling["rope_type"], "max |smolq - llama.cpp|", err, "scaling moves logits by", effect)
    assert np.abs(hf - gg).max() < 1e-4
    assert err < 2e-3
    assert effect > 5 * err  # the scaling is really applied, and matched
