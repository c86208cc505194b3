#!/usr/bin/env bash
# bench/optimize: wall time, CPU time and peak RSS (GNU time) of `smolq quantize --optimize`
# against the plain ways to make the same file type from the same F16 GGUF, on 2 threads:
#   - the real SmolLM2-135M-Instruct (576 wide, 30 layers, tied);
#   - a SmolLM2-1.7B-shaped model with random weights (2048 wide, FFN 8192, 24 layers, 32/32
#     heads, tied; bf16 safetensors written here, ~3.4 GB, then converted to F16).
# Three baselines, all printed:
#   plain     `smolq quantize F16 OUT TYPE`: the plain quantizer alone, no calibration text;
#   pipeline  `smolq imatrix` on the same calibration text (same chunks x 512 tokens) followed by
#             `smolq quantize --imatrix`: how smolq's plain file of issue 17's quality table is
#             made, and what a user who has calibration text runs instead of --optimize (which
#             takes its importance from the calibration pass, no imatrix needed). Its time and
#             CPU are the two commands' sums, its peak the larger one;
#   llama.cpp `llama-imatrix` + `llama-quantize --imatrix` (same text, chunks and threads): how
#             llama.cpp's file of that table is made. The peer is bench/build_llama_peer.sh's
#             build (AVX-512 with VNNI/BF16, AMX off; its flags are printed); PEER=none skips it.
# Issue 17's target: optimised <= 10x the plain time and <= 2x its peak memory. A verdict per
# baseline closes each model's table, with the two floors that bound the ratios to the plain
# quantizer alone: the calibration forward pass by itself (smolq imatrix, one stream of the two
# that --optimize runs) against the plain quantizer's CPU time, and what the pass must hold at
# ffn_down (its H's lower triangle, both streams' residuals and ffn_down inputs of every
# calibration token) against the plain quantizer's peak. The commands
# alternate (plain, pipeline, llama.cpp, optimised, then again with REPS > 1) and the best of
# each is shown.
#   bench/bench_optimize.sh                 both models, Q4_K_M
#   TYPE=IQ4_XS CHUNKS=4 bench/bench_optimize.sh
#   MODELS=135m bench/bench_optimize.sh     only the real model
#   F16_1_7B=/path/1.7b-f16.gguf            an already converted 1.7B-shaped F16 file
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="${SMOLQ_BUILD_DIR:-$here/build}"
smolq="$build/smolq"
py="$here/.venv/bin/python"
threads="${SMOLQ_BENCH_THREADS:-2}"
type="${TYPE:-Q4_K_M}"
chunks="${CHUNKS:-8}"
models="${MODELS:-135m 1.7b}"
reps="${REPS:-1}"
calib="${CALIB:-$here/../shared/assets/wikitext-2-raw/wiki.valid.raw}"
work="${BENCH_WORK:-$build/bench-optimize}"
[ -x "$smolq" ] || { echo "build smolq first: bash scripts/setup.sh" >&2; exit 1; }
[ -f "$calib" ] || { echo "no calibration text $calib (set CALIB)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time; scripts/setup.sh installs it)" >&2; exit 1; }
tools=""
if [ "${PEER:-best}" != none ]; then
  bash "$here/bench/build_llama_peer.sh"   # builds once, then reuses; prints the peer's flags
  tools="${LLAMA_PEER_DIR:-$here/build/llama-peer}/bin"
  [ -x "$tools/llama-imatrix" ] || { echo "no llama-imatrix in $tools (PEER=none to skip llama.cpp)" >&2; exit 1; }
fi
mkdir -p "$work"

f16_of() {  # model -> F16 GGUF (cached in $work)
  local m=$1 f16="$work/$1-f16.gguf"
  if [ "$m" = 1.7b ] && [ -n "${F16_1_7B:-}" ]; then echo "$F16_1_7B"; return; fi
  if [ ! -f "$f16" ]; then
    local ckpt
    if [ "$m" = 135m ]; then
      "$py" "$here/scripts/make_fixtures.py" --only smollm2-135m-instruct -q
      ckpt="$here/testdata/generated/smollm2-135m-instruct"
    else
      ckpt="$work/hf-1.7b"
      [ -f "$ckpt/model.safetensors.index.json" ] || "$py" "$here/bench/make_shaped_model.py" "$ckpt" >&2
    fi
    "$smolq" convert "$ckpt" -o "$f16.tmp" --outtype f16 -t "$threads" -q >/dev/null
    mv "$f16.tmp" "$f16"
  fi
  echo "$f16"
}

