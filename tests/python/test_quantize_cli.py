"""`smolq quantize` as a command: what it refuses and how, what it leaves on disk, what its
options do next to llama-quantize's, and the numbers it prints.

  - Deterministic bytes across runs and thread counts (-t 1 / 2 / 3) for several types.
  - Clear errors with a non-zero exit and no output file: truncated imatrix, wrong magic, an
    imatrix from another model (the message names the tensor), Q2_K_S without an imatrix,
    requantizing without --allow-requantize (and the warning when it is given).
  - An imatrix written by llama.cpp as GGUF and the same data as legacy .dat give identical
    tensors.
  - --dry-run writes nothing and prints the plan, size and bits per weight; on the real
    SmolLM2-135M those are llama.cpp's real figures (Q2_K 5.14, Q4_K_M 6.17, Q6_K 8.12).
  - --pure, --tensor-type, --output-tensor-type, --token-embedding-type,
    --leave-output-tensor, --include/--exclude-weights and --override-kv next to
    llama-quantize: the same tensor types (its --dry-run, and real files read by gguf-py) and
    the same metadata keys, types and values.
Needs the llama.cpp tools of scripts/build_llama_tools.sh for the comparisons (skipped otherwise).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from quantize_tools import (THREADS, fields, llama_dry_run_types, llama_imatrix, llama_quantize, smolq_f16,
                            tensor_bytes, tensor_types, tool)


@pytest.fixture(scope="module")
def syn_f16(smolq_bin, synthetic) -> Path:
    """The 256-aligned synthetic model (1k vocabulary, untied output) as F16."""
    return smolq_f16(smolq_bin, synthetic("aligned256-small-bf16"), "syn")


@pytest.fixture(scope="module")
def big_f16(smolq_bin, synthetic) -> Path:
    """The 256-aligned synthetic model with the real 49k vocabulary: its embedding and output
    have 49,152 rows, so the writer cuts them into many chunks that threads share."""
    return smolq_f16(smolq_bin, synthetic("aligned256-bf16"), "syn-big")


@pytest.fixture(scope="module")
def real_f16(smolq_bin, real_ckpt) -> Path:
    return smolq_f16(smolq_bin, real_ckpt, "real")


@pytest.fixture(scope="module")
def syn_imatrix(syn_f16, wikitext) -> dict:
    """llama-imatrix on a WikiText-2 validation excerpt, in both of its formats (4 chunks)."""
    text = wikitext(12000, split="valid")
    return {fmt: llama_imatrix(syn_f16, text, "syn", fmt=fmt) for fmt in ("gguf", "dat")}


def quantize(run_smolq, *args, check=True):
    return run_smolq("quantize", *args, "-q", check=check, timeout=900)


def assert_refused(proc, out: Path, *needles, code=None):
    assert proc.returncode != 0, f"expected a failure:\n{proc.stdout}\n{proc.stderr}"
    if code is not None:
        assert proc.returncode == code, proc.stderr
    for n in needles:
        assert n in proc.stderr, f"{n!r} not in:\n{proc.stderr}"
    assert not out.exists(), f"{out} was left behind"
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


# --- determinism ---------------------------------------------------------------------------

@pytest.mark.parametrize("ftype", ["Q4_K_M", "Q5_0"])
def test_bytes_independent_of_threads(ftype, run_smolq, big_f16, out_dir):
    files = []
    for threads in (1, 2, 3):
        out = out_dir / f"{ftype}-t{threads}.gguf"
        quantize(run_smolq, big_f16, out, ftype, "-t", threads)
        files.append(out.read_bytes())
        out.unlink()
    assert all(f == files[0] for f in files[1:]), f"{ftype}: bytes differ between thread counts"


def test_bytes_independent_of_threads_with_imatrix(run_smolq, big_f16, wikitext, out_dir):
    """Q2_K_S (imatrix required; the IQ and K-quant searches use the weights) at 1 and 3
    threads, and a second run at 3."""
    imat = llama_imatrix(big_f16, wikitext(12000, split="valid"), "syn-big")
    files = []
    for i, threads in enumerate((1, 3, 3)):
        out = out_dir / f"q2ks-{i}.gguf"
        quantize(run_smolq, big_f16, out, "Q2_K_S", "--imatrix", imat, "-t", threads)
        files.append(out.read_bytes())
        out.unlink()
    assert files[0] == files[1] == files[2]


# --- refusals --------------------------------------------------------------------------------

def test_q2_k_s_needs_an_imatrix(run_smolq, syn_f16, out_dir):
    out = out_dir / "q2ks.gguf"
    proc = quantize(run_smolq, syn_f16, out, "Q2_K_S", check=False)
    assert_refused(proc, out, "Q2_K_S", "importance matrix", "--imatrix", code=2)


def test_truncated_imatrix(run_smolq, syn_f16, syn_imatrix, out_dir):
    for fmt, path in syn_imatrix.items():
        bad = out_dir / f"truncated.{fmt}"
        data = path.read_bytes()
        bad.write_bytes(data[: len(data) * 2 // 3])
        out = out_dir / f"out-{fmt}.gguf"
        proc = quantize(run_smolq, syn_f16, out, "Q4_K_M", "--imatrix", bad, check=False)
        assert_refused(proc, out, str(bad), code=1)


def test_wrong_magic_imatrix(run_smolq, syn_f16, syn_imatrix, out_dir):
    bad = out_dir / "wrong-magic.gguf"
    data = bytearray(syn_imatrix["gguf"].read_bytes())
    data[:4] = b"GGUG"
    bad.write_bytes(bytes(data))
    out = out_dir / "out.gguf"
    proc = quantize(run_smolq, syn_f16, out, "Q4_K_M", "--imatrix", bad, check=False)
    assert_refused(proc, out, str(bad), code=1)
    # A model file given as the imatrix is named as such.
    proc = quantize(run_smolq, syn_f16, out, "Q4_K_M", "--imatrix", syn_f16, check=False)
    assert_refused(proc, out, "not 'imatrix'", code=1)


def test_imatrix_of_another_model_names_the_tensor(run_smolq, real_f16, syn_imatrix, out_dir):
    """The synthetic model's imatrix (rows of 256) used on the real 135M (rows of 576)."""
    out = out_dir / "out.gguf"
    proc = quantize(run_smolq, real_f16, out, "Q4_K_M", "--imatrix", syn_imatrix["gguf"], check=False)
    assert_refused(proc, out, "another model", code=1)
    m = re.search(r"'(blk\.\d+\.\w+\.weight)'", proc.stderr)
    assert m, f"no tensor named in: {proc.stderr}"
    assert "256" in proc.stderr and "576" in proc.stderr


