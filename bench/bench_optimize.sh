#!/usr/bin/env bash
# bench/optimize: wall time and peak RSS (GNU time) of `smolq quantize --optimize` against the
# plain `smolq quantize` of the same file type, from the same F16 GGUF, on 2 threads:
#   - the real SmolLM2-135M-Instruct (576 wide, 30 layers, tied);
#   - a SmolLM2-1.7B-shaped model with random weights (2048 wide, FFN 8192, 24 layers, 32/32
#     heads, tied; bf16 safetensors written here, ~3.4 GB, then converted to F16).
# Issue 17's target: optimised <= 10x the plain time and <= 2x its peak memory. The two commands
# alternate (plain, optimised, plain, optimised) and the best of each is shown.
#   bench/bench_optimize.sh                 both models, Q4_K_M
#   TYPE=IQ4_XS CHUNKS=4 bench/bench_optimize.sh
#   MODELS=135m bench/bench_optimize.sh     only the real model
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
mkdir -p "$work"

f16_of() {  # model -> F16 GGUF (cached in $work)
  local m=$1 f16="$work/$1-f16.gguf"
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

printf "smolq %s, %s threads, %s, calibration %s x 512 tokens of %s\n" "$("$smolq" --version 2>/dev/null | head -1)" \
  "$threads" "$type" "$chunks" "$(basename "$calib")"
printf "%-6s %-10s %9s %12s %9s %9s %9s %9s\n" model command wall_s peak_rss_MB cpu_s t/plain rss/plain cpu/plain
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for m in $models; do
  f16=$(f16_of "$m")
  cat "$f16" > /dev/null  # warm the page cache: compare work, not disk reads
  best_p=""; best_o=""
  for ((i = 0; i < reps; i++)); do
    p=$(measure "$smolq" quantize "$f16" "$work/$m-plain.gguf" "$type" -t "$threads" -q)
    o=$(measure "$smolq" quantize "$f16" "$work/$m-opt.gguf" "$type" -t "$threads" -q \
          --optimize --calib "$calib" --opt-chunks "$chunks")
    best_p=$(printf "%s\n%s\n" "$best_p" "$p" | awk 'NF' | sort -n | head -1)
    best_o=$(printf "%s\n%s\n" "$best_o" "$o" | awk 'NF' | sort -n | head -1)
  done
  # Same tensors and types: the files differ only by the smolq.optimize.* metadata keys.
  extra=$(( $(stat -c %s "$work/$m-opt.gguf") - $(stat -c %s "$work/$m-plain.gguf") ))
  [ "$extra" -ge 0 ] && [ "$extra" -lt 1024 ] ||
    { echo "plain and optimised $m files differ by $extra bytes" >&2; exit 1; }
  read -r tp rp cp <<<"$best_p"
  read -r to ro co <<<"$best_o"
  printf "%-6s %-10s %9.2f %12.1f %9.2f %9s %9s %9s\n" "$m" plain "$tp" "$rp" "$cp" "" "" ""
  awk -v m="$m" -v tp="$tp" -v rp="$rp" -v cp="$cp" -v to="$to" -v ro="$ro" -v co="$co" \
    'BEGIN { printf "%-6s %-10s %9.2f %12.1f %9.2f %8.2fx %8.2fx %8.2fx\n", m, "optimize", to, ro, co, to / tp, ro / rp, co / cp }'
  rm -f "$work/$m-plain.gguf" "$work/$m-opt.gguf"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
