#!/usr/bin/env bash
# CI configurations beyond scripts/test.sh (issue "Hardening"); .ci/run calls it after the
# normal suite, so build/, the venv and the fixtures already exist.
#
#   1. ASan + UBSan: a RelWithDebInfo build with SMOLQ_SANITIZE=ON in build-asan/, running
#      every C++ test and the Python tests that drive smolq's own parsers and commands
#      (SMOLQ_BIN points at the sanitized binary). See docs/hardening.md for which Python
#      files are left out and why.
#   2. Fuzzing: the libFuzzer binaries (clang, -fsanitize=fuzzer,address,undefined) in
#      build-fuzz/, each run for SMOLQ_FUZZ_SECONDS (default 10) over its seed corpus and
#      saved regressions. A crash fails the run and leaves the input in
#      build-fuzz/artifacts/<target>/: add it to fuzz/regressions/<target>/ with the fix.
#
#   scripts/ci_extras.sh              both
#   scripts/ci_extras.sh asan         only 1      scripts/ci_extras.sh fuzz   only 2
#   SMOLQ_FUZZ_SECONDS=600 scripts/ci_extras.sh fuzz     a long local fuzzing session
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
what="${1:-all}"
jobs="${SMOLQ_JOBS:-$(nproc)}"
clangxx="${SMOLQ_CLANGXX:-clang++-14}"
t0=$(date +%s)
stamp() { echo "[ci_extras] $(( $(date +%s) - t0 ))s: $*"; }

# Sanitizer behaviour for everything below: stop at the first report, with a stack trace.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

run_asan() {
  local dir="${SMOLQ_ASAN_BUILD_DIR:-$here/build-asan}"
  stamp "ASan+UBSan build in $dir"
  cmake -S "$here" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSMOLQ_SANITIZE=ON \
        -DSMOLQ_PYTHON="$here/.venv/bin/python" >/dev/null
  cmake --build "$dir" -j"$jobs" --target smolq smolq_tests smolq_tokenize_tool
  stamp "ASan+UBSan tests"
  # C++: every file. Python: the files that run smolq's parsers and commands on real and
  # corrupt inputs. Left out: the llama.cpp quality sweeps (test_quantize_llama,
  # test_estimate_llama, test_forward_parity, test_imatrix_interop: minutes of quantization
  # and forward passes whose code paths the C++ tests already cover under ASan, and which
  # would take most of CI's budget at ASan speed), test_quantize_cli and test_verify (6.5 and
  # several minutes under ASan of quantizing / evaluating the real model; their corrupt-input
  # paths are fuzzed and in the C++ tests) and the Python-only checks
  # (test_fixtures, test_iq_tables) that do not run smolq at all.
  local py_tests="py\\.(test_convert|test_convert_errors|test_inspect_cli|test_tokenizer_parity|test_interrupt|test_verify_chat_template)\$"
  (cd "$dir" && ctest --output-on-failure -j"${SMOLQ_TEST_JOBS:-2}" --timeout 1800 -R "^cpp\\.|^${py_tests}")
  stamp "ASan+UBSan tests passed"
}

# target -> dictionary in fuzz/dicts
dict_for() {
  case "$1" in
    gguf|gguf_scan|inspect_gate) echo gguf ;;
    safetensors|safetensors_index) echo safetensors ;;
    hf_config|model_card) echo json_config ;;
    tokenizer_json|tokenizer_meta) echo tokenizer ;;
    imatrix) echo imatrix ;;
    tokenizer_encode) echo encode ;;
    chat_template) echo chat_template ;;
    eval_set) echo eval_set ;;
    *) echo "no dictionary for fuzz target $1" >&2; exit 1 ;;
  esac
}

run_fuzz() {
  local dir="${SMOLQ_FUZZ_BUILD_DIR:-$here/build-fuzz}" secs="${SMOLQ_FUZZ_SECONDS:-10}"
  command -v "$clangxx" >/dev/null || { echo "$clangxx not found (scripts/setup.sh installs clang-14)" >&2; exit 1; }
  stamp "fuzzer build in $dir"
  # Coverage instrumentation on every library (fuzzer-no-link); -fsanitize=fuzzer only on the
  # fuzz_* executables (fuzz/CMakeLists.txt). ASan+UBSan come from SMOLQ_SANITIZE.
  cmake -S "$here" -B "$dir" -DCMAKE_CXX_COMPILER="$clangxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DSMOLQ_SANITIZE=ON -DSMOLQ_FUZZ=ON -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null
  cmake --build "$dir" -j"$jobs" --target fuzzers
  local failed=() bin
  for bin in "$dir"/fuzz/fuzz_*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    local t="${bin##*/fuzz_}" art="$dir/artifacts/${bin##*/fuzz_}" work
    work=$(mktemp -d)  # new inputs go here; the committed corpus stays read-only
    mkdir -p "$art" "$here/fuzz/regressions/$t"
    stamp "fuzz_$t for ${secs}s"
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb / -malloc_limit_mb: a reader
    # that believes a header's sizes runs into these instead of the machine's memory.
    if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
         -dict="$here/fuzz/dicts/$(dict_for "$t").dict" -artifact_prefix="$art/" -print_final_stats=1 \
         "$work" "$here/fuzz/corpus/$t" "$here/fuzz/regressions/$t" 2>"$art/log.txt"; then
      failed+=("$t")
      tail -60 "$art/log.txt"
    fi
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$art/log.txt" | sed "s/^/  $t /" || true
    rm -rf "$work"
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "[ci_extras] fuzz targets failed: ${failed[*]} (inputs in $dir/artifacts/<target>/)" >&2
    exit 1
  fi
  stamp "fuzzing passed"
}

case "$what" in
  all) run_asan; run_fuzz ;;
  asan) run_asan ;;
  fuzz) run_fuzz ;;
  *) echo "usage: $0 [all|asan|fuzz]" >&2; exit 2 ;;
esac
stamp "done"
