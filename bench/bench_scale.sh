#!/usr/bin/env bash
# bench/scale: wall time and peak RSS of every step of the pipeline on SmolLM2-1.7B- and
# SmolLM3-3B-shaped checkpoints (synthetic weights, BF16 safetensors in shards, made by
# bench/make_shaped_model.py), smolq next to llama.cpp's tools where they have an equivalent
# (issue 18, must-show 2). One command at a time (the 3B steps need ~6 GB each), 2 threads.
#
# Steps, per shape:
#   convert      smolq convert --outtype f16 --also Q4_K_M=...: both files in one pass
#                (llama.cpp's convert_hf_to_gguf.py needs torch, not installed here: no peer)
#   quantize     F16 -> Q4_K_M                          peer: llama-quantize
#   perplexity   F16 and Q4_K_M, CHUNKS x CTX tokens     peer: llama-perplexity
#   imatrix      F16, CHUNKS x CTX tokens                peer: llama-imatrix
#   verify       smolq verify --types Q8_0,Q6_K,Q4_K_M  (builds 3 files, KLD + PPL vs F16)
#   profile      the sensitivity profile of measured mixed precision (`quantize --target-bpw
#                --dry-run`: profile measured, plan printed, nothing written)
# and checks convert's memory bound: peak RSS < 2 x the largest tensor (BF16 source bytes)
# + the output buffers (that tensor's bytes in each output file).
#
#   bench/bench_scale.sh
#   SHAPES=1.7b CHUNKS=2 CTX=512 THREADS=2 PEER_BIN=... WORK=/tmp/x KEEP=1 bench/bench_scale.sh
#   STEPS="convert quantize" ...   a subset (convert always runs: the other steps need its F16)
#   LAYERS=1 ...                   a smoke test on 1-layer models (same widths and vocabulary)
# Disk: ~3.4 GB (1.7b) / ~6.2 GB (3b) of checkpoint plus ~2x that in GGUFs, under WORK
# (default build/scale-bench), removed at the end unless KEEP=1.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="${SMOLQ_BUILD_DIR:-$here/build}"
smolq="$build/smolq"
py="$here/.venv/bin/python"
peer="${PEER_BIN:-$here/build/llama-peer/bin}"
[ -d "$peer" ] || peer=/work/main/build/llama-peer/bin
threads="${THREADS:-2}"
chunks="${CHUNKS:-2}"
ctx="${CTX:-512}"
pctx="${PROFILE_CTX:-64}"        # the profile's calibration tokens (one chunk)
pgroups="${PROFILE_GROUPS:-4}"   # and its gain measurements (forward passes ~ 2 x this + the embedding's types)
steps=" ${STEPS:-convert quantize perplexity imatrix verify profile} "
assets="$here/../shared/assets/wikitext-2-raw"
[ -d "$assets" ] || assets=/work/shared/assets/wikitext-2-raw
test_text="$assets/wiki.test.raw"
calib_text="$assets/wiki.valid.raw"
work="${WORK:-$build/scale-bench}"
[ -x "$smolq" ] || { echo "build smolq first: bash scripts/setup.sh" >&2; exit 1; }
mkdir -p "$work"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
cp "$smolq" "$work/smolq"  # a rebuild during the (long) run must not change the binary measured
smolq="$work/smolq"
"$py" "$here/scripts/make_fixtures.py" --only smollm3-tiny-bf16 -q  # builds the tokenizer the 3b shape uses

has_peer=0
if [ -x "$peer/llama-quantize" ] && [ -x "$peer/llama-perplexity" ] && [ -x "$peer/llama-imatrix" ]; then
  has_peer=1
  cache=$(dirname "$peer")/cmake/CMakeCache.txt
  echo "peer: $peer"
  [ -f "$cache" ] && echo "peer build options: $(grep -oE '^GGML_(AVX[A-Z0-9_]*|AMX[A-Z0-9_]*|NATIVE|FMA|F16C|BMI2):BOOL=[A-Z]+' "$cache" | sed 's/:BOOL//' | tr '\n' ' ')"
  flags=$(find "$(dirname "$peer")/cmake" -path '*ggml-cpu*' -name flags.make 2>/dev/null | head -1)
  [ -n "$flags" ] && echo "peer ggml-cpu flags: $(grep -oE ' -m[a-z0-9-]+' "$flags" | sort -u | tr -d '\n')"
else
  echo "peer: no llama.cpp tools in $peer (bench/build_llama_peer.sh): smolq rows only"