def test_requantize_needs_permission_and_warns(run_smolq, syn_f16, out_dir):
    q4 = out_dir / "q4_0.gguf"
    quantize(run_smolq, syn_f16, q4, "Q4_0")
    out = out_dir / "requant.gguf"
    proc = quantize(run_smolq, q4, out, "Q4_K_M", check=False)
    assert_refused(proc, out, "--allow-requantize", "Q4_0 -> Q4_K", code=2)
    proc = quantize(run_smolq, q4, out, "Q4_K_M", "--allow-requantize")
    assert "warning: requantizing" in proc.stderr
    assert out.exists()
    # llama.cpp reads the result.
    import llama_cpp
    llama_cpp.Llama(model_path=str(out), n_ctx=32, verbose=False).close()


def test_same_input_and_output_refused(run_smolq, syn_f16, out_dir):
    copy = out_dir / "model.gguf"
    shutil.copyfile(syn_f16, copy)
    before = copy.read_bytes()
    proc = quantize(run_smolq, copy, copy, "Q4_0", check=False)
    assert proc.returncode == 2 and "same file" in proc.stderr
    assert copy.read_bytes() == before


# --- imatrix formats -------------------------------------------------------------------------

@pytest.mark.parametrize("ftype", ["Q4_K_M", "Q2_K_S", "IQ3_XXS"])
def test_gguf_and_dat_imatrix_give_identical_tensors(ftype, run_smolq, syn_f16, syn_imatrix, out_dir):
    """llama-imatrix wrote the same statistics twice, as GGUF (sums and token counts) and as
    legacy .dat (mean * ncall): the quantized tensors are byte for byte the same. (Only the
    recorded quantize.imatrix.file differs.)"""
    got = {}
    for fmt, path in syn_imatrix.items():
        out = out_dir / f"{ftype}-{fmt}.gguf"
        quantize(run_smolq, syn_f16, out, ftype, "--imatrix", path, "-t", THREADS)
        got[fmt] = tensor_bytes(out)
        meta = fields(out, "quantize.imatrix.")
        assert meta["quantize.imatrix.file"][1] == str(path)
        assert meta["quantize.imatrix.chunks_count"][1] == 4
    assert got["gguf"].keys() == got["dat"].keys()
    differ = [n for n in got["gguf"] if got["gguf"][n] != got["dat"][n]]
    assert not differ, f"{ftype}: tensors differ between the GGUF and .dat imatrix: {differ}"


# --- --dry-run and the printed figures -------------------------------------------------------

