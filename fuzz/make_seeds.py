#!/usr/bin/env python3
"""Builds the fuzz seed corpora in fuzz/corpus/<target>/ from real files, kept small.

Run from the repository root with the project venv (numpy, gguf, safetensors):
    .venv/bin/python fuzz/make_seeds.py

Sources (all real, cut down so one fuzz run stays fast):
  - the SmolLM2-135M-Instruct config.json / tokenizer.json / tokenizer_config.json in
    ../shared/assets/smollm2-135m-instruct, and the config.json files in testdata/configs;
  - a sub-vocabulary of that tokenizer: its 256 byte tokens, every merge (in rank order) whose
    two sides are already in the vocabulary, up to kMerges of them, and its added tokens;
  - the Llama-3-style 1k tokenizer of the fixtures (fuzz/data/llama3-style-1k.tokenizer.json);
  - the tensor names and dtypes of stories260K/hf/model.safetensors with tiny shapes;
  - GGUF files written with gguf-py (a writer independent of smolq's), with llama.cpp's key
    names, a mini tokenizer and one small tensor per common ggml type; imatrix files in
    both of llama.cpp's layouts; WikiText-2 text for the encoder.
The output is deterministic; existing seeds of the same name are overwritten, others (e.g.
inputs libFuzzer added to a corpus and someone chose to keep) are left alone.
"""
import json
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "assets")
SMOLLM2 = os.path.join(SHARED, "smollm2-135m-instruct")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
SEP = b"\n#@smolq-part@#\n"  # fuzz_support.h kPartSeparator
kMerges = 120


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# --- tokenizers -----------------------------------------------------------------------------

def mini_tokenizer(tj, n_merges=kMerges):
    """A consistent sub-tokenizer: byte tokens, the first merges closed over them, added tokens."""
    vocab = tj["model"]["vocab"]
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    keep = {t for t, i in by_id if len(t) == 1}  # GPT-2 byte-level alphabet: 1 char each
    merges = []
    for m in tj["model"]["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in keep and b in keep and a + b in vocab:
            merges.append(m)
            keep.add(a + b)
            if len(merges) >= n_merges:
                break
    ids = sorted(vocab[t] for t in keep)
    renum = {old: new for new, old in enumerate(ids)}
    added = []
    for a in tj.get("added_tokens", []):
        a = dict(a)
        a["id"] = len(ids) + len(added)
        added.append(a)
    out = dict(tj)
    out["model"] = dict(tj["model"])
    out["model"]["vocab"] = {t: renum[vocab[t]] for t in sorted(keep, key=lambda t: vocab[t])}
    out["model"]["merges"] = merges
    out["added_tokens"] = added
    return out


def dumps(o):
    return json.dumps(o, ensure_ascii=False, separators=(",", ":")).encode()


def tokenizer_seeds():
    tj = json.loads(read(os.path.join(SMOLLM2, "tokenizer.json")))
    tc = json.loads(read(os.path.join(SMOLLM2, "tokenizer_config.json")))
    mini = mini_tokenizer(tj)
    # tokenizer_config with content strings naming tokens of the mini vocabulary.
    mini_tc = {k: v for k, v in tc.items() if k != "added_tokens_decoder"}
    mini_tc["chat_template"] = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                                "<|im_end|>\n{% endfor %}")
    variants = {"smollm2_mini": mini}
    # Llama-3 structure (Split regex + ByteLevel without regex, ignore_merges), from fixtures.
    l3 = json.loads(read(os.path.join(ROOT, "fuzz", "data", "llama3-style-1k.tokenizer.json")))
    variants["llama3_mini"] = mini_tokenizer(l3, 60)
    # GPT-2 structure: ByteLevel alone, merges as [a, b] pairs (the newer tokenizer.json form).
    g2 = json.loads(json.dumps(mini))
    g2["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    g2["model"]["merges"] = [m.split(" ", 1) for m in g2["model"]["merges"]]
    g2["post_processor"] = {"type": "TemplateProcessing",
                            "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}},
                                       {"Sequence": {"id": "A", "type_id": 0}}],
                            "pair": [], "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [len(g2["model"]["vocab"]) + 1],
                                                                            "tokens": ["<|im_start|>"]}}}
    variants["gpt2_pairs_template"] = g2
    gen = {"bos_token_id": 1, "eos_token_id": [2, 0], "pad_token_id": 2}
    l3_tc = dict(mini_tc, bos_token="<|begin_of_text|>", eos_token="<|im_end|>", pad_token="<|end_of_text|>",
                 unk_token=None)
    for name, t in variants.items():
        body = dumps(t)
        put("tokenizer_json", name, body)
        put("tokenizer_json", name + "+config", body + SEP + dumps(l3_tc if name.startswith("llama3") else mini_tc))
        put("tokenizer_meta", name, body)
        put("tokenizer_meta", name + "+config+gen",
            body + SEP + dumps(l3_tc if name.startswith("llama3") else mini_tc) + SEP + dumps(gen))
    # The real tokenizer_config.json as the second part (its added_tokens_decoder too).
    put("tokenizer_json", "smollm2_mini+real_config", dumps(mini) + SEP + read(os.path.join(SMOLLM2, "tokenizer_config.json")))
    return mini


