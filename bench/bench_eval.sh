#!/usr/bin/env bash
# Evaluator throughput, smolq against llama.cpp (issue 18, "must show" 1, evaluator half):
# perplexity, KL-divergence mode and imatrix on F16, Q8_0 and Q4_K_M files of the real
# SmolLM2-135M-Instruct and of the 256-aligned synthetic model, same files, text, context and
# threads, the two tools' commands alternating. Not a test: it prints measurements.
#
#   bench/bench_eval.sh [-c CTX] [-n CHUNKS] [-t THREADS] [-r REPEATS] [-f TEXT] [-s SMOLQ]
#   MODELS="real aligned" TYPES="F16 Q8_0 Q4_K_M" MODES="ppl kld imatrix" bench/bench_eval.sh
#
# Defaults: ctx 512, 4 chunks of WikiText-2 test, all cores, 1 repeat (the best wall and the
# best CPU time of the repeats are kept). The files are made by smolq (convert to F16, then
# quantize) once into build/bench-eval/ and reused; both tools read the same file.
#   ratio = llama.cpp time / smolq time (> 1: smolq is faster; = the tokens/s ratio).
#   KL divergence: smolq evaluates base (F16) and quantized model side by side in one run;
#     llama.cpp needs two (--kl-divergence-base on the F16 file, then --kl-divergence), and its
#     time is their sum. F16 has no KLD row (it would be the base against itself).
#   Peak: bench/bench_peak.cpp measures one core's f32 FMA rate in GFLOP per CPU-second; the
#     evaluator's rate is model FLOP / smolq CPU seconds, so the fraction does not depend on
#     what else the shared machine runs. Model FLOP per chunk = 2 x (weights of the layer
#     matrices) x ctx + 2 x (output matrix) x scored positions + 4 x q_dim x n_layer x
#     sum of causal key counts (QK^T and PV), i.e. what both tools must compute for perplexity;
#     KLD counts two models, imatrix the same as perplexity plus the last layer's pruned rows
#     and all logits (it scores every position).
# CPU seconds are printed next to wall seconds: on a shared machine wall time also measures the
# neighbours.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py="$here/.venv/bin/python"
text="$here/../shared/assets/wikitext-2-raw/wiki.test.raw"
ctx=512
chunks=4
threads=$(nproc)
build="${SMOLQ_BUILD_DIR:-$here/build}"
smolq="$build/smolq"
repeats=1
while getopts "c:n:t:r:f:s:" o; do
  case $o in
    c) ctx=$OPTARG ;; n) chunks=$OPTARG ;; t) threads=$OPTARG ;; r) repeats=$OPTARG ;;
    f) text=$OPTARG ;; s) smolq=$OPTARG ;;
    *) sed -n 2,30p "$0"; exit 2 ;;
  esac
done
models=${MODELS:-real aligned}
types=${TYPES:-F16 Q8_0 Q4_K_M}
modes=${MODES:-ppl kld imatrix}
# The peer: llama.cpp built for this CPU (AVX-512/VNNI/BF16, AMX off) by bench/build_llama_peer.sh,
# which prints its flags; PEER=baseline uses scripts/build_llama_tools.sh's AVX2 build instead.
if [ "${PEER:-best}" = baseline ]; then
  tools="$build/llama-tools/bin"
else
  bash "$here/bench/build_llama_peer.sh"
  tools="${LLAMA_PEER_DIR:-$build/llama-peer}/bin"
fi
peak_bin="$build/bench/smolq_bench_peak"
for f in "$smolq" "$tools/llama-perplexity" "$tools/llama-imatrix" "$peak_bin"; do
  [ -x "$f" ] || { echo "missing $f (cmake --build build --target smolq smolq_bench_peak; bench/build_llama_peer.sh)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
files="$build/bench-eval"
mkdir -p "$files"

model_dir() { case $1 in real) echo "$here/testdata/generated/smollm2-135m-instruct" ;; aligned) echo "$here/testdata/generated/aligned256-bf16" ;; esac; }
# file MODEL TYPE -> path of the GGUF (made once)
file() {
  local f="$files/$1-$2.gguf"
  if [ ! -f "$f" ]; then
    if [ "$2" = F16 ]; then
      "$smolq" convert "$(model_dir "$1")" -o "$f" --outtype f16 -q >/dev/null
    else
      "$smolq" quantize "$(file "$1" F16)" "$f" "$2" -q >/dev/null
    fi
  fi
  echo "$f"
}

# timed NAME CMD...: appends "wall cpu" of one run to $work/NAME.times
timed() {
  local name=$1; shift
  /usr/bin/time -f "%e %U %S" -o "$work/t" "$@" >"$work/$name.out" 2>"$work/$name.err" ||
    { echo "$name failed: $*"; tail -5 "$work/$name.err"; exit 1; }
  read -r wall user sys <"$work/t"
  echo "$wall $(awk "BEGIN{print $user + $sys}")" >>"$work/$name.times"
}
# best NAME -> "min_wall min_cpu"
best() { awk 'NR==1{w=$1;c=$2} {if($1<w)w=$1; if($2<c)c=$2} END{print w, c}' "$work/$1.times"; }