def test_dry_run_writes_nothing_and_prints_the_plan(run_smolq, syn_f16, out_dir):
    out = out_dir / "planned.gguf"
    proc = quantize(run_smolq, syn_f16, out, "Q4_K_M", "--dry-run")
    assert not out.exists() and list(out_dir.iterdir()) == []
    lines = proc.stdout.strip().splitlines()
    # one line per tensor, the totals, then the exact size of the file it would write
    assert len(lines) == len(tensor_types(syn_f16)) + 2
    assert re.search(r"blk\.0\.attn_q\.weight\s.*f16\s+-> q4_K", proc.stdout)
    assert re.search(r"Q4_K_M: 21 tensors, \d+ weights, \d+ bytes \([\d.]+ MiB\), [\d.]+ bits per weight", lines[-2])
    m = re.fullmatch(r"output file: (\d+) bytes \(.*\)", lines[-1])
    assert m, lines[-1]
    real = out_dir.parent / "real.gguf"
    quantize(run_smolq, syn_f16, real, "Q4_K_M")
    assert int(m.group(1)) == real.stat().st_size
    real.unlink()
    # The two-argument form, and a plan that would need an imatrix is shown, not refused.
    proc = quantize(run_smolq, syn_f16, "Q2_K_S", "--dry-run")
    assert "needs an importance matrix" in proc.stdout
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("ftype,bpw", [("Q2_K", "5.14"), ("Q4_K_M", "6.17"), ("Q6_K", "8.12")])
def test_real_135m_effective_bits_per_weight(ftype, bpw, run_smolq, real_f16):
    """The real numbers of SmolLM2-135M (576-wide rows fall back to 32-element formats), as
    llama-quantize prints them."""
    proc = quantize(run_smolq, real_f16, ftype, "--dry-run")
    assert f"{bpw} bits per weight" in proc.stdout.splitlines()[-2]
    theirs = tool("llama-quantize")
    from quantize_tools import run
    log = run(theirs, "--dry-run", real_f16, ftype)
    assert f"({bpw} BPW)" in log.stdout + log.stderr


def test_write_summary_bits_per_weight(run_smolq, syn_f16, out_dir):
    """The summary after writing: bits per weight = 8 * tensor bytes / weights, checked
    against the file gguf-py reads."""
    import gguf
    out = out_dir / "q5km.gguf"
    proc = quantize(run_smolq, syn_f16, out, "Q5_K_M")
    printed = float(re.search(r"effective ([\d.]+) bits per weight", proc.stdout).group(1))
    r = gguf.GGUFReader(str(out))
    nbytes = sum(int(t.n_bytes) for t in r.tensors)
    nweights = sum(int(t.n_elements) for t in r.tensors)
    assert abs(printed - 8 * nbytes / nweights) < 1e-4
    assert f"{out.stat().st_size} bytes)" in proc.stdout


# --- options next to llama-quantize ----------------------------------------------------------

