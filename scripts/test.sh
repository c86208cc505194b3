#!/usr/bin/env bash
# Install everything, build, and run the whole test suite (C++ doctest + Python interop tests
# against gguf-py and llama.cpp), as CI does. Extra arguments go to ctest (e.g. -R convert).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="${SMOLQ_BUILD_DIR:-$here/build}"
# Disk: measured on a fresh clone (5 December), `.ci/run` grew the disk's use by about 9 GB at
# its peak: this suite about 5.5 GB (build/ with the fixtures' conversions and cached llama.cpp
# files, the venv, testdata/generated) plus up to 3.5 GB of pytest temporaries under
# ${TMPDIR:-/tmp} while it runs; the sanitizer and fuzzer builds after it about 2 GB. A full
# disk shows up as "No space left on device" in whichever test writes next, so say it up front.
need_mb="${SMOLQ_MIN_FREE_MB:-10000}"
for d in "$here" "${TMPDIR:-/tmp}"; do
  free_mb=$(df -Pm "$d" | awk 'NR == 2 { print $4 }')
  if [ "${free_mb:-0}" -lt "$need_mb" ]; then
    echo "scripts/test.sh: only ${free_mb} MB free on the file system of $d; the test suite needs about ${need_mb} MB (SMOLQ_MIN_FREE_MB overrides)" >&2
    exit 1
  fi
done
bash "$here/scripts/setup.sh"
"$here/.venv/bin/python" "$here/scripts/make_fixtures.py" -q
cd "$build"
ctest --output-on-failure -j"${SMOLQ_TEST_JOBS:-2}" --timeout 1800 "$@"
