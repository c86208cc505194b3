"""Data safety (issue 13): a table of bad inputs, bad destinations and absurd settings across
every command. Each case asserts the exit code (2 usage, 1 unreadable input or failed work),
that the one error line names the right file / tensor / element, and the disk afterwards: no
output, no temporary file, an old output byte-identical with its mode. Then the output policy's
successes (symlinks written through, modes kept, streams, stale temporaries cleaned) and
non-finite weights per command on GGUF and safetensors input (docs/architecture.md, "Errors,
interruption, output files"; docs/hardening.md, "Non-finite values").

Everything is built from the 5M-parameter synthetic SmolLM2 fixture: the file costs ~1 s."""
from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from safety_tools import (copy_folder, edit_json, plant_in_gguf, plant_in_safetensors, plant_q8_0_scale,
                          snapshot, temp_files)

TEXT_CHARS = 3000


@pytest.fixture(scope="module")
def base(tmp_path_factory, run_smolq, synthetic, wikitext):
    """Shared inputs: the tiny model as F32/F16/Q8_0 GGUF, an imatrix of it, a text."""
    d = tmp_path_factory.mktemp("safety-base")
    ck = synthetic("smollm2-tiny-f32")
    run_smolq("convert", ck, "-o", d / "f32.gguf", "--outtype", "f32", "-q")
    run_smolq("convert", ck, "-o", d / "f16.gguf", "--outtype", "f16", "-q")
    run_smolq("convert", ck, "-o", d / "bf16.gguf", "--outtype", "bf16", "-q")
    run_smolq("convert", ck, "-o", d / "q8.gguf", "--outtype", "q8_0", "-q")
    (d / "text.txt").write_text(wikitext(TEXT_CHARS))
    run_smolq("imatrix", d / "f32.gguf", "-f", d / "text.txt", "-o", d / "imatrix.gguf", "--ctx", 64, "--chunks", 2,
              "-t", 2)
    other = d / "other-ck"
    copy_folder(synthetic("smollm2-tiny-f32"), other)
    return {"dir": d, "ckpt": ck, "sharded": synthetic("smollm2-tiny-bf16-sharded"),
            "f32": d / "f32.gguf", "f16": d / "f16.gguf", "bf16": d / "bf16.gguf", "q8": d / "q8.gguf",
            "imatrix": d / "imatrix.gguf", "text": d / "text.txt"}


# --- the table ------------------------------------------------------------------------------
#
# A case: (id, build(base, out_dir) -> (args, watched output path or None), exit code, words the
# error line must contain). `build` may create the destination first (a FIFO, an old file...);
# the folder holding the watched path must look the same afterwards (old files byte-identical
# with their modes, no new file, no temporary file).

def _q(src_key, dest_name, *extra):
    def build(b, o):
        return ["quantize", b[src_key], o / dest_name, "Q4_0", *extra], o / dest_name
    return build


def _with(setup, build):
    def wrapped(b, o):
        setup(b, o)
        return build(b, o)
    return wrapped


def mk_dir(name):
    return lambda b, o: (o / name).mkdir()


def mk_fifo(name):
    return lambda b, o: os.mkfifo(o / name)


def mk_socket(name):
    def make(b, o):
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(o / name))
        s.close()
    return make


def mk_old(name, mode=0o640):
    def make(b, o):
        (o / name).write_bytes(b"old output, must survive\n")
        os.chmod(o / name, mode)
    return make


def nan_gguf(key, tensor, row, col, value=float("nan")):
    def make(b, o):
        p = o / f"bad-{key}.gguf"
        p.write_bytes(b[key].read_bytes())
        plant_in_gguf(p, tensor, row, col, value)
        return p
    return make


def nan_ckpt(tensor, row, col, value=float("nan"), src="ckpt"):
    def make(b, o):
        d = copy_folder(b[src], o / "ck")
        plant_in_safetensors(d / "model.safetensors", tensor, row, col, value)
        return d
    return make


def cfg_ckpt(**changes):
    def make(b, o):
        d = copy_folder(b["ckpt"], o / "ck")
        edit_json(d / "config.json", **changes)
        return d
    return make


def nan_imatrix(b, o):
    """The imatrix with one value of blk.0.attn_q.weight's sums set to NaN."""
    p = o / "nan-imatrix.gguf"
    p.write_bytes(b["imatrix"].read_bytes())
    plant_in_gguf(p, "blk.0.attn_q.weight.in_sum2", 0, 5, float("nan"))
    return p