def encode_seeds():
    wiki = read(os.path.join(SHARED, "wikitext-2-raw", "wiki.test.raw"))
    texts = {
        "wiki": wiki[1000:1600],
        "chat": b"<|im_start|>system\nYou are a helpful AI assistant named SmolLM<|im_end|>\n<|im_start|>user\n"
                b"What is 12345 + 678?<|im_end|>\n<|endoftext|>",
        "unicode": "caf\u00e9 na\u00efve \u4f60\u597d\u4e16\u754c \u0645\u0631\u062d\u0628\u0627 \U0001F680\U0001F600 "
                   "\u1780\u17b6\u1793\u17cb \u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439 \u00a0\u2003x".encode(),
        "whitespace": b"\n \n\n \t\t \r\n\r\n   a  b\t\tc\n\n\n",
        "contractions": b"I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like tea? We'Ve a'lL",
        "digits": b"3 33 333 3333 33333 3.3 3..3 1,000,000 0x1F 2024-01-01",
        "invalid_utf8": b"ok \xff\xfe \xc0\xaf \xe0\x80\x80 \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82 trunc \xf0\x9f\x98",
        "bytes_all": bytes(range(256)),
    }
    for name, t in texts.items():
        for flags in (0, 3, 4, 6):
            put("tokenizer_encode", f"{name}.f{flags}", bytes([flags]) + t)


# --- JSON configs ---------------------------------------------------------------------------

def config_seeds():
    put("hf_config", "smollm2-135m", read(os.path.join(SMOLLM2, "config.json")))
    cfgdir = os.path.join(ROOT, "testdata", "configs")
    for name in sorted(os.listdir(cfgdir)):
        p = os.path.join(cfgdir, name, "config.json")
        if os.path.exists(p):
            put("hf_config", name, read(p))
    base = json.loads(read(os.path.join(SMOLLM2, "config.json")))
    l3 = dict(base, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
              eos_token_id=[2, 0], head_dim=64)
    put("hf_config", "llama3_rope_scaling", dumps(l3))
    s3 = dict(base, architectures=["SmolLM3ForCausalLM"], model_type="smollm3", num_hidden_layers=8,
              no_rope_layers=[1, 1, 1, 0, 1, 1, 1, 0], rope_scaling={"type": "yarn", "factor": 2.0})
    put("hf_config", "smollm3_no_rope_layers", dumps(s3))
    s3i = dict(base, architectures=None, model_type="smollm3", no_rope_layer_interval=4)
    put("hf_config", "smollm3_interval", dumps(s3i))