fi
echo "$(nproc) CPUs, $threads threads, load average $(cut -d' ' -f1-3 /proc/loadavg), eval ${chunks} x ${ctx} tokens"
echo

# One row: shape, step, tool, extra note, command...: prints wall s, CPU s, peak RSS MB.
row() {
  local shape=$1 step=$2 tool=$3 note=$4
  shift 4
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  if ! /usr/bin/time -f "%e %U %S %M" -o "$work/time.txt" "$@" >"$work/out.txt" 2>"$work/err.txt"; then
    printf "%-5s %-22s %-17s FAILED: %s\n" "$shape" "$step" "$tool" "$(grep -v '^Command exited' "$work/err.txt" | tail -1)"
    LAST_RSS_KB=0
    return 1
  fi
  read -r wall user sys rss_kb < <(tail -1 "$work/time.txt")
  LAST_RSS_KB=$rss_kb
  awk -v s="$shape" -v st="$step" -v t="$tool" -v w="$wall" -v u="$user" -v y="$sys" -v r="$rss_kb" -v n="$note" -v l="$load" \
    'BEGIN { printf "%-5s %-22s %-17s %9.1f %9.1f %10.0f %5s  %s\n", s, st, t, w, u + y, r / 1024, l, n }'
}

# Tokens per second of a perplexity / imatrix run, from the tool's own output when it prints it.
tok_s() { awk -v w="$1" -v n="$((chunks * ctx))" 'BEGIN { printf "%.1f tok/s", n / w }'; }
last_wall() { tail -1 "$work/time.txt" | cut -d' ' -f1; }