# One measurement: prints "wall_s peak_rss_MB cpu_s" (CPU = user + system: on a shared machine
# wall time depends on the other load, CPU time much less)
measure() {
  /usr/bin/time -f "%e %M %U %S" -o "$work/time.txt" "$@" >/dev/null 2>"$work/stderr.txt" ||
    { cat "$work/stderr.txt" >&2; echo "failed: $*" >&2; exit 1; }
  awk '{ printf "%.2f %.1f %.2f\n", $1, $2 / 1024, $3 + $4 }' "$work/time.txt" | tail -1
}

# Best of two measurements (by CPU time: on a shared machine it moves least with the load).
best_of() { printf "%s\n%s\n" "$1" "$2" | awk 'NF' | sort -k3,3n | head -1; }
# Two commands run one after the other: times and CPU add up, the peak is the larger.
chain() { awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
  printf "%.2f %.1f %.2f\n", x[1] + y[1], (x[2] > y[2] ? x[2] : y[2]), x[3] + y[3] }'; }
row() {  # model command "wall peak cpu" [baseline "wall peak cpu"]
  awk -v m="$1" -v c="$2" -v r="$3" -v b="${4:-}" 'BEGIN { split(r, x, " ");
    printf "%-6s %-28s %9.2f %12.1f %9.2f", m, c, x[1], x[2], x[3];
    if (b != "") { split(b, y, " "); printf " %8.2fx %8.2fx %8.2fx", x[1] / y[1], x[2] / y[2], x[3] / y[3] }
    printf "\n" }'
}

verdict() {  # model baseline-name "wall peak cpu" "baseline wall peak cpu"
  awk -v m="$1" -v b="$2" -v r="$3" -v q="$4" 'BEGIN { split(r, x, " "); split(q, y, " ");
    t = x[3] / y[3]; p = x[2] / y[2];
    printf "%-6s target vs %-30s CPU %6.2fx (<= 10x: %s), peak %5.2fx (<= 2x: %s)\n", m, b, t,
      (t <= 10 ? "met" : "NOT met"), p, (p <= 2 ? "met" : "NOT met") }'
}

printf "smolq %s, %s threads, %s, calibration %s x 512 tokens of %s\n" "$("$smolq" --version 2>/dev/null | head -1)" \
  "$threads" "$type" "$chunks" "$(basename "$calib")"