# --- safetensors ----------------------------------------------------------------------------

def st_file(tensors, metadata=None):
    """Serialises like the safetensors package: sorted by dtype size desc, then name."""
    hdr = {}
    if metadata is not None:
        hdr["__metadata__"] = metadata
    blobs = []
    off = 0
    for name, (dtype, shape, raw) in tensors.items():
        hdr[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # the package pads the header to 8 bytes with spaces
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def bf16(a):
    return (np.asarray(a, np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()


def safetensors_seeds():
    rng = np.random.default_rng(7)
    # stories260K's real tensor names and dtypes (its hf/ copy), every dimension cut to 4.
    real = read(os.path.join(SHARED, "stories260K", "hf", "model.safetensors"))
    (n,) = struct.unpack("<Q", real[:8])
    hdr = json.loads(real[8:8 + n])
    tensors = {}
    for name, info in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0] if kv[0] != "__metadata__" else -1):
        if name == "__metadata__":
            continue
        shape = [4 for _ in info["shape"]]
        tensors[name] = ("F32", shape, rng.standard_normal(int(np.prod(shape)), dtype=np.float32).tobytes())
    put("safetensors", "stories260k_names_f32", st_file(tensors, {"format": "pt"}))
    mixed = {
        "model.embed_tokens.weight": ("BF16", [8, 4], bf16(rng.standard_normal(32))),
        "model.norm.weight": ("F16", [4], np.ones(4, np.float16).tobytes()),
        "model.layers.0.self_attn.q_proj.weight": ("F32", [2, 4], rng.standard_normal(8, dtype=np.float32).tobytes()),
        "empty": ("F32", [0, 4], b""),
        "scalar": ("F32", [], np.float32(1.5).tobytes()),
    }
    put("safetensors", "mixed_dtypes", st_file(mixed, {"format": "pt"}))
    put("safetensors", "header_only", st_file({}))
    # Index seeds; the fuzz target provides shards "a.w" (F32 [2,2]) and "b.w" (BF16 [3]).
    idx = {"metadata": {"total_size": 22},
           "weight_map": {"a.w": "model-00001-of-00002.safetensors", "b.w": "model-00002-of-00002.safetensors"}}
    put("safetensors_index", "two_shards", dumps(idx))
    put("safetensors_index", "one_shard", dumps({"weight_map": {"a.w": "model-00001-of-00002.safetensors"}}))
    real_idx = os.path.join(ROOT, "testdata", "generated", "smollm2-tiny-bf16-sharded", "model.safetensors.index.json")
    if os.path.exists(real_idx):  # the fixtures' real-layout index (names that our shards lack)
        put("safetensors_index", "fixture_index", read(real_idx))


# --- GGUF and imatrix -----------------------------------------------------------------------

def gguf_bytes(build, arch="llama"):
    import gguf
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.gguf")
        w = gguf.GGUFWriter(p, arch)
        build(w, gguf)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return read(p)


def gguf_seeds(mini):
    rng = np.random.default_rng(11)
    vocab = sorted(mini["model"]["vocab"].items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab] + [a["content"] for a in mini["added_tokens"]]
    types = [1] * len(vocab) + [3] * len(mini["added_tokens"])

    def model(w, gguf):
        w.add_name("SmolLM2 mini seed")
        w.add_context_length(8192)
        w.add_embedding_length(64)
        w.add_block_count(1)
        w.add_feed_forward_length(256)
        w.add_head_count(4)
        w.add_head_count_kv(2)
        w.add_rope_freq_base(100000.0)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_vocab_size(len(tokens))
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("smollm")
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(mini["model"]["merges"])
        w.add_bos_token_id(len(vocab) + 1)
        w.add_eos_token_id(len(vocab) + 2)
        w.add_add_bos_token(False)
        w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
        x = rng.standard_normal((2, 256)).astype(np.float32)
        w.add_tensor("token_embd.weight", x)
        w.add_tensor("output_norm.weight", np.ones(64, np.float32))
        w.add_tensor("blk.0.attn_q.weight", x.astype(np.float16))
        for qt in (gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.Q4_K,
                   gguf.GGMLQuantizationType.Q6_K):
            try:
                q = gguf.quants.quantize(x, qt)
            except NotImplementedError:  # gguf-py lacks this quantizer: random blocks of the right size
                q = rng.integers(0, 256, gguf.quants.quant_shape_to_byte_shape(x.shape, qt), dtype=np.uint8)
            w.add_tensor(f"blk.0.{qt.name.lower()}.weight", q, raw_shape=q.shape, raw_dtype=qt)

    put("gguf", "mini_model", gguf_bytes(model))
    put("gguf_scan", "mini_model", gguf_bytes(model))

    def all_types(w, gguf):
        w.add_uint8("t.u8", 250)
        w.add_int8("t.i8", -100)
        w.add_uint16("t.u16", 65000)
        w.add_int16("t.i16", -32000)
        w.add_uint32("t.u32", 4000000000)
        w.add_int32("t.i32", -2000000000)
        w.add_float32("t.f32", 3.25)
        w.add_bool("t.bool", True)
        w.add_string("t.string", "h\u00e9llo\nworld")
        w.add_uint64("t.u64", 1 << 60)
        w.add_int64("t.i64", -(1 << 60))
        w.add_float64("t.f64", -1e300)
        w.add_array("t.array.str", ["a", "", "ccc"])
        w.add_array("t.array.nested", [[1, 2], [3]])
        w.add_uint32("general.alignment", 64)
        w.data_alignment = 64  # gguf-py pads with its own field, not the key
        w.add_tensor("a", np.arange(64, dtype=np.float32))

    put("gguf", "all_value_types", gguf_bytes(all_types))
    put("gguf_scan", "all_value_types", gguf_bytes(all_types))

    # imatrix, GGUF layout of llama.cpp's tools/imatrix (see formats/imatrix.h).
    def imatrix(w, gguf):
        w.add_type("imatrix")
        w.add_array("imatrix.datasets", ["wiki.test.raw"])
        w.add_uint32("imatrix.chunk_count", 4)
        w.add_uint32("imatrix.chunk_size", 512)
        for name, ncols, nmat in (("blk.0.attn_q.weight", 64, 1), ("blk.0.ffn_down_exps.weight", 32, 2)):
            sums = rng.random((nmat, ncols), dtype=np.float32) * 2048
            counts = np.full((nmat, 1), 2048, np.float32)
            w.add_tensor(name + ".in_sum2", sums if nmat > 1 else sums[0])
            w.add_tensor(name + ".counts", counts if nmat > 1 else counts[0])

    put("imatrix", "gguf_two_entries", imatrix_gguf(imatrix))
    put("gguf", "imatrix", imatrix_gguf(imatrix))
    # Legacy .dat: i32 n; n x {i32 len, name, i32 ncall, i32 nval, f32[nval]}; i32 chunks, i32 len, dataset.
    dat = struct.pack("<i", 2)
    for name, nval in (("blk.0.attn_q.weight", 64), ("output.weight", 16)):
        dat += struct.pack("<i", len(name)) + name.encode() + struct.pack("<ii", 4, nval)
        dat += (rng.random(nval, dtype=np.float32) * 4).tobytes()
    put("imatrix", "dat_with_trailer", dat + struct.pack("<ii", 4, 13) + b"wiki.test.raw")
    put("imatrix", "dat_no_trailer", dat)


def imatrix_gguf(build):
    import gguf
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.gguf")
        w = gguf.GGUFWriter(p, arch="imatrix")  # gguf-py insists on an arch; drop it below
        w.kv_data[0].pop("general.architecture", None)
        build(w, gguf)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return read(p)


# --- chat templates ---------------------------------------------------------------------------

def chat_template_seeds():
    """The real SmolLM2-Instruct template (from the rebuilt checkpoint's tokenizer_config.json,
    scripts/make_fixtures.py) and the templates that tests/python/test_verify_chat_template.py
    checks against jinja2, each behind a flags byte (fuzz/targets/chat_template.cpp)."""
    cfg = os.path.join(ROOT, "testdata", "generated", "smollm2-135m-instruct", "tokenizer_config.json")
    templates = {}
    if os.path.exists(cfg):
        templates["smollm2"] = json.loads(read(cfg))["chat_template"]
    else:
        print("note: no rebuilt SmolLM2 checkpoint (scripts/make_fixtures.py); its template is skipped")
    sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
    import test_verify_chat_template as t  # needs jinja2 (the project venv)
    templates.update({"chatml_ws": t.CHATML_WS, "llama3_style": t.LLAMA3_STYLE, "indented": t.INDENTED,
                      "expressions": t.EXPRESSIONS})
    for name, src in templates.items():
        # flags: 1 add_generation_prompt, 2 system message first, 4 trim/lstrip off
        for flags in (1, 2 | 4):
            put("chat_template", f"{name}_{flags}", bytes([flags]) + src.encode())


def model_card_seeds():
    """README.md front matter, config.json, generation_config.json and a --metadata override
    (fuzz/targets/model_card.cpp): the real card shape, lists / mappings / URLs, CRLF and tabs,
    an alias bomb, and names that try to leave the output folder."""
    card = ("---\nlibrary_name: transformers\nlicense: apache-2.0\nlanguage:\n- en\npipeline_tag: text-generation\n"
            "tags:\n- safetensors\n- onnx\nbase_model:\n- HuggingFaceTB/SmolLM2-135M\n"
            "datasets:\n- HuggingFaceTB/smoltalk\n- https://huggingface.co/datasets/HuggingFaceTB/smol-smoltalk\n---\n# SmolLM2\n")
    cfg = dumps({"_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "model_type": "llama"})
    gen = dumps({"temperature": 0.7, "top_k": 40, "repetition_penalty": 1.1, "bos_token_id": 1})
    override = dumps({"general.name": "Smol", "general.version": "v2", "general.tags": ["a"],
                      "general.base_models": [{"name": "B", "repo_url": "https://example.org/b"}],
                      "general.sampling.top_p": 0.9})
    put("model_card", "full", SEP.join([card.encode(), cfg, gen, override]))
    put("model_card", "card_only", card)
    put("model_card", "mappings_and_lists",
        "---\r\nlicense: [mit, apache-2.0]\r\nbase_model:\r\n\t- {name: X, organization: Y, version: v1}\r\n"
        "\t- https://huggingface.co/org/Model-7B-v0.2\r\nlanguages: en\r\nmodel_name: Named\r\n---\r\n")
    bomb = ["---", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        bomb.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i-1}"] * 10) + "]")
    bomb.append("tags: *a8")
    put("model_card", "alias_bomb", "\n".join(bomb) + "\n---\n")
    put("model_card", "escape_names",
        SEP.join([b"---\nbasename: ../../etc\nfinetune: ../x\nversion: a/b\\c\nsize_label: \"\\t1/2\"\n---\n",
                  b"{}", b"{}", b'{"general.basename": "..", "general.finetune": "/abs"}']))
    put("model_card", "bad_yaml", "---\nlicense: [unclosed\n  - {\n---\n")


def main():
    model_card_seeds()
    chat_template_seeds()
    mini = tokenizer_seeds()
    encode_seeds()
    config_seeds()
    safetensors_seeds()
    gguf_seeds(mini)
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        size = sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)
        print(f"{t:20s} {len(files):3d} seeds {size:8d} bytes")


if __name__ == "__main__":
    sys.exit(main())
