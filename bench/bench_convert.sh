#!/usr/bin/env bash
# bench/convert: wall time and peak RSS of `smolq convert` on the real SmolLM2-135M-Instruct
# checkpoint (bf16 safetensors, 269 MB) to F16 and Q8_0, on 1 and 2 threads.
# Peak RSS is also given as a fraction of the checkpoint size: convert maps its input and keeps
# about one output tensor in memory, so it should stay a small fraction of the model.
# (llama.cpp's converter, the natural peer, needs torch + transformers, which are not
# installable here without multi-gigabyte CUDA wheels; it is not measured.)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="${SMOLQ_BUILD_DIR:-$here/build}"
smolq="$build/smolq"
py="$here/.venv/bin/python"
[ -x "$smolq" ] || { echo "build smolq first: bash scripts/setup.sh" >&2; exit 1; }
"$py" "$here/scripts/make_fixtures.py" --only smollm2-135m-instruct -q
ckpt="$here/testdata/generated/smollm2-135m-instruct"
ck_bytes=$(stat -c %s "$ckpt/model.safetensors")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

printf "%-6s %7s %9s %11s %10s %10s\n" type threads wall_s peak_rss_MB rss/ckpt out_MB
for type in f16 q8_0; do
  for threads in 1 2; do
    # Warm the page cache once so runs compare compute, not the first disk read.
    cat "$ckpt/model.safetensors" > /dev/null
    stats=$( { /usr/bin/time -f "%e %M" "$smolq" convert "$ckpt" -o "$out/m.gguf" --outtype "$type" -t "$threads" -q >/dev/null; } 2>&1 | tail -1)
    wall=${stats% *}; rss_kb=${stats#* }
    size=$(stat -c %s "$out/m.gguf")
    awk -v t="$type" -v th="$threads" -v w="$wall" -v r="$rss_kb" -v c="$ck_bytes" -v s="$size" \
      'BEGIN { printf "%-6s %7d %9.2f %11.1f %9.1f%% %10.1f\n", t, th, w, r/1024, 100*r*1024/c, s/1048576 }'
  done
done