# bytes of the largest tensor in a checkpoint folder (safetensors headers) or a GGUF file
largest_st() {
  "$py" - "$1" <<'EOF'
import json, struct, sys
from pathlib import Path
best = (0, "")
for f in sorted(Path(sys.argv[1]).glob("*.safetensors")):
    with open(f, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        h = json.loads(fh.read(n))
    for k, v in h.items():
        if k != "__metadata__":
            best = max(best, (v["data_offsets"][1] - v["data_offsets"][0], k))
print(best[0], best[1])
EOF
}
tensor_bytes_gguf() {  # FILE NAME -> bytes of that tensor
  "$py" - "$1" "$2" <<'EOF'
import sys
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
print(next(int(t.n_bytes) for t in r.tensors if t.name == sys.argv[2]))
EOF
}

printf "%-5s %-22s %-17s %9s %9s %10s %5s  %s\n" shape step tool wall_s cpu_s peak_MB load note
for shape in ${SHAPES:-1.7b 3b}; do
  ckpt="$work/hf-$shape"
  pre=()
  [ "$shape" = 3b ] && pre=(--pre-tokenizer llama-bpe)  # the fixture tokenizer's hash is unknown
  if [ ! -f "$ckpt/model.safetensors.index.json" ]; then
    row "$shape" "make checkpoint" python "bench/make_shaped_model.py" \
      "$py" "$here/bench/make_shaped_model.py" "$ckpt" --shape "$shape" ${LAYERS:+--layers "$LAYERS"}
  fi
  ck_bytes=$(du -cb "$ckpt"/*.safetensors | tail -1 | cut -f1)
  read -r big_bytes big_name < <(largest_st "$ckpt")
  f16="$work/$shape-f16.gguf"; cq4="$work/$shape-convert-q4_k_m.gguf"
  sq4="$work/$shape-q4_k_m.gguf"; lq4="$work/$shape-llama-q4_k_m.gguf"
  cat "$ckpt"/*.safetensors >/dev/null  # warm the page cache: measure work, not the first disk read
  row "$shape" "convert f16+Q4_K_M" smolq "one pass, $(awk -v b="$ck_bytes" 'BEGIN { printf "%.2f GB in", b / 1e9 }')" \
    "$smolq" convert "$ckpt" -o "$f16" --outtype f16 --also "Q4_K_M=$cq4" -t "$threads" -q "${pre[@]}"
  gguf_name=$("$py" -c "import sys; n=sys.argv[1]; print('token_embd.weight' if 'embed_tokens' in n else 'output.weight' if 'lm_head' in n else n)" "$big_name")
  out_buf=$(( $(tensor_bytes_gguf "$f16" "$gguf_name") + $(tensor_bytes_gguf "$cq4" "$gguf_name") ))
  bound=$(( 2 * big_bytes + out_buf ))
  awk -v r="$LAST_RSS_KB" -v b="$bound" -v t="$big_bytes" -v o="$out_buf" -v n="$big_name" 'BEGIN {
    printf "      convert bound: 2 x %.0f MB (largest tensor, %s) + %.0f MB (its F16 + Q4_K_M output) = %.0f MB; peak %.0f MB: %s\n",
      t / 1048576, n, o / 1048576, b / 1048576, r / 1024, (r * 1024 < b ? "within" : "OVER") }'

  if [[ "$steps" == *" quantize "* ]]; then
    row "$shape" "quantize f16->Q4_K_M" smolq "" "$smolq" quantize "$f16" "$sq4" Q4_K_M -t "$threads" || true
    cmp -s "$sq4" "$cq4" && echo "      (same bytes as convert's Q4_K_M)"
    [ $has_peer = 1 ] && row "$shape" "quantize f16->Q4_K_M" llama-quantize "" "$peer/llama-quantize" "$f16" "$lq4" Q4_K_M "$threads" || true
  fi
  [ -f "$sq4" ] || cp "$cq4" "$sq4"
  if [[ "$steps" == *" perplexity "* ]]; then
    for m in f16 q4_k_m; do
      file=$f16; [ $m = q4_k_m ] && file=$sq4
      row "$shape" "perplexity $m" smolq "" "$smolq" perplexity -m "$file" -f "$test_text" -c "$ctx" --chunks "$chunks" -t "$threads" -q || true
      echo "      $(tok_s "$(last_wall)"), $(grep -oiE 'ppl[^0-9]*[0-9.]+|perplexity[^0-9]*[0-9.]+' "$work/out.txt" | tail -1)"
      if [ $has_peer = 1 ]; then
        row "$shape" "perplexity $m" llama-perplexity "" "$peer/llama-perplexity" -m "$file" -f "$test_text" -c "$ctx" --chunks "$chunks" -t "$threads" -b "$ctx" || true
        echo "      $(tok_s "$(last_wall)"), $(grep -oE 'Final estimate: PPL = [0-9.]+' "$work/out.txt" "$work/err.txt" | tail -1 | sed 's/.*://')"
      fi
    done
  fi
  if [[ "$steps" == *" imatrix "* ]]; then
    row "$shape" "imatrix f16" smolq "" "$smolq" imatrix -m "$f16" -f "$calib_text" -c "$ctx" --chunks "$chunks" -t "$threads" -o "$work/s.imatrix.gguf" -q || true
    echo "      $(tok_s "$(last_wall)")"
    if [ $has_peer = 1 ]; then
      row "$shape" "imatrix f16" llama-imatrix "" "$peer/llama-imatrix" -m "$f16" -f "$calib_text" -c "$ctx" --chunks "$chunks" -t "$threads" -b "$ctx" -o "$work/l.imatrix.gguf" || true
      echo "      $(tok_s "$(last_wall)")"
    fi
  fi
  if [[ "$steps" == *" verify "* ]]; then
    row "$shape" "verify 3 types" smolq "Q8_0,Q6_K,Q4_K_M" "$smolq" verify -m "$f16" -f "$test_text" --types Q8_0,Q6_K,Q4_K_M \
      -c "$ctx" --chunks "$chunks" -n 0 -t "$threads" -o "$work/verify-$shape" -q || true
    grep -E "^\|? *(Q8_0|Q6_K|Q4_K_M) " "$work/out.txt" | head -3 | sed 's/^/      /' || true
    rm -rf "$work/verify-$shape"
  fi
  if [[ "$steps" == *" profile "* ]]; then
    row "$shape" "sensitivity profile" smolq "calib 1 x $pctx, $pgroups groups" "$smolq" quantize "$f16" "$work/mix.gguf" --target-bpw 5 \
      --calib "$calib_text" --calib-ctx "$pctx" --calib-chunks 1 --profile-groups "$pgroups" --profile "$work/$shape.profile.json" --dry-run -t "$threads" -q || true
    grep -E "^profile (built|reused)" "$work/err.txt" "$work/out.txt" | head -1 | sed 's/^[^:]*:/      /' || true
  fi
  # Free the disk before the next shape.
  rm -f "$f16" "$cq4" "$sq4" "$lq4" "$work"/*.imatrix.gguf "$work"/*.profile.json
  [ "${KEEP:-0}" = 1 ] || rm -rf "$ckpt"
done
