#!/usr/bin/env bash
# bench/quantize: seconds to quantize one F16 GGUF into each file type with `smolq quantize`
# and with llama.cpp's own quantizer (the llama-quantize built by scripts/build_llama_tools.sh),
# same input, same thread count (2), and both outputs' error:
#   rmse  = relative RMSE of every quantized weight against the F16 source,
#           sqrt(sum (dequant - f16)^2 / sum f16^2), decoded by llama.cpp's own ggml (the
#           llama-cpp-python wheel's libggml-base, through tests/python/quantize_tools.py), so
#           independent of smolq; RMSE=0 skips it;
#   ppl   = llama.cpp's perplexity (llama-cpp-python) on the first PPL_TOKENS tokens of the
#           WikiText-2 test split, real model only (random weights have no meaningful PPL);
#           PPL_TOKENS=0 skips it (nan in the table).
# Inputs: `smolq convert --outtype f16` of the real SmolLM2-135M-Instruct (576-wide rows: most
# tensors take 32-element fallbacks) and of the synthetic aligned256-bf16 (every width a
# multiple of 256, real 49k vocabulary). File types that need an importance matrix get
# llama-imatrix's, computed once on a WikiText-2 validation excerpt; both quantizers get it.
# Every file type by default. llama-quantize has no NVFP4 file type: it gets smolq's plan tensor
# by tensor (--tensor-type-file over Q8_0), so the NVFP4 row compares the two NVFP4 quantizers.
# A type neither can make for a model (Q1_0: 128-weight blocks, no fallback, 576-wide rows) is
# printed as refused when both refuse, and stops the bench when only one does.
#
#   bench/bench_quantize.sh                          all models, default types
#   TYPES="Q4_K_M Q6_K" MODELS=real bench/bench_quantize.sh
#   THREADS=2 PPL_TOKENS=256 REPEAT=1 SMOLQ_BUILD_DIR=build ...
#
# The peer is llama.cpp built for this CPU by bench/build_llama_peer.sh (AVX-512, VNNI, BF16
# where present, AMX off; its flags are printed first); the baseline build of
# scripts/build_llama_tools.sh (AVX2) is used only when PEER=baseline.
# Times: wall seconds (best of REPEAT runs, the two commands alternating run by run) and CPU
# seconds (user + sys of that run); every line carries the 1-minute load average at its end.
# On a shared, loaded machine wall time is noisy; the CPU column is the steadier comparison.
# The issue's target: >= 1.5x llama.cpp's speed for every file type at 2 threads with equal or
# lower error. Nothing here asserts it: the last lines print the slowest ratios per model.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="${SMOLQ_BUILD_DIR:-$here/build}"
smolq="$build/smolq"
py="$here/.venv/bin/python"
[ -x "$smolq" ] || { echo "build smolq first: bash scripts/setup.sh" >&2; exit 1; }
if [ "${PEER:-best}" = baseline ]; then
  tools="${LLAMA_TOOLS_DIR:-$here/build/llama-tools}/bin"
  echo "peer: baseline llama.cpp build (AVX2) in $tools"
else
  bash "$here/bench/build_llama_peer.sh"   # builds once, then reuses; prints the peer's flags
  tools="${LLAMA_PEER_DIR:-$here/build/llama-peer}/bin"
fi
[ -x "$tools/llama-quantize" ] || { echo "build llama.cpp's tools first: scripts/build_llama_tools.sh" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time; scripts/setup.sh installs it)" >&2; exit 1; }
"$py" "$here/scripts/make_fixtures.py" --only smollm2-135m-instruct -q
"$py" "$here/scripts/make_fixtures.py" --only aligned256-bf16 -q

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SMOLQ="$smolq" TOOLS="$tools" WORK="$work" HERE="$here"
export THREADS="${THREADS:-2}" PPL_TOKENS="${PPL_TOKENS:-256}" REPEAT="${REPEAT:-1}" MODELS="${MODELS:-real syn}"
export TYPES="${TYPES:-Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q2_K_S Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ1_S IQ1_M IQ2_XXS IQ2_XS IQ2_S IQ2_M IQ3_XXS IQ3_XS IQ3_S IQ3_M IQ4_NL IQ4_XS TQ1_0 TQ2_0 MXFP4_MOE NVFP4 Q2_0 Q1_0}"
export RMSE="${RMSE:-1}"
export OPENBLAS_NUM_THREADS=1

