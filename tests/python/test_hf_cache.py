"""Model references from the Hugging Face cache, and general.* metadata by llama.cpp's rules
(issue 14, must-show 2).

A fake cache is laid out exactly as huggingface_hub writes one:
    <hub>/models--HuggingFaceTB--SmolLM2-135M-Instruct/
        blobs/<etag>                       file contents (git blob sha1, sha256 for LFS files)
        snapshots/<commit>/<file>          relative symlinks ../../blobs/<etag>
        refs/main                          the commit hash, no newline
built from the real SmolLM2-135M-Instruct fixture plus a model card carrying base_model, tags,
languages, datasets and license. `smolq convert HuggingFaceTB/SmolLM2-135M-Instruct --type
Q4_K_M` with HF_HUB_CACHE pointing at it must write SmolLM2-135M-Instruct-Q4_K_M.gguf whose
general.* keys equal those llama.cpp's converter writes for the same folder: gguf-py's
Metadata.load, then convert_hf_to_gguf's prepare_metadata steps, then set_gguf_meta_model into a
GGUFWriter, compared key by key with value and GGUF type.

The repo id reaches gguf-py the way Hugging Face records it: as config.json's `_name_or_path`
(which transformers sets to the id a model was loaded by). smolq takes it from the cache path.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
COMMIT = "12fd25f77366fa6b3b4b768ec3050bf629380bac"
OLD_COMMIT = "5a7a0f0c8d6e4b1a9f3c2d1e0b9a8f7e6d5c4b3a"
# Fields smolq writes for the encoding and provenance, not from the model's authorship.
NOT_AUTHORSHIP = {"general.file_type", "general.quantization_version", "general.quantized_by", "general.alignment"}

MODEL_CARD = """---
library_name: transformers
license: apache-2.0
language:
- en
pipeline_tag: text-generation
tags:
- safetensors
- onnx
- transformers.js
base_model:
- HuggingFaceTB/SmolLM2-135M
datasets:
- HuggingFaceTB/smoltalk
- https://huggingface.co/datasets/HuggingFaceTB/smol-smoltalk
---

# SmolLM2

license: this line is prose, not front matter
"""


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_snapshot(repo: Path, commit: str, files: dict[str, Path | bytes]) -> Path:
    """One snapshot of `repo` as huggingface_hub writes it; large files are LFS (sha256 etag)
    and become hard links to the source, small ones are written out."""
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, src in files.items():
        if isinstance(src, Path) and src.stat().st_size > 1 << 20:
            h = hashlib.sha256()
            with open(src, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 24), b""):
                    h.update(chunk)
            blob = repo / "blobs" / h.hexdigest()
            if not blob.exists():
                try:
                    os.link(src, blob)
                except OSError:
                    shutil.copyfile(src, blob)
        else:
            data = src.read_bytes() if isinstance(src, Path) else src
            blob = repo / "blobs" / git_blob_sha1(data)
            blob.write_bytes(data)
        (snap / name).symlink_to(Path("../..") / "blobs" / blob.name)
    return snap


def make_repo(hub: Path, repo_id: str) -> Path:
    org, name = repo_id.split("/")
    repo = hub / f"models--{org}--{name}"
    (repo / "refs").mkdir(parents=True)
    return repo


@pytest.fixture(scope="module")
def fake_hub(tmp_path_factory, real_ckpt) -> tuple[Path, Path]:
    hub = tmp_path_factory.mktemp("hf") / "hub"
    repo = make_repo(hub, REPO)
    files: dict[str, Path | bytes] = {p.name: p for p in sorted(real_ckpt.iterdir())
                                      if p.is_file() and not p.name.startswith(".")
                                      and p.name not in ("PROVENANCE.md", "fixture.json")}
    files["README.md"] = MODEL_CARD.encode()
    snap = add_snapshot(repo, COMMIT, files)
    (repo / "refs" / "main").write_text(COMMIT)  # huggingface_hub writes no newline
    # An older revision with only a config, reachable by its hash (or a prefix of it).
    add_snapshot(repo, OLD_COMMIT, {"config.json": real_ckpt / "config.json"})
    return hub, snap


def gguf_general(path: Path) -> dict:
    """general.* keys of a GGUF file: key -> (GGUF type, value)."""
    import gguf
    r = gguf.GGUFReader(str(path))
    out = {}
    for k, f in r.fields.items():
        if not k.startswith("general."):
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            out[k] = ("ARRAY", [bytes(f.parts[i]).decode() for i in f.data])
        elif t == gguf.GGUFValueType.STRING:
            out[k] = ("STRING", bytes(f.parts[f.data[0]]).decode())
        else:
            out[k] = (t.name, f.parts[f.data[0]].tolist()[0])
    return out


def llama_cpp_general(folder: Path, total_params: int, repo_id: str | None = None,
                      override: Path | None = None, model_name: str | None = None) -> dict:
    """The general.* keys llama.cpp's converter writes for `folder` (its prepare_metadata)."""
    import gguf
    load_hf = gguf.Metadata.load_hf_parameters

    def with_id(model_path=None):
        params = load_hf(model_path)
        if repo_id is not None:
            params = dict(params, _name_or_path=repo_id)
        return params

    gguf.Metadata.load_hf_parameters = staticmethod(with_id)
    try:
        meta = gguf.Metadata.load(override, folder, model_name, total_params)
    finally:
        gguf.Metadata.load_hf_parameters = staticmethod(load_hf)
    if meta.name is None:
        meta.name = folder.name
    if meta.size_label is None and total_params > 0:
        meta.size_label = gguf.size_label(total_params, 0, 0, 0)
    w = gguf.GGUFWriter(None, "llama")
    w.add_type(gguf.GGUFType.MODEL)
    meta.set_gguf_meta_model(w)
    out = {}
    for k, v in w.kv_data[0].items():
        if v.type == gguf.GGUFValueType.ARRAY:
            out[k] = ("ARRAY", list(v.value))
        elif v.type == gguf.GGUFValueType.FLOAT32:
            out[k] = ("FLOAT32", float(np.float32(v.value)))
        else:
            out[k] = (v.type.name, v.value)
    return out, meta


