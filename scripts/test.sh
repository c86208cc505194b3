#!/usr/bin/env bash
# Install everything, build, and run the whole test suite (C++ doctest + Python interop tests
# against gguf-py and llama.cpp), as CI does. Extra arguments go to ctest (e.g. -R convert).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$here/scripts/setup.sh"
build="${SMOLQ_BUILD_DIR:-$here/build}"
"$here/.venv/bin/python" "$here/scripts/make_fixtures.py" -q
cd "$build"
ctest --output-on-failure -j"${SMOLQ_TEST_JOBS:-2}" --timeout 1800 "$@"