exec "$py" - <<'PY'
import os, re, subprocess, sys
from pathlib import Path
import numpy as np

sys.path.insert(0, str(Path(os.environ["HERE"]) / "tests" / "python"))
from quantize_tools import dequantize_tensor, gguf_tensor_table  # ggml's decoders, a GGUF table reader

smolq, tools, work, here = os.environ["SMOLQ"], Path(os.environ["TOOLS"]), Path(os.environ["WORK"]), Path(os.environ["HERE"])
threads, ppl_tokens, repeat = int(os.environ["THREADS"]), int(os.environ["PPL_TOKENS"]), int(os.environ["REPEAT"])
types, models = os.environ["TYPES"].split(), os.environ["MODELS"].split()
wiki = Path(here).parent / "shared" / "assets" / "wikitext-2-raw"
ckpts = {"real": here / "testdata/generated/smollm2-135m-instruct", "syn": here / "testdata/generated/aligned256-bf16"}


def sh(*args, check=True):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if check and p.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, args))}\n{p.stderr[-2000:]}")
    return p


def timed_pair(a, b):
    """Runs commands a and b alternately REPEAT times each: per command (best wall seconds,
    cpu seconds of that run)."""
    best = [None, None]
    for _ in range(repeat):
        for k, args in enumerate((a, b)):
            p = sh("/usr/bin/time", "-f", "TIME %e %U %S", *args)
            wall, user, sys_ = map(float, re.findall(r"TIME ([\d.]+) ([\d.]+) ([\d.]+)", p.stderr)[-1])
            if best[k] is None or wall < best[k][0]:
                best[k] = (wall, user + sys_)
    return best


def load():
    return float(open("/proc/loadavg").read().split()[0])


def rel_rmse(src_path, q_path):
    src = {t.name: t for t in gguf_tensor_table(src_path)}
    num = den = 0.0
    for t in gguf_tensor_table(q_path):
        s = src[t.name]
        if len(t.shape) < 2 or t.type_id == s.type_id:
            continue
        w = dequantize_tensor(src_path, s).astype(np.float64)
        num += float(((dequantize_tensor(q_path, t) - w) ** 2).sum())
        den += float((w ** 2).sum())
    return (num / den) ** 0.5 if den else 0.0


def llama_args(f16, t, plan):
    """llama-quantize's file type and options for smolq's file type t (NVFP4: our plan)."""
    if t != "NVFP4":
        return t, []
    spec = work / "nvfp4-types.txt"
    rows = re.findall(r"^(\S+)\s+\d[\d x]*\s+\S+\s+->\s+(\S+)", plan, re.M)
    spec.write_text("".join(f"^{re.escape(n)}$={ty}\n" for n, ty in rows if ty not in ("f32", "f16", "bf16")))
    return "Q8_0", ["--tensor-type-file", spec]


def perplexity(path, text):
    import llama_cpp
    m = llama_cpp.Llama(model_path=str(path), n_ctx=ppl_tokens, n_batch=ppl_tokens, logits_all=True, verbose=False,
                        n_threads=threads)
    toks = m.tokenize(text.encode(), add_bos=True)[:ppl_tokens]
    m.eval(toks)
    lg = np.array(m.scores[: len(toks)], dtype=np.float64)
    m.close()
    mx = lg.max(1, keepdims=True)
    lp = lg - (np.log(np.exp(lg - mx).sum(1, keepdims=True)) + mx)
    return float(np.exp(-lp[np.arange(len(toks) - 1), toks[1:]].mean()))