def other_width_imatrix(b, o):
    """An imatrix of another model: blk.0.attn_q.weight with 13 columns (the tensor has 96)."""
    import numpy as np
    import gguf
    p = o / "wrong-imatrix.gguf"
    w = gguf.GGUFWriter(str(p), arch="imatrix")
    w.add_type("imatrix")
    w.add_uint32("imatrix.chunk_count", 1)
    w.add_uint32("imatrix.chunk_size", 64)
    w.add_array("imatrix.datasets", ["x"])
    w.add_tensor("blk.0.attn_q.weight.in_sum2", np.ones(13, dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight.counts", np.ones(1, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return p


def case(id, build, code, words):
    return pytest.param(build, code, words, id=id)


CASES = [
    # ---- destinations ----------------------------------------------------------------------
    case("quantize-dest-directory", _with(mk_dir("d.gguf"), _q("f32", "d.gguf")), 2, ["d.gguf", "directory"]),
    case("quantize-dest-fifo", _with(mk_fifo("p.gguf"), _q("f32", "p.gguf")), 2, ["p.gguf", "FIFO"]),
    case("quantize-dest-socket", _with(mk_socket("s.gguf"), _q("f32", "s.gguf")), 2, ["s.gguf", "socket"]),
    case("quantize-dest-trailing-slash", lambda b, o: (["quantize", b["f32"], str(o / "new") + "/", "Q4_0"], o / "new"),
         2, ["new/", "folder"]),
    case("quantize-dest-missing-folder", lambda b, o: (["quantize", b["f32"], o / "nope" / "x.gguf", "Q4_0"], o / "x.gguf"),
         1, ["nope", "does not exist"]),
    case("quantize-dest-unwritable", lambda b, o: (["quantize", b["f32"], "/proc/smolq-test.gguf", "Q4_0"], None),
         1, ["/proc/smolq-test.gguf"]),
    case("quantize-dest-chardev", lambda b, o: (["quantize", b["f32"], "/dev/zero", "Q4_0"], None), 2,
         ["/dev/zero", "character device"]),
    case("quantize-same-file", lambda b, o: (["quantize", b["f32"], b["f32"], "Q4_0"], None), 2, ["same file"]),
    case("convert-dest-directory", _with(mk_dir("d.gguf"), lambda b, o: (["convert", b["ckpt"], "-o", o / "d.gguf"], o / "d.gguf")),
         2, ["d.gguf", "directory"]),
    case("convert-dest-fifo", _with(mk_fifo("p.gguf"), lambda b, o: (["convert", b["ckpt"], "-o", o / "p.gguf"], o / "p.gguf")),
         2, ["p.gguf", "FIFO"]),
    case("imatrix-dest-directory", _with(mk_dir("im"), lambda b, o: (["imatrix", b["f32"], "-f", b["text"], "-o", o / "im"], o / "im")),
         2, ["im", "directory"]),
    case("imatrix-dest-fifo", _with(mk_fifo("im.gguf"), lambda b, o: (["imatrix", b["f32"], "-f", b["text"], "-o", o / "im.gguf"], o / "im.gguf")),
         2, ["im.gguf", "FIFO"]),
    case("perplexity-dump-dest-directory",
         _with(mk_dir("l.npy"), lambda b, o: (["perplexity", b["f32"], "-f", b["text"], "--dump-logits", o / "l.npy"], o / "l.npy")),
         2, ["l.npy", "directory"]),
    case("quantize-target-profile-is-a-directory", _with(mk_dir("prof"), lambda b, o: (
        ["quantize", b["f32"], o / "x.gguf", "--target-bpw", "5", "--calib", b["text"], "--profile", o / "prof"], o / "x.gguf")),
         2, ["prof", "directory"]),
    case("verify-out-is-a-file",
         _with(mk_old("rep"), lambda b, o: (["verify", b["ckpt"], "-f", b["text"], "--types", "Q8_0", "--out", o / "rep"], o / "rep")),
         2, ["rep", "not a folder"]),
    case("verify-missing-text-leaves-no-folder",
         lambda b, o: (["verify", b["ckpt"], "-f", o / "missing.txt", "--types", "Q8_0", "--out", o / "rep"], o / "rep"),
         1, ["missing.txt", "no such file"]),
    case("verify-early-error-leaves-no-folder",
         lambda b, o: (["verify", b["imatrix"], "-f", b["text"], "--types", "Q8_0", "--out", o / "rep"], o / "rep"),
         1, ["imatrix.gguf", "importance matrix, not a model"]),
    # ---- inputs ------------------------------------------------------------------------------
    case("convert-gguf-input", lambda b, o: (["convert", b["f32"], "-o", o / "x.gguf"], o / "x.gguf"), 1,
         ["f32.gguf", "is a GGUF file, not a Hugging Face folder"]),
    case("convert-safetensors-file", lambda b, o: (["convert", b["ckpt"] / "model.safetensors", "-o", o / "x.gguf"], o / "x.gguf"),
         1, ["model.safetensors", "is a safetensors file"]),
    case("convert-missing", lambda b, o: (["convert", o / "nothing", "-o", o / "x.gguf"], o / "x.gguf"), 1,
         ["nothing", "no such file"]),
    case("convert-folder-without-config", _with(mk_dir("empty"), lambda b, o: (["convert", o / "empty", "-o", o / "x.gguf"], o / "x.gguf")),
         1, ["empty", "no config.json"]),
    case("convert-ctx-zero", lambda b, o: (["convert", cfg_ckpt(max_position_embeddings=0)(b, o), "-o", o / "x.gguf"], o / "x.gguf"),
         1, ["config.json", "max_position_embeddings"]),
    case("convert-heads-not-dividing", lambda b, o: (["convert", cfg_ckpt(num_key_value_heads=4)(b, o), "-o", o / "x.gguf"], o / "x.gguf"),
         1, ["config.json", "num_key_value_heads"]),
    case("quantize-imatrix-as-model", lambda b, o: (["quantize", b["imatrix"], o / "x.gguf", "Q4_K_M"], o / "x.gguf"), 1,
         ["imatrix.gguf", "importance matrix, not a model"]),
    case("quantize-missing-input", lambda b, o: (["quantize", o / "none.gguf", o / "x.gguf", "Q4_0"], o / "x.gguf"), 1,
         ["none.gguf", "no such file"]),
    case("perplexity-imatrix-as-model", lambda b, o: (["perplexity", b["imatrix"], "-f", b["text"]], None), 1,
         ["imatrix.gguf", "importance matrix, not a model"]),
    case("perplexity-missing-model", lambda b, o: (["perplexity", o / "none.gguf", "-f", b["text"]], None), 1,
         ["none.gguf", "no such file"]),
    case("perplexity-missing-text", lambda b, o: (["perplexity", b["f32"], "-f", o / "none.txt"], None), 1,
         ["none.txt", "no such file"]),
    case("imatrix-missing-model", lambda b, o: (["imatrix", o / "none.gguf", "-f", b["text"], "-o", o / "im.gguf"], o / "im.gguf"),
         1, ["none.gguf", "no such file"]),
    case("estimate-missing", lambda b, o: (["estimate", o / "none"], None), 1, ["none", "no such file"]),
    case("inspect-missing", lambda b, o: (["inspect", o / "none.gguf"], None), 1, ["none.gguf", "no such file"]),
    case("verify-missing-model", lambda b, o: (["verify", o / "none", "-f", b["text"], "--out", o / "rep"], o / "rep"), 1,
         ["none", "no such file"]),
    case("quantize-imatrix-of-other-model",
         lambda b, o: (["quantize", b["f32"], o / "x.gguf", "Q4_K_M", "--imatrix", other_width_imatrix(b, o)], o / "x.gguf"),
         1, ["wrong-imatrix.gguf", "blk.0.attn_q.weight", "another model"]),
    case("quantize-nan-imatrix", lambda b, o: (["quantize", b["f32"], o / "x.gguf", "Q4_K_M", "--imatrix", nan_imatrix(b, o)], o / "x.gguf"),
         1, ["nan-imatrix.gguf", "blk.0.attn_q.weight", "non-finite", "nan"]),
    case("imatrix-merge-nan-file", lambda b, o: (["imatrix", "--in-file", nan_imatrix(b, o), "-o", o / "m.gguf"], o / "m.gguf"),
         1, ["nan-imatrix.gguf", "blk.0.attn_q.weight", "non-finite"]),
    # ---- absurd settings ---------------------------------------------------------------------
    case("estimate-ctx-negative", lambda b, o: (["estimate", b["f32"], "--ctx", "-1"], None), 2, ["--ctx", "-1"]),
    case("estimate-batch-negative", lambda b, o: (["estimate", b["f32"], "--batch", "-1"], None), 2, ["--batch", "-1"]),
    case("estimate-parallel-negative", lambda b, o: (["estimate", b["f32"], "--parallel", "-5"], None), 2, ["--parallel"]),
    case("inspect-array-items-negative", lambda b, o: (["inspect", b["f32"], "--array-items", "-1"], None), 2, ["--array-items"]),
    case("quantize-threads-huge", _q("f32", "x.gguf", "--threads", "100000"), 2, ["--threads", "100000"]),
    case("quantize-threads-negative", _q("f32", "x.gguf", "--threads", "-3"), 2, ["--threads"]),
    case("convert-threads-huge", lambda b, o: (["convert", b["ckpt"], "-o", o / "x.gguf", "-t", "100000"], o / "x.gguf"), 2,
         ["--threads"]),
    case("perplexity-threads-huge", lambda b, o: (["perplexity", b["f32"], "-f", b["text"], "-t", "5000"], None), 2, ["--threads"]),
    case("imatrix-threads-huge", lambda b, o: (["imatrix", b["f32"], "-f", b["text"], "-o", o / "im.gguf", "-t", "5000"], o / "im.gguf"),
         2, ["--threads"]),
    case("verify-threads-huge", lambda b, o: (["verify", b["ckpt"], "-f", b["text"], "--out", o / "rep", "-t", "5000"], o / "rep"),
         2, ["--threads"]),
    # ---- non-finite weights: no output, old output kept -----------------------------------------
    case("quantize-nan-f32-gguf", _with(mk_old("x.gguf", 0o600), lambda b, o: (
        ["quantize", nan_gguf("f32", "blk.1.ffn_up.weight", 7, 33)(b, o), o / "x.gguf", "Q4_0"], o / "x.gguf")),
         1, ["blk.1.ffn_up.weight", "nan", "row 7, column 33"]),
    case("quantize-inf-f16-gguf", lambda b, o: (
        ["quantize", nan_gguf("f16", "blk.2.attn_k.weight", 3, 90, float("inf"))(b, o), o / "x.gguf", "Q8_0"], o / "x.gguf"),
         1, ["blk.2.attn_k.weight", "inf", "row 3, column 90"]),
    case("quantize-nan-bf16-copied-norm", lambda b, o: (
        ["quantize", nan_gguf("bf16", "blk.0.attn_norm.weight", 0, 11)(b, o), o / "x.gguf", "Q8_0"], o / "x.gguf"),
         1, ["blk.0.attn_norm.weight", "nan", "row 0, column 11"]),
    case("quantize-nan-q8_0-scale", lambda b, o: (
        ["quantize", (lambda p: (plant_q8_0_scale(p, "blk.3.ffn_down.weight", 10, float("nan")), p)[1])(
            (lambda p: (p.write_bytes(b["q8"].read_bytes()), p)[1])(o / "q8bad.gguf")),
         o / "x.gguf", "Q4_0", "--allow-requantize"], o / "x.gguf"),
         1, ["blk.3.ffn_down.weight", "nan", "row 1, column 64"]),
    case("convert-nan-safetensors-f32", _with(mk_old("x.gguf"), lambda b, o: (
        ["convert", nan_ckpt("model.layers.2.mlp.down_proj.weight", 5, 17)(b, o), "-o", o / "x.gguf"], o / "x.gguf")),
         1, ["blk.2.ffn_down.weight", "nan", "row 5, column 17"]),
    case("convert-inf-safetensors-to-q4", lambda b, o: (
        ["convert", nan_ckpt("model.layers.0.self_attn.q_proj.weight", 1, 2, float("-inf"))(b, o), "-o", o / "x.gguf",
         "--type", "Q4_0"], o / "x.gguf"),
         1, ["blk.0.attn_q.weight", "-inf"]),
]


@pytest.mark.parametrize("build,code,words", CASES)
def test_bad_input_or_destination(build, code, words, base, run_smolq, out_dir):
    before = None
    args, watched = build(base, out_dir)
    folder = watched.parent if watched is not None else None
    if folder is not None and folder.is_dir():
        before = snapshot(folder)
    proc = run_smolq(*args, check=False, timeout=300)
    err_lines = [l for l in proc.stderr.splitlines() if l.startswith("smolq ")]
    assert proc.returncode == code, f"exit {proc.returncode}, wanted {code}\n{proc.stderr}"
    assert len(err_lines) == 1, proc.stderr
    for w in words:
        assert w in err_lines[0], f"{w!r} not in: {err_lines[0]}"
    if folder is not None and folder.is_dir():
        assert not temp_files(folder), temp_files(folder)
        after = snapshot(folder)
        assert after == before, {k: (before.get(k, "absent")[0], after.get(k, "absent")[0])
                                 for k in set(before) | set(after) if before.get(k) != after.get(k)}


def test_table_covers_every_command():
    """The issue asks for at least 40 cases, across all the commands."""
    assert len(CASES) >= 40
    names = {c.id.split("-")[0] for c in CASES}
    assert names >= {"convert", "quantize", "inspect", "estimate", "perplexity", "imatrix", "verify"}


# --- what the policy allows ---------------------------------------------------------------------

def _gguf_bytes_ok(p: Path) -> bool:
    return p.read_bytes()[:4] == b"GGUF"


def test_symlink_is_written_through(base, run_smolq, out_dir):
    target = out_dir / "real.gguf"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    link = out_dir / "link.gguf"
    link.symlink_to("real.gguf")
    run_smolq("quantize", base["f32"], link, "Q4_0", "-q")
    assert link.is_symlink() and os.readlink(link) == "real.gguf"
    assert _gguf_bytes_ok(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert not temp_files(out_dir)
    dangling = out_dir / "dangling.gguf"
    dangling.symlink_to("made-by-link.gguf")
    run_smolq("quantize", base["f32"], dangling, "Q4_0", "-q")
    assert dangling.is_symlink() and _gguf_bytes_ok(out_dir / "made-by-link.gguf")


def test_mode_kept_and_new_file_follows_umask(base, run_smolq, out_dir):
    old = out_dir / "o.gguf"
    old.write_bytes(b"x")
    os.chmod(old, 0o604)
    run_smolq("quantize", base["f32"], old, "Q4_0", "-q")
    assert stat.S_IMODE(os.stat(old).st_mode) == 0o604 and _gguf_bytes_ok(old)
    new = out_dir / "n.gguf"
    mask = os.umask(0o027)
    os.umask(mask)
    run_smolq("quantize", base["f32"], new, "Q4_0", "-q")
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o666 & ~mask


def test_streams(base, run_smolq, out_dir, smolq_bin):
    """`-` and /dev/stdout carry only the file (the summary goes to stderr); /dev/null stays a
    device; the bytes equal a file written normally."""
    import subprocess
    ref = out_dir / "ref.gguf"
    run_smolq("quantize", base["f32"], ref, "Q4_0", "-q")
    for dest in ("-", "/dev/stdout"):
        proc = subprocess.run([str(smolq_bin), "quantize", str(base["f32"]), dest, "Q4_0", "-q"], capture_output=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ref.read_bytes(), dest
        assert b"wrote" in proc.stderr
    run_smolq("quantize", base["f32"], "/dev/null", "Q4_0", "-q")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_stale_temp_files_are_cleaned(base, run_smolq, out_dir):
    """A SIGKILLed run leaves `.<name>.smolq-tmp-<pid>`; the next run for that destination
    removes those of dead processes and says so; other files are left alone."""
    dead_pid = 4_000_000  # above pid_max's default range: no such process
    stale = out_dir / f".x.gguf.smolq-tmp-{dead_pid}"
    stale.write_bytes(b"partial")
    unrelated = out_dir / f".y.gguf.smolq-tmp-{dead_pid}"
    unrelated.write_bytes(b"other destination")
    proc = run_smolq("quantize", base["f32"], out_dir / "x.gguf", "Q4_0", "-q")
    assert not stale.exists() and unrelated.exists()
    assert "stale temporary file" in proc.stderr and str(dead_pid) in proc.stderr


def test_unwritable_output_fails_before_work(base, run_smolq, out_dir):
    """imatrix with an unwritable destination fails at once (no forward pass ran)."""
    import time
    t0 = time.monotonic()
    proc = run_smolq("imatrix", base["f32"], "-f", base["text"], "-o", "/proc/smolq-im.gguf", check=False)
    assert proc.returncode == 1 and "/proc/smolq-im.gguf" in proc.stderr
    assert "computing over" not in proc.stderr and time.monotonic() - t0 < 10


def test_include_weights_pattern_that_matches_nothing_warns(base, run_smolq, out_dir):
    proc = run_smolq("quantize", base["f32"], out_dir / "x.gguf", "Q4_K_M", "--imatrix", base["imatrix"],
                     "--include-weights", r"blk\.[0-9]+\.attn_q", "-q")
    assert "--include-weights" in proc.stderr and "substrings" in proc.stderr


def test_output_tensor_type_fallback_on_tied_embedding_is_said(base, run_smolq):
    """SmolLM2's embedding rows (96 here, 576 in the 135M model) do not fit Q6_K's 256 blocks:
    with tied embeddings --output-tensor-type reaches token_embd through the output rule and
    takes the fallback, as in llama-quantize, and smolq says so."""
    proc = run_smolq("quantize", base["f32"], "Q4_0", "--dry-run", "--output-tensor-type", "q6_K")
    assert "token_embd.weight" in proc.stderr and "fallback" in proc.stderr and "Q6_K" in proc.stderr


# --- non-finite weights per command ---------------------------------------------------------------

@pytest.mark.parametrize("key", ["f16"])  # F32/BF16 weights reach the same NaN logits (see convert/quantize cases)
def test_perplexity_reports_nan(key, base, run_smolq, out_dir):
    """A NaN weight makes every logit NaN: the result is printed as nan (JSON: null) and the
    command fails, naming the model (llama-perplexity prints nan too)."""
    bad = nan_gguf(key, "blk.0.ffn_down.weight", 2, 3)(base, out_dir)
    proc = run_smolq("perplexity", bad, "-f", base["text"], "--ctx", 64, "--chunks", 1, "-t", 2, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "PPL = nan" in proc.stdout or "PPL = -nan" in proc.stdout
    assert "not finite" in proc.stderr and bad.name in proc.stderr
    proc = run_smolq("perplexity", bad, "-f", base["text"], "--ctx", 64, "--chunks", 1, "-t", 2, "--json", check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout)["ppl"] is None


def test_perplexity_of_a_nan_safetensors_folder(base, run_smolq, out_dir):
    bad = nan_ckpt("model.layers.1.self_attn.v_proj.weight", 4, 4, float("inf"))(base, out_dir)
    proc = run_smolq("perplexity", bad, "-f", base["text"], "--ctx", 64, "--chunks", 1, "-t", 2, check=False)
    assert proc.returncode == 1 and "not finite" in proc.stderr


def test_kl_divergence_with_a_nan_model_fails(base, run_smolq, out_dir):
    bad = nan_gguf("f32", "output_norm.weight", 0, 0)(base, out_dir)
    proc = run_smolq("perplexity", bad, "--base", base["f32"], "-f", base["text"], "--ctx", 64, "--chunks", 1, "-t", 2,
                     check=False)
    assert proc.returncode == 1 and "not finite" in proc.stderr


def test_imatrix_of_a_nan_model_writes_nothing(base, run_smolq, out_dir):
    bad = nan_gguf("f16", "blk.0.attn_q.weight", 0, 0)(base, out_dir)
    proc = run_smolq("imatrix", bad, "-f", base["text"], "-o", out_dir / "im.gguf", "--ctx", 64, "--chunks", 1,
                     "-t", 2, check=False)
    assert proc.returncode == 1 and "non-finite" in proc.stderr and "im.gguf" in proc.stderr
    assert not (out_dir / "im.gguf").exists() and not temp_files(out_dir)


def test_sharded_bf16_nan_is_found_by_convert(base, run_smolq, out_dir):
    d = copy_folder(base["sharded"], out_dir / "sh")
    shard = sorted(d.glob("model-*.safetensors"))[-1]
    from safety_tools import st_header
    h, _ = st_header(shard)
    name = sorted(k for k in h if k != "__metadata__" and len(h[k]["shape"]) == 2)[0]
    plant_in_safetensors(shard, name, 1, 1, float("nan"))
    proc = run_smolq("convert", d, "-o", out_dir / "x.gguf", check=False)
    assert proc.returncode == 1 and "row 1, column 1" in proc.stderr
    assert not (out_dir / "x.gguf").exists() and not temp_files(out_dir)
