#!/usr/bin/env bash
# bench/profile: wall time to build the sensitivity profile of measured mixed precision
# (docs/mixed-precision.md) for the real SmolLM2-135M-Instruct on THREADS threads (default 2),
# and the time of a second target on the same model (profile reused: allocation only).
#
#   bench/bench_profile.sh
#   THREADS=2 CALIB_CTX=256 CALIB_CHUNKS=1 SMOLQ_BUILD_DIR=build-mixed bench/bench_profile.sh
#
# Input: `smolq convert --outtype f16` of the rebuilt checkpoint (testdata/generated); the
# calibration text is the first part of WikiText-2's validation split (never the test split
# that evaluations use). Prints the profile's own timing line, its predictor checks, and the
# wall seconds of both runs. Nothing is asserted: on a shared machine the numbers are noisy.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="${SMOLQ_BUILD_DIR:-$here/build}"
smolq="$build/smolq"
py="$here/.venv/bin/python"
[ -x "$smolq" ] || { echo "build smolq first: bash scripts/setup.sh" >&2; exit 1; }
"$py" "$here/scripts/make_fixtures.py" --only smollm2-135m-instruct -q
threads="${THREADS:-2}"
calib="${CALIB:-$here/../shared/assets/wikitext-2-raw/wiki.valid.raw}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$smolq" convert "$here/testdata/generated/smollm2-135m-instruct" --outtype f16 -o "$work/f16.gguf" -q >/dev/null
echo "model: SmolLM2-135M-Instruct (f16), $threads threads, calibration $(basename "$calib")" \
     "(${CALIB_CTX:-256} x ${CALIB_CHUNKS:-1} tokens)"
t0=$(date +%s.%N)
"$smolq" quantize "$work/f16.gguf" "$work/a.gguf" --target-size 100MiB --calib "$calib" -t "$threads" -q \
  --calib-ctx "${CALIB_CTX:-256}" --calib-chunks "${CALIB_CHUNKS:-1}" 2>"$work/log1" >/dev/null
t1=$(date +%s.%N)
grep -E "^profile (built|reused)|predictor|additivity" "$work/log1" || true
"$smolq" quantize "$work/f16.gguf" "$work/b.gguf" --target-size 110MiB --calib "$calib" -t "$threads" -q \
  --calib-ctx "${CALIB_CTX:-256}" --calib-chunks "${CALIB_CHUNKS:-1}" 2>"$work/log2" >/dev/null
t2=$(date +%s.%N)
grep -E "^profile (built|reused)" "$work/log2" || true
awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
  printf "first target (profile measured + quantize): %.1f s wall\n", b - a
  printf "second target (profile reused + quantize):  %.1f s wall\n", c - b }'
