#!/usr/bin/env bash
# bench/memory: peak RSS of the commands that stream a whole model — convert (plain and
# quantized types, straight from the checkpoint) and quantize (F16 GGUF -> K-quants) — on the
# real SmolLM2-135M-Instruct (bf16 safetensors, 269 MB), 2 threads.
# These commands map their input and keep about one tensor (and its output) in memory, so peak
# RSS should stay a fraction of the input and output sizes; the `rss/in` column shows it.
# (bench/bench_convert.sh has convert's wall time on 1 and 2 threads.)
#   bench/bench_memory.sh              all rows
#   SMOLQ_BUILD_DIR=build-x ...        another build
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="${SMOLQ_BUILD_DIR:-$here/build}"
smolq="$build/smolq"
py="$here/.venv/bin/python"
threads="${SMOLQ_BENCH_THREADS:-2}"
[ -x "$smolq" ] || { echo "build smolq first: bash scripts/setup.sh" >&2; exit 1; }
"$py" "$here/scripts/make_fixtures.py" --only smollm2-135m-instruct -q
ckpt="$here/testdata/generated/smollm2-135m-instruct"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# One row: label, input bytes, output file, command...
row() {
  local label=$1 in_bytes=$2 outfile=$3
  shift 3
  local stats wall rss_kb size
  # GNU time writes its figures to a file (-o): the command's own output is discarded, and
  # a redirect of stderr would take time's report with it.
  /usr/bin/time -f "%e %M" -o "$out/time.txt" "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
  stats=$(tail -1 "$out/time.txt")
  wall=${stats% *}; rss_kb=${stats#* }
  size=$(stat -c %s "$outfile")
  awk -v l="$label" -v w="$wall" -v r="$rss_kb" -v i="$in_bytes" -v s="$size" \
    'BEGIN { printf "%-28s %8.2f %11.1f %8.1f%% %9.1f %9.1f\n", l, w, r/1024, 100*r*1024/i, i/1048576, s/1048576 }'
}

ck_bytes=$(stat -c %s "$ckpt/model.safetensors")
cat "$ckpt/model.safetensors" > /dev/null  # warm the page cache: compare work, not disk reads
printf "%-28s %8s %11s %9s %9s %9s\n" command wall_s peak_rss_MB rss/in in_MB out_MB
row "convert --outtype f16" "$ck_bytes" "$out/f16.gguf" \
  "$smolq" convert "$ckpt" -o "$out/f16.gguf" --outtype f16 -t "$threads" -q
for type in Q8_0 Q4_K_M; do
  row "convert --type $type" "$ck_bytes" "$out/c-$type.gguf" \
    "$smolq" convert "$ckpt" -o "$out/c-$type.gguf" --type "$type" -t "$threads" -q
done
f16_bytes=$(stat -c %s "$out/f16.gguf")
for type in Q8_0 Q4_K_M Q6_K; do
  row "quantize f16 -> $type" "$f16_bytes" "$out/q-$type.gguf" \
    "$smolq" quantize "$out/f16.gguf" "$out/q-$type.gguf" "$type" -t "$threads"
done