# Model FLOP of one perplexity run (see the header), from the F16 file's metadata.
flop_of() {
  "$py" - "$1" "$ctx" "$chunks" <<'EOF'
import sys
import gguf
path, ctx, chunks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = gguf.GGUFReader(path)
arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
val = lambda k: int(r.fields[f"{arch}.{k}"].parts[-1][0])
n_layer, n_embd, n_head = val("block_count"), val("embedding_length"), val("attention.head_count")
head_dim = n_embd // n_head
mats = {t.name: int(t.n_elements) for t in r.tensors}
layer = sum(v for k, v in mats.items() if k.startswith("blk.") and k.endswith(".weight") and "norm" not in k)
out = mats.get("output.weight", mats["token_embd.weight"])
scored = ctx - ctx // 2
attn = 4 * n_head * head_dim * n_layer * (ctx * (ctx + 1) // 2)
print(chunks * (2 * layer * ctx + 2 * out * scored + attn))
EOF
}

peak=$("$peak_bin" | awk '{print $2}')
echo "text:    $text ($chunks chunks x $ctx tokens, $threads threads)"
echo "smolq:   $smolq ($("$smolq" --version 2>/dev/null | head -1), git $(git -C "$here" rev-parse --short HEAD 2>/dev/null))"
echo "peer:    $tools"
echo "peak:    $peak GFLOP per CPU-second per core (f32 FMA, bench_peak), x $threads threads"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo

for m in $models; do for t in $types; do file "$m" "$t" >/dev/null; done; done
common=(-f "$text")
rows=()
for rep in $(seq "$repeats"); do
  for m in $models; do
    base=$(file "$m" F16)
    for t in $types; do
      f=$(file "$m" "$t")
      for mode in $modes; do
        key="$m.$t.$mode"
        case $mode in
          ppl)
            timed "s.$key" "$smolq" perplexity "$f" "${common[@]}" --ctx "$ctx" --chunks "$chunks" -t "$threads" -q
            timed "l.$key" "$tools/llama-perplexity" -m "$f" "${common[@]}" -c "$ctx" --chunks "$chunks" -t "$threads" ;;
          kld)
            [ "$t" = F16 ] && continue
            timed "s.$key" "$smolq" perplexity "$f" --base "$base" "${common[@]}" --ctx "$ctx" --chunks "$chunks" -t "$threads" -q
            # llama.cpp: the base logits file, then the comparison; one row of time = their sum.
            /usr/bin/time -f "%e %U %S" -o "$work/t1" "$tools/llama-perplexity" -m "$base" "${common[@]}" -c "$ctx" \
              --chunks "$chunks" -t "$threads" --kl-divergence-base "$work/base.kld" >"$work/l.$key.out" 2>&1 ||
              { echo "llama kld base failed"; tail -5 "$work/l.$key.out"; exit 1; }
            /usr/bin/time -f "%e %U %S" -o "$work/t2" "$tools/llama-perplexity" -m "$f" -c "$ctx" --chunks "$chunks" \
              -t "$threads" --kl-divergence-base "$work/base.kld" --kl-divergence >>"$work/l.$key.out" 2>&1 ||
              { echo "llama kld failed"; tail -5 "$work/l.$key.out"; exit 1; }
            rm -f "$work/base.kld"
            read -r w1 u1 s1 <"$work/t1"
            read -r w2 u2 s2 <"$work/t2"
            echo "$(awk "BEGIN{print $w1 + $w2, $u1 + $s1 + $u2 + $s2}")" >>"$work/l.$key.times" ;;
          imatrix)
            timed "s.$key" "$smolq" imatrix "$f" "${common[@]}" --ctx "$ctx" --chunks "$chunks" -t "$threads" -o "$work/s.imatrix.gguf"
            timed "l.$key" "$tools/llama-imatrix" -m "$f" "${common[@]}" -c "$ctx" --chunks "$chunks" -t "$threads" -o "$work/l.imatrix.gguf" ;;
        esac
        [ "$rep" = 1 ] && rows+=("$key")
      done
    done
  done
done

printf "%-8s %-7s %-8s %8s %8s %8s %8s  %6s %6s  %8s %6s\n" model type mode "smolq s" "cpu s" "llama s" "cpu s" \
  "ratio" "(cpu)" "GFLOP/s" "peak%"
for key in "${rows[@]}"; do
  IFS=. read -r m t mode <<<"$key"
  read -r sw sc <<<"$(best "s.$key")"
  read -r lw lc <<<"$(best "l.$key")"
  flop=$(flop_of "$(file "$m" F16)")
  [ "$mode" = kld ] && flop=$((flop * 2))
  printf "%-8s %-7s %-8s %8.2f %8.2f %8.2f %8.2f  %6.2f %6.2f  %8.1f %5.1f%%\n" "$m" "$t" "$mode" "$sw" "$sc" "$lw" "$lc" \
    "$(awk "BEGIN{print $lw / $sw}")" "$(awk "BEGIN{print $lc / $sc}")" "$(awk "BEGIN{print $flop / $sc * 1e-9}")" \
    "$(awk "BEGIN{print 100 * $flop / $sc * 1e-9 / $peak}")"
done
echo
echo "ratio = llama.cpp / smolq (wall; CPU time in brackets): > 1 means smolq is faster. GFLOP/s = model"
echo "FLOP per smolq CPU-second; peak% = that over the measured per-core f32 FMA peak ($peak)."
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