def compare(ours: dict, theirs: dict):
    ours = {k: v for k, v in ours.items() if k not in NOT_AUTHORSHIP}
    missing = sorted(set(theirs) - set(ours))
    extra = sorted(set(ours) - set(theirs))
    differ = {k: (ours[k], theirs[k]) for k in set(ours) & set(theirs) if ours[k] != theirs[k]}
    assert not missing and not extra and not differ, (
        f"missing {missing}, extra {extra}, different (ours, llama.cpp) {differ}")


def n_params(path: Path) -> int:
    import gguf
    return int(sum(int(np.prod(t.shape)) for t in gguf.GGUFReader(str(path)).tensors))


def test_convert_by_repo_id_names_file_and_metadata_like_llama_cpp(run_smolq, fake_hub, out_dir):
    hub, snap = fake_hub
    env = dict(os.environ, HF_HUB_CACHE=str(hub))
    proc = run_smolq("convert", REPO, "--type", "q4_k_m", "-t", 2, "-q", "--json", cwd=out_dir, env=env, timeout=900)
    written = sorted(p.name for p in out_dir.iterdir())
    assert written == ["SmolLM2-135M-Instruct-Q4_K_M.gguf"]
    summary = json.loads(proc.stdout)  # --json tells scripts the name it chose
    assert summary["output"] == written[0] and summary["file_size"] == (out_dir / written[0]).stat().st_size
    assert summary["size_label"] == "135M" and summary["pre_tokenizer"] == "smollm"
    path = out_dir / written[0]
    ours = gguf_general(path)
    theirs, meta = llama_cpp_general(snap, n_params(path), repo_id=REPO)
    compare(ours, theirs)
    # The card's fields all arrived (so the comparison above compared something).
    for key in ("general.base_model.0.name", "general.base_model.0.repo_url", "general.dataset.1.repo_url",
                "general.tags", "general.languages", "general.license", "general.organization"):
        assert key in ours, key
    assert ours["general.name"] == ("STRING", "SmolLM2 135M Instruct")
    assert ours["general.license"] == ("STRING", "apache-2.0")
    assert ours["general.tags"] == ("ARRAY", ["safetensors", "onnx", "transformers.js", "text-generation"])
    import gguf
    assert gguf.naming_convention(meta.name, meta.basename, meta.finetune, meta.version, meta.size_label,
                                  "Q4_K_M") + ".gguf" == written[0]


def test_metadata_override_file_like_llama_cpp(run_smolq, fake_hub, out_dir):
    hub, snap = fake_hub
    override = out_dir / "meta.json"
    override.write_text(json.dumps({
        "general.name": "Smol Two", "general.version": "v2.1", "general.author": "A. Author",
        "general.tags": ["tiny", "chat"], "general.url": "https://example.org/smol",
        "general.base_models": [{"name": "Base", "organization": "Org", "repo_url": "https://example.org/base"}],
        "general.sampling.temp": 0.7, "general.sampling.top_k": 40}))
    cache_folder = hub / "models--HuggingFaceTB--SmolLM2-135M-Instruct"
    run_smolq("convert", cache_folder, "--outtype", "F16", "--metadata", override, "-o", out_dir / "o.gguf",
              "-t", 2, "-q", timeout=900)
    ours = gguf_general(out_dir / "o.gguf")
    theirs, _ = llama_cpp_general(snap, n_params(out_dir / "o.gguf"), repo_id=REPO, override=override)
    compare(ours, theirs)
    assert ours["general.version"] == ("STRING", "v2.1")
    assert ours["general.sampling.top_k"] == ("INT32", 40)