printf "%-6s %-28s %9s %12s %9s %9s %9s %9s\n" model command wall_s peak_rss_MB cpu_s wall/base rss/base cpu/base
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for m in $models; do
  f16=$(f16_of "$m")
  cat "$f16" > /dev/null  # warm the page cache: compare work, not disk reads
  best_p=""; best_i=""; best_q=""; best_o=""; best_li=""; best_lq=""
  for ((i = 0; i < reps; i++)); do
    p=$(measure "$smolq" quantize "$f16" "$work/$m-plain.gguf" "$type" -t "$threads" -q)
    im=$(measure "$smolq" imatrix -m "$f16" -f "$calib" -o "$work/$m-imatrix.gguf" --chunks "$chunks" -c 512 \
          --no-ppl -t "$threads" -q)
    q=$(measure "$smolq" quantize "$f16" "$work/$m-imat.gguf" "$type" -t "$threads" -q --imatrix "$work/$m-imatrix.gguf")
    if [ -n "$tools" ]; then
      li=$(measure "$tools/llama-imatrix" -m "$f16" -f "$calib" -o "$work/$m-llama-imatrix.gguf" --chunks "$chunks" \
            -c 512 -b 512 --no-ppl -t "$threads")
      lq=$(measure "$tools/llama-quantize" --imatrix "$work/$m-llama-imatrix.gguf" "$f16" "$work/$m-llama.gguf" \
            "$type" "$threads")
      best_li=$(best_of "$best_li" "$li")
      best_lq=$(best_of "$best_lq" "$lq")
    fi
    o=$(measure "$smolq" quantize "$f16" "$work/$m-opt.gguf" "$type" -t "$threads" -q \
          --optimize --calib "$calib" --opt-chunks "$chunks")
    best_p=$(best_of "$best_p" "$p")
    best_i=$(best_of "$best_i" "$im")
    best_q=$(best_of "$best_q" "$q")
    best_o=$(best_of "$best_o" "$o")
  done
  # Same tensors and types: the files differ only by the smolq.optimize.* / imatrix metadata keys.
  for f in opt imat; do
    extra=$(( $(stat -c %s "$work/$m-$f.gguf") - $(stat -c %s "$work/$m-plain.gguf") ))
    [ "$extra" -gt -1024 ] && [ "$extra" -lt 1024 ] ||
      { echo "plain and $f $m files differ by $extra bytes" >&2; exit 1; }
  done
  pipe=$(chain "$best_i" "$best_q")
  row "$m" "plain: quantize" "$best_p"
  row "$m" "  imatrix ($chunks x 512)" "$best_i"
  row "$m" "  quantize --imatrix" "$best_q"
  row "$m" "pipeline: imatrix + quantize" "$pipe"
  if [ -n "$tools" ]; then
    lpipe=$(chain "$best_li" "$best_lq")
    row "$m" "  llama-imatrix ($chunks x 512)" "$best_li"
    row "$m" "  llama-quantize --imatrix" "$best_lq"
    row "$m" "llama.cpp: imatrix + quantize" "$lpipe"
  fi
  row "$m" "--optimize / plain" "$best_o" "$best_p"
  row "$m" "--optimize / pipeline" "$best_o" "$pipe"
  [ -n "$tools" ] && row "$m" "--optimize / llama.cpp" "$best_o" "$lpipe"
  # Verdicts and floors (CPU time: the ratio that moves least with the other load).
  # The model's widths (n_embd, n_ff) from its GGUF: the memory floor below.
  read -r n_embd n_ff < <("$py" -c 'import sys, gguf
r = gguf.GGUFReader(sys.argv[1])
f = {k: v for k, v in r.fields.items() if k.endswith(".embedding_length") or k.endswith(".feed_forward_length")}
get = lambda suffix: [int(v.parts[v.data[0]][0]) for k, v in f.items() if k.endswith(suffix)][0]
print(get(".embedding_length"), get(".feed_forward_length"))' "$f16")
  verdict "$m" "plain quantize alone" "$best_o" "$best_p"
  verdict "$m" "smolq imatrix + quantize" "$best_o" "$pipe"
  [ -n "$tools" ] && verdict "$m" "llama.cpp imatrix + quantize" "$best_o" "$lpipe"
  # Floors of the ratios to the plain quantizer alone. Time: the calibration forward pass by
  # itself (smolq imatrix: one stream; --optimize's default runs two). Memory: what the pass
  # must hold at the widest site, ffn_down: the lower triangle of its H (n_ff (n_ff + 1) / 2
  # floats) and, for each of the two streams, the residuals (n_embd) and ffn_down's inputs (n_ff)
  # of all N calibration tokens.
  awk -v m="$m" -v i="$best_i" -v p="$best_p" -v e="$n_embd" -v f="$n_ff" -v n="$((chunks * 512))" 'BEGIN {
    split(i, x, " "); split(p, y, " ");
    tri = f * (f + 1) / 2 * 4 / 1048576; act = 2 * n * (e + f) * 4 / 1048576;
    printf "%-6s floor (time): the calibration forward pass alone (smolq imatrix, one stream) is %.1fx the plain CPU time; the default runs two\n", m, x[3] / y[3];
    printf "%-6s floor (memory): ffn_down'"'"'s H triangle %.0f MiB + two streams'"'"' residuals and ffn_down inputs of %d tokens %.0f MiB = %.2fx the plain peak\n", m, tri, n, act, (tri + act) / y[2] }'
  rm -f "$work/$m-plain.gguf" "$work/$m-opt.gguf" "$work/$m-imat.gguf" "$work/$m-imatrix.gguf" \
    "$work/$m-llama.gguf" "$work/$m-llama-imatrix.gguf"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