test_text = (wiki / "wiki.test.raw").read_text()[:20000]
calib = work / "calib.txt"
calib.write_text((wiki / "wiki.valid.raw").read_text()[:12000])
rows = []
print(f"threads {threads}; wall = best of {repeat}; cpu = user+sys; speedup = llama / smolq", flush=True)
hdr = (f"{'model':5} {'type':8} {'smolq s':>8} {'llama s':>8} {'speedup':>7} {'cpu x':>6} "
       f"{'smolq rmse':>10} {'llama rmse':>10} {'smolq ppl':>9} {'llama ppl':>9} {'load':>5}")
print(hdr, flush=True)
for model in models:
    f16 = work / f"{model}-f16.gguf"
    sh(smolq, "convert", ckpts[model], "-o", f16, "--outtype", "f16", "-q", "-t", threads)
    imatrix = work / f"{model}-imatrix.gguf"
    sh(tools / "llama-imatrix", "-m", f16, "-f", calib, "-o", imatrix, "-c", 256, "--chunks", 4, "-t", threads, "--no-ppl")
    base_ppl = perplexity(f16, test_text) if model == "real" and ppl_tokens > 0 else None
    for t in types:
        dry = sh(smolq, "quantize", f16, t, "--dry-run", check=False)
        plan = dry.stdout + dry.stderr
        imat = ["--imatrix", imatrix] if "needs an importance matrix" in plan else []
        ours, theirs = work / "ours.gguf", work / "theirs.gguf"
        lt, lopts = llama_args(f16, t, plan)
        if dry.returncode != 0:
            theirs_dry = sh(tools / "llama-quantize", "--dry-run", *imat, f16, lt, check=False)
            if theirs_dry.returncode == 0:
                sys.exit(f"smolq refuses {t} on {model}, llama-quantize does not:\n{plan[-2000:]}")
            print(f"{model:5} {t:8} refused by both: {plan.strip().splitlines()[-1][:90]}", flush=True)
            continue
        (ow, oc), (lw, lc) = timed_pair([smolq, "quantize", f16, ours, t, *imat, "-t", threads, "-q"],
                                        [tools / "llama-quantize", *lopts, *imat, f16, theirs, lt, threads])
        oe = le = float("nan")
        if os.environ["RMSE"] == "1":
            oe, le = rel_rmse(f16, ours), rel_rmse(f16, theirs)
        op = lp = float("nan")
        if model == "real" and ppl_tokens > 0:
            op, lp = perplexity(ours, test_text), perplexity(theirs, test_text)
        line = (f"{model:5} {t + ('*' if imat else ''):8} {ow:8.2f} {lw:8.2f} {lw / ow:6.2f}x {lc / oc:5.2f}x "
                f"{oe:10.5f} {le:10.5f} {op:9.3f} {lp:9.3f} {load():5.1f}")
        print(line, flush=True)
        rows.append((model, t, lw / ow, lc / oc, oe <= le * (1 + 1e-6) or not oe == oe))
        ours.unlink(); theirs.unlink()
    if base_ppl:
        print(f"{model:5} F16 source perplexity {base_ppl:.3f} on {ppl_tokens} tokens", flush=True)
print("* = quantized with llama-imatrix's importance matrix (the file type requires one), by both")
for model in models:
    mine = [r for r in rows if r[0] == model]
    if not mine:
        continue
    wall, cpu = min(mine, key=lambda r: r[2]), min(mine, key=lambda r: r[3])
    worse = [r[1] for r in mine if not r[4]]
    print(f"{model}: slowest wall ratio {wall[2]:.2f}x ({wall[1]}), slowest CPU ratio {cpu[3]:.2f}x ({cpu[1]}); "
          f"types below 1.5x wall: {' '.join(r[1] for r in mine if r[2] < 1.5) or 'none'}; "
          f"higher rmse than llama.cpp: {' '.join(worse) or 'none'}")
PY
