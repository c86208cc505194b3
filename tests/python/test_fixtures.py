"""Checks of the generated test fixtures themselves (scripts/make_fixtures.py), and that the
Python-side clients (gguf-py, tokenizers, llama-cpp-python) work on this machine.

The real SmolLM2 checkpoint must be a faithful, working rebuild of the Q4_1 GGUF: every tensor
equals the GGUF's dequantised tensor (after the exact Q/K row un-permutation and bf16 rounding),
and a numpy forward pass over the rebuilt Hugging Face checkpoint agrees with llama.cpp running
the original GGUF.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import SCRIPTS_DIR
from fixtures import common, numpy_llama, real_smollm2, synthetic as synth

# "The capital of France is" in the SmolLM2 tokenizer (shared/assets/README.md).
PARIS_PROMPT = "The capital of France is"
PARIS_TOKENS = [504, 3575, 282, 4649, 314]
# Public record of the original SmolLM2-135M model.safetensors (bf16, same tensor set):
# a rebuild with exactly the same names, shapes and dtype has exactly this size.
ORIGINAL_SAFETENSORS_BYTES = 269_060_552


# --- llama-cpp-python and the source GGUF --------------------------------------------------

def test_llama_cpp_generates_paris(real_llama):
    llm = real_llama
    llm.reset()
    assert llm.tokenize(PARIS_PROMPT.encode(), add_bos=False) == PARIS_TOKENS
    out = llm.create_completion(PARIS_PROMPT, max_tokens=5, temperature=0.0)
    text = out["choices"][0]["text"]
    assert " Paris" in text, f"greedy continuation was {text!r}"


# --- the real checkpoint --------------------------------------------------------------------

def test_real_checkpoint_layout(real_ckpt):
    cfg = json.loads((real_ckpt / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]) == (30, 576, 1536)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (9, 3)
    header, _ = common.read_safetensors_header(real_ckpt / "model.safetensors")
    assert header.pop("__metadata__") == {"format": "pt"}
    hd = 576 // 9
    expect = {"model.embed_tokens.weight": [49152, 576], "model.norm.weight": [576]}
    for i in range(30):
        p = f"model.layers.{i}."
        expect.update({p + "self_attn.q_proj.weight": [9 * hd, 576],
                       p + "self_attn.k_proj.weight": [3 * hd, 576],
                       p + "self_attn.v_proj.weight": [3 * hd, 576],
                       p + "self_attn.o_proj.weight": [576, 9 * hd],
                       p + "mlp.gate_proj.weight": [1536, 576],
                       p + "mlp.up_proj.weight": [1536, 576],
                       p + "mlp.down_proj.weight": [576, 1536],
                       p + "input_layernorm.weight": [576],
                       p + "post_attention_layernorm.weight": [576]})
    assert {n: h["shape"] for n, h in header.items()} == expect  # tied: no lm_head.weight
    assert {h["dtype"] for h in header.values()} == {"BF16"}
    assert (real_ckpt / "model.safetensors").stat().st_size == ORIGINAL_SAFETENSORS_BYTES


def test_real_checkpoint_side_files(real_ckpt, real_gguf, real_gguf_reader):
    for fname in ("config.json", "tokenizer.json", "special_tokens_map.json", "LICENSE"):
        assert (real_ckpt / fname).read_bytes() == (common.SMOLLM2_ASSETS / fname).read_bytes()
    reader = real_gguf_reader
    tok_cfg = json.loads((real_ckpt / "tokenizer_config.json").read_text())
    template = reader.get_field("tokenizer.chat_template").contents()
    assert tok_cfg["chat_template"] == template and "<|im_start|>" in template
    shared = json.loads((common.SMOLLM2_ASSETS / "tokenizer_config.json").read_text())
    assert {k: v for k, v in tok_cfg.items() if k != "chat_template"} == shared
    info = json.loads((real_ckpt / "fixture.json").read_text())
    assert info["source_gguf"] == str(real_gguf)
    assert info["source_gguf_sha256"] == common.sha256_file(real_gguf)
    gen = json.loads((real_ckpt / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"]) == (1, 2)


def test_every_tensor_equals_the_dequantised_gguf(real_ckpt, real_gguf_reader):
    """Re-permuting q/k and rounding the GGUF's dequantised values to bf16 reproduces every
    stored tensor bit for bit; q/k are really permuted (the un-permutation is not a no-op)."""
    import gguf
    ckpt = common.read_checkpoint(real_ckpt, as_f32=False)  # bf16 bit patterns
    seen = set()
    for t in real_gguf_reader.tensors:
        name = real_smollm2.hf_name(t.name)
        ref = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        stored = ckpt[name]
        if t.name.endswith(("attn_q.weight", "attn_k.weight")):
            n = 9 if "attn_q" in t.name else 3
            assert not np.array_equal(stored, common.f32_to_bf16_bits(ref)), name
            stored = common.permute_qk(stored, n)
        np.testing.assert_array_equal(stored, common.f32_to_bf16_bits(ref), err_msg=name)
        seen.add(name)
    assert seen == set(ckpt)


def test_qk_permutation_round_trips():
    rng = np.random.default_rng(0)
    for rows, n_head in ((576, 9), (192, 3), (64, 1), (96, 6)):
        w = rng.standard_normal((rows, 7)).astype(np.float32)
        assert np.array_equal(common.unpermute_qk(common.permute_qk(w, n_head), n_head), w)
        assert np.array_equal(common.permute_qk(common.unpermute_qk(w, n_head), n_head), w)
        assert not np.array_equal(common.permute_qk(w, n_head), w)


def test_permutation_direction_against_llama2c_weights():
    """Independent check of the direction: the shared stories260K model exists both in the
    original Meta/llama2.c layout (interleaved RoPE, what llama.cpp stores) and as a derived
    Hugging Face checkpoint (rotate-half). permute_qk must map the latter onto the former."""
    root = common.ASSETS_DIR / "stories260K"
    hf = common.read_checkpoint(root / "hf")
    raw = np.fromfile(root / "stories260K.bin", dtype=np.int32, count=7)
    dim, _, n_layers, n_head, n_kv, vocab, _ = (int(v) for v in raw)
    kv_dim = dim * n_kv // n_head
    f = np.fromfile(root / "stories260K.bin", dtype=np.float32, offset=7 * 4)
    # llama2.c order: token embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim],
    # wk [L, kv_dim, dim], ...
    off = abs(vocab) * dim + n_layers * dim
    wq = f[off: off + n_layers * dim * dim].reshape(n_layers, dim, dim)
    off += n_layers * dim * dim
    wk = f[off: off + n_layers * kv_dim * dim].reshape(n_layers, kv_dim, dim)
    for i in range(n_layers):
        p = f"model.layers.{i}.self_attn."
        assert np.array_equal(common.permute_qk(hf[p + "q_proj.weight"], n_head), wq[i])
        assert np.array_equal(common.permute_qk(hf[p + "k_proj.weight"], n_kv), wk[i])


def test_permutation_turns_rotate_half_rope_into_interleaved_rope():
    rng = np.random.default_rng(1)
    T, n_head, hd = 5, 3, 16
    x = rng.standard_normal((T, n_head * hd)).astype(np.float32)   # rows of a q projection
    pos = np.arange(T)
    hf_rot = numpy_llama.rope_rotate_half(x.reshape(T, n_head, hd), pos, 10000.0)
    # permute_qk works on rows = output features, so transpose the [T, features] activations.
    perm = lambda a: common.permute_qk(a.reshape(T, -1).T, n_head).T.reshape(T, n_head, hd)  # noqa: E731
    inter = numpy_llama.rope_interleaved(perm(x), pos, 10000.0)
    np.testing.assert_allclose(perm(hf_rot), inter, rtol=1e-5, atol=1e-6)


def test_rebuilt_checkpoint_agrees_with_llama_cpp(real_ckpt, real_llama, llama_logits):
    """The rebuilt HF checkpoint is a working model: an HF-semantics numpy forward pass gives
    the same predictions as llama.cpp on the source Q4_1 GGUF (which computes with Q4_1
    weights and 8-bit activations, hence a small tolerance)."""
    cfg = json.loads((real_ckpt / "config.json").read_text())
    ours = numpy_llama.forward(common.read_checkpoint(real_ckpt), cfg, PARIS_TOKENS)
    ref = llama_logits(real_llama, PARIS_TOKENS)
    assert ours.shape == ref.shape == (len(PARIS_TOKENS), 49152)
    assert np.array_equal(ours.argmax(-1), ref.argmax(-1))
    for t in range(len(PARIS_TOKENS)):
        assert np.corrcoef(ours[t], ref[t])[0, 1] > 0.99

    def log_softmax(z):
        z = z.astype(np.float64) - z.max()
        return z - np.log(np.exp(z).sum())
    p_ref, p_ours = log_softmax(ref[-1]), log_softmax(ours[-1])
    kl = float(np.sum(np.exp(p_ref) * (p_ref - p_ours)))
    assert kl < 0.02, f"KL(llama.cpp || rebuilt) = {kl}"
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(real_ckpt / "tokenizer.json"))
    assert tok.encode(PARIS_PROMPT).ids == PARIS_TOKENS
    assert tok.decode([int(ours[-1].argmax())]) == " Paris"


# --- synthetic checkpoints -----------------------------------------------------------------

SYNTHETIC_NAMES = [s.name for s in synth.SYNTHETICS]


@pytest.mark.parametrize("name", SYNTHETIC_NAMES)
def test_synthetic_checkpoint_is_consistent(name, synthetic):
    from tokenizers import Tokenizer
    folder = synthetic(name)
    spec = synth.BY_NAME[name]
    cfg = json.loads((folder / "config.json").read_text())
    tensors = common.read_checkpoint(folder, as_f32=False)
    # Every tensor's shape follows from config.json alone.
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nq, nkv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    expect = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    if not cfg["tie_word_embeddings"]:
        expect["lm_head.weight"] = (v, h)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        expect.update({p + "self_attn.q_proj.weight": (nq, h), p + "self_attn.k_proj.weight": (nkv, h),
                       p + "self_attn.v_proj.weight": (nkv, h), p + "self_attn.o_proj.weight": (h, nq),
                       p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h),
                       p + "mlp.down_proj.weight": (h, f), p + "input_layernorm.weight": (h,),
                       p + "post_attention_layernorm.weight": (h,)})
    assert {n: a.shape for n, a in tensors.items()} == expect
    # Stored dtype = config's torch_dtype = the variant's tag, in every file.
    files = sorted(folder.glob("*.safetensors"))
    for path in files:
        header, _ = common.read_safetensors_header(path)
        assert header.pop("__metadata__") == {"format": "pt"}
        assert {x["dtype"] for x in header.values()} == {common.HEADER_DTYPE[spec.dtype]}
    assert cfg["torch_dtype"] == common.TORCH_DTYPE[spec.dtype]
    # The tokenizer has exactly vocab_size tokens and knows the config's special ids.
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert tok.get_vocab_size(with_added_tokens=True) == v
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        assert tok.id_to_token(cfg[key]) is not None
    tok_cfg = json.loads((folder / "tokenizer_config.json").read_text())
    assert tok.token_to_id(tok_cfg["eos_token"]) == cfg["eos_token_id"]
    assert ("chat_template" in tok_cfg) == (spec.shape.tokenizer != "smollm2" or spec.shape.chat_template)
    # Structural features kept from the real families.
    assert cfg["num_attention_heads"] % cfg["num_key_value_heads"] == 0
    assert cfg["num_attention_heads"] > cfg["num_key_value_heads"]  # GQA
    if spec.shape.family == "smollm3":
        assert cfg["architectures"] == ["SmolLM3ForCausalLM"] and cfg["model_type"] == "smollm3"
        assert cfg["no_rope_layers"] == [0 if (i + 1) % 4 == 0 else 1
                                         for i in range(cfg["num_hidden_layers"])]
        assert 0 in cfg["no_rope_layers"]
    if name.startswith("aligned256"):
        assert h % 256 == 0 and f % 256 == 0 and nq % 256 == 0 and not cfg["tie_word_embeddings"]
    # Shard layout.
    index = folder / "model.safetensors.index.json"
    assert index.exists() == spec.sharded
    if spec.sharded:
        idx = json.loads(index.read_text())
        assert sorted(idx["weight_map"]) == sorted(expect)
        assert set(idx["weight_map"].values()) == {p.name for p in files}
        assert all(re.fullmatch(r"model-0000[12]-of-00002\.safetensors", p.name) for p in files)
        for path in files:
            header, _ = common.read_safetensors_header(path)
            assert {n for n in header if n != "__metadata__"} == \
                {n for n, s in idx["weight_map"].items() if s == path.name}
        assert idx["metadata"]["total_size"] == sum(a.nbytes for a in tensors.values())
        # One layer is split across the two shards: only the index says where things are.
        split = {n.split(".")[2] for n, s in idx["weight_map"].items()
                 if s.startswith("model-00001") and n.startswith("model.layers.")} & \
                {n.split(".")[2] for n, s in idx["weight_map"].items()
                 if s.startswith("model-00002") and n.startswith("model.layers.")}
        assert len(split) == 1
    else:
        assert [p.name for p in files] == ["model.safetensors"]


def test_dtype_variants_hold_the_same_values(synthetic):
    """smollm2-tiny in f32, f16, bf16 and sharded bf16 are one set of weights: f16 = f32 cast
    to half, bf16 = f32 rounded to nearest even, sharded = single-file, bit for bit."""
    f32 = common.read_checkpoint(synthetic("smollm2-tiny-f32"))
    f16 = common.read_checkpoint(synthetic("smollm2-tiny-f16"), as_f32=False)
    bf16 = common.read_checkpoint(synthetic("smollm2-tiny-bf16"), as_f32=False)
    bf16_sh = common.read_checkpoint(synthetic("smollm2-tiny-bf16-sharded"), as_f32=False)
    assert set(f32) == set(f16) == set(bf16) == set(bf16_sh)
    for n, w in f32.items():
        assert np.array_equal(f16[n], w.astype(np.float16)), n
        assert np.array_equal(bf16[n], common.f32_to_bf16_bits(w)), n
        assert np.array_equal(bf16_sh[n], bf16[n]), n
    # ...and the rounding is not a truncation (some value must round up).
    w = f32["model.embed_tokens.weight"]
    assert not np.array_equal(bf16["model.embed_tokens.weight"],
                              (w.view(np.uint32) >> 16).astype(np.uint16))


def test_llama3_style_tokenizer(synthetic, wikitext):
    from tokenizers import Tokenizer
    folder = synthetic("smollm3-tiny-bf16")
    tj = json.loads((folder / "tokenizer.json").read_text())
    pre = tj["pre_tokenizer"]["pretokenizers"]
    assert [p["type"] for p in pre] == ["Split", "ByteLevel"]
    assert tj["model"]["type"] == "BPE" and tj["model"]["ignore_merges"] is True
    assert [t["content"] for t in tj["added_tokens"]] == \
        ["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"]
    assert [t["id"] for t in tj["added_tokens"]] == [1020, 1021, 1022, 1023]
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    text = wikitext(3000)  # test split: text the tokenizer was not trained on
    enc = tok.encode(text)
    assert tok.decode(enc.ids) == text
    assert len(enc.ids) < 0.5 * len(text.encode())  # it learned real merges
    assert tok.encode("<|im_start|>user").ids[0] == 1022


def test_reference_forward_honours_nope_layers(synthetic, hf_forward):
    """The numpy reference on smollm3-tiny: NoPE layers change the output, and a NoPE layer
    cannot tell the order of earlier tokens (in the first layer, keys and values depend on the
    token alone, so causal attention without positions is order-blind over the prefix), while
    a RoPE layer can."""
    folder = synthetic("smollm3-tiny-bf16")
    cfg = json.loads((folder / "config.json").read_text())
    w = common.read_checkpoint(folder)
    toks, swapped = [5, 300, 17, 900, 42], [300, 5, 17, 900, 42]
    real = hf_forward(w, cfg, toks)
    assert np.all(np.isfinite(real))
    all_rope = hf_forward(w, {**cfg, "no_rope_layers": [1] * 8}, toks)
    assert not np.allclose(real, all_rope, atol=1e-4)
    no_list = {k: v for k, v in cfg.items() if k != "no_rope_layers"}
    np.testing.assert_array_equal(hf_forward(w, no_list, toks), real)  # derived from interval
    nope = {**cfg, "no_rope_layers": [0] * 8}
    np.testing.assert_allclose(hf_forward(w, nope, toks, n_layers=1)[-1],
                               hf_forward(w, nope, swapped, n_layers=1)[-1], rtol=1e-4, atol=1e-5)
    assert cfg["no_rope_layers"][0] == 1
    assert not np.allclose(hf_forward(w, cfg, toks, n_layers=1)[-1],
                           hf_forward(w, cfg, swapped, n_layers=1)[-1], atol=1e-4)


# --- the fixture script itself -------------------------------------------------------------

def test_make_fixtures_is_cached_and_deterministic(fixtures_dir, tmp_path):
    script = str(SCRIPTS_DIR / "make_fixtures.py")
    again = subprocess.run([sys.executable, script, "--out", str(fixtures_dir)],
                           capture_output=True, text=True, check=True)
    assert ": 0 built," in again.stdout, again.stdout
    # A fresh build in another folder is byte-identical (tokenizer training included).
    name = "smollm3-tiny-bf16-sharded"
    subprocess.run([sys.executable, script, "--out", str(tmp_path), "--only", name, "-q"],
                   check=True)
    ref_dir = fixtures_dir / name
    files = sorted(p.name for p in ref_dir.iterdir())
    assert files == sorted(p.name for p in (tmp_path / name).iterdir())
    for f in files:
        assert (tmp_path / name / f).read_bytes() == (ref_dir / f).read_bytes(), f