OPTION_CASES = {
    "pure": ("Q4_K_M", ["--pure"]),
    "tensor-type": ("Q4_K_M", ["--tensor-type", "attn_v=q8_0", "--tensor-type", "ffn_down=q5_k"]),
    "tensor-type-regex": ("Q3_K_M", ["--tensor-type", r"blk\.1\.ffn_(up|gate)=iq4_xs"]),
    "output-tensor-type": ("Q4_K_M", ["--output-tensor-type", "q4_0"]),
    "token-embedding-type": ("Q5_K_S", ["--token-embedding-type", "q5_1"]),
    "leave-output-tensor": ("Q4_K_M", ["--leave-output-tensor"]),
    "all-together": ("Q3_K_L", ["--pure", "--token-embedding-type", "q8_0", "--output-tensor-type", "f16",
                                "--tensor-type", "attn_q=q2_k"]),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_options_plan_like_llama_quantize(case, run_smolq, syn_f16, real_f16):
    """Per-tensor types of our --dry-run equal llama-quantize --dry-run's, on the synthetic
    model (untied: has output.weight) and the real 135M (tied; 576-wide fallbacks)."""
    ftype, opts = OPTION_CASES[case]
    for model in (syn_f16, real_f16):
        theirs = llama_dry_run_types(model, ftype, *opts)
        proc = run_smolq("quantize", model, ftype, "--dry-run", *opts)
        ours = {}
        for line in proc.stdout.splitlines()[:-2]:
            parts = line.split()
            ours[parts[0]] = parts[parts.index("->") + 1].upper()
        assert ours == theirs, {n: (t, theirs.get(n)) for n, t in ours.items() if theirs.get(n) != t}


def test_forced_type_that_does_not_fit_is_refused(run_smolq, real_f16):
    """--token-embedding-type / --output-tensor-type are used as given by llama-quantize, with
    no fallback: Q6_K on SmolLM2's 576-wide embedding passes its --dry-run and then cannot be
    quantized. smolq refuses it up front and says why."""
    proc = run_smolq("quantize", real_f16, "Q5_K_S", "--dry-run", "--token-embedding-type", "q6_k", check=False)
    assert proc.returncode == 2
    assert "token_embd.weight" in proc.stderr and "576" in proc.stderr and "256" in proc.stderr


@pytest.mark.parametrize("case", ["pure", "tensor-type", "leave-output-tensor"])
def test_options_files_like_llama_quantize(case, run_smolq, syn_f16, out_dir):
    """The same options on real files: gguf-py reads the same tensor types from both."""
    ftype, opts = OPTION_CASES[case]
    ours, theirs = out_dir / "ours.gguf", out_dir / "theirs.gguf"
    quantize(run_smolq, syn_f16, ours, ftype, *opts, "-t", THREADS)
    llama_quantize(syn_f16, theirs, ftype, *opts)
    assert tensor_types(ours) == tensor_types(theirs)


def test_include_exclude_weights(run_smolq, syn_f16, syn_imatrix, out_dir):
    """--exclude-weights: those tensors come out exactly as without an imatrix, the others
    exactly as with it; --include-weights the reverse; quantize.imatrix.entries_count counts
    the entries left, as llama-quantize's does; giving both is refused, as llama-quantize does."""
    imat = syn_imatrix["gguf"]

    def make(name, *args):
        out = out_dir / f"{name}.gguf"
        quantize(run_smolq, syn_f16, out, "Q4_K_M", *args)
        return out
    plain, full = tensor_bytes(make("plain")), tensor_bytes(make("full", "--imatrix", imat))
    excl_path = make("excl", "--imatrix", imat, "--exclude-weights", "ffn_down", "--exclude-weights", "attn_v")
    incl_path = make("incl", "--imatrix", imat, "--include-weights", "blk.1.")
    for path, used in ((excl_path, lambda n: "ffn_down" not in n and "attn_v" not in n),
                       (incl_path, lambda n: n.startswith("blk.1."))):
        got = tensor_bytes(path)
        for n, b in got.items():
            if plain[n] == full[n]:
                continue  # not quantized, or the imatrix makes no difference
            assert b == (full[n] if used(n) else plain[n]), f"{path.name}: {n}"
    theirs = out_dir / "theirs-excl.gguf"
    llama_quantize(syn_f16, theirs, "Q4_K_M", "--exclude-weights", "ffn_down", "--exclude-weights", "attn_v",
                   imatrix=imat)
    ours_meta, their_meta = fields(excl_path, "quantize.imatrix."), fields(theirs, "quantize.imatrix.")
    assert ours_meta["quantize.imatrix.entries_count"] == their_meta["quantize.imatrix.entries_count"]
    assert ours_meta["quantize.imatrix.entries_count"][1] == 14 - 4

    out = out_dir / "both.gguf"
    proc = quantize(run_smolq, syn_f16, out, "Q4_K_M", "--imatrix", imat, "--include-weights", "attn",
                    "--exclude-weights", "ffn", check=False)
    assert_refused(proc, out, "cannot be used together", code=2)


def test_metadata_like_llama_quantize(run_smolq, syn_f16, syn_imatrix, out_dir):
    """Both quantizers given the same imatrix path and the same --override-kv list: the keys
    each writes on top of the source's have the same GGUF types and values."""
    imat = syn_imatrix["gguf"]
    overrides = ["--override-kv", "general.name=str:overridden", "--override-kv", "llama.context_length=int:4096",
                 "--override-kv", "tokenizer.ggml.add_bos_token=bool:false",
                 "--override-kv", "llama.rope.freq_base=float:12345.5"]
    ours, theirs = out_dir / "ours.gguf", out_dir / "theirs.gguf"
    quantize(run_smolq, syn_f16, ours, "Q4_K_M", "--imatrix", imat, *overrides)
    llama_quantize(syn_f16, theirs, "Q4_K_M", *overrides, imatrix=imat)
    mine, their = fields(ours), fields(theirs)
    # (The F16 source came from smolq convert, so general.quantized_by is in both.)
    assert mine["general.quantized_by"][1].startswith("smolq ")
    assert mine == their, {k: (mine.get(k), their.get(k)) for k in set(mine) | set(their) if mine.get(k) != their.get(k)}
    assert mine["llama.context_length"] == ("UINT32", 4096)
    assert mine["quantize.imatrix.file"] == ("STRING", str(imat))
    # llama.cpp loads it and sees the overrides.
    import llama_cpp
    m = llama_cpp.Llama(model_path=str(ours), n_ctx=32, verbose=False)
    assert m.metadata["general.name"] == "overridden"
    m.close()