# Ids whose parts exercise every rule of get_model_id_components (versions, sizes far from the
# parameter count, bloom's 7b1, word sizes, quant-type parts, leading versions).
IDS = ["mistralai/Mistral-7B-Instruct-v0.2", "org/Model-7B-32K", "bigscience/bloom-7b1", "meta-llama/Llama-3.2-1B-Instruct",
       "Qwen/Qwen2.5-0.5B-Instruct", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "HuggingFaceTB/SmolLM3-3B", "microsoft/phi-2",
       "google/gemma-2-2b-it", "allenai/OLMo-7B-0424-hf", "EleutherAI/pythia-70m-deduped", "openai/gpt2-xl",
       "stabilityai/stablelm-2-zephyr-1_6b", "TheBloke/Mistral-7B-Instruct-v0.2-GGUF", "x/v2-7B", "x/A8x7B-small-Q4_K",
       "lower/smollm2-135m-instruct"]


def inspect_json(run_smolq, ref, **kw) -> dict:
    """`smolq inspect REF --json`. inspect is a gate (issue 13): a config-only snapshot is not a
    checkpoint convert can read, so it exits 3 naming the missing files; the general.* keys are
    shown all the same. Anything else wrong fails the test."""
    p = run_smolq("inspect", ref, "--json", check=False, **kw)
    assert p.returncode in (0, 3), p.stderr
    out = json.loads(p.stdout)
    errors = [f["message"] for f in out["findings"] if f["severity"] == "error"]
    assert p.returncode == (3 if errors else 0), errors
    assert all("missing" in e for e in errors), errors
    return out


def test_model_id_rules_match_gguf_py(run_smolq, tmp_path, real_ckpt):
    """`smolq inspect org/name` shows the general.* keys convert would write; for config-only
    snapshots (no weights: no parameter count) they must equal llama.cpp's for every id."""
    hub = tmp_path / "hub"
    for rid in IDS:
        repo = make_repo(hub, rid)
        add_snapshot(repo, COMMIT, {"config.json": real_ckpt / "config.json"})
        (repo / "refs" / "main").write_text(COMMIT)
    env = dict(os.environ, HF_HUB_CACHE=str(hub))
    for rid in IDS:
        out = inspect_json(run_smolq, rid, env=env)
        ours = {}
        for k, v in out["metadata"].items():
            if k.startswith("general."):
                ours[k] = ("ARRAY", v["first"]) if isinstance(v, dict) else ("STRING", v)
        org, name = rid.split("/")
        theirs, _ = llama_cpp_general(hub / f"models--{org}--{name}" / "snapshots" / COMMIT, 0, repo_id=rid)
        theirs = {k: (t if t == "ARRAY" else "STRING", v) for k, (t, v) in theirs.items()}
        assert ours == theirs, rid


def test_plain_folder_named_after_itself(run_smolq, real_ckpt, tmp_path):
    """A folder outside the cache is named after its real name, also when typed as '.'."""
    d = tmp_path / "SmolLM2-135M-Instruct"
    d.mkdir()
    (d / "config.json").write_bytes((real_ckpt / "config.json").read_bytes())
    meta = inspect_json(run_smolq, ".", cwd=d)["metadata"]
    assert meta["general.name"] == "SmolLM2 135M Instruct"
    assert meta["general.basename"] == "SmolLM2"
    assert "general.organization" not in meta


def test_revisions_and_errors(run_smolq, fake_hub, tmp_path):
    hub, snap = fake_hub
    env = dict(os.environ, HF_HUB_CACHE=str(hub))
    # A snapshot folder given directly, a revision by hash prefix, by branch name.
    for ref in (str(snap), f"{REPO}@{OLD_COMMIT[:10]}", f"{REPO}@main"):
        out = inspect_json(run_smolq, ref, env=env)
        assert out["metadata"]["general.organization"] == "HuggingFaceTB", ref
    bad = run_smolq("inspect", f"{REPO}@v9", env=env, check=False)
    assert bad.returncode == 2
    assert COMMIT in bad.stderr and OLD_COMMIT in bad.stderr  # lists the snapshots it has
    env2 = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "empty"), HF_HOME=str(tmp_path / "home"))
    missing = run_smolq("convert", "HuggingFaceTB/SmolLM9-1B", env=env2, check=False)
    assert missing.returncode == 2
    assert str(tmp_path / "empty" / "models--HuggingFaceTB--SmolLM9-1B") in missing.stderr
    assert str(tmp_path / "home" / "hub" / "models--HuggingFaceTB--SmolLM9-1B") in missing.stderr
    assert "never downloads" in missing.stderr
