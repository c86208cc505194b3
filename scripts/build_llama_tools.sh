#!/usr/bin/env bash
# Builds llama.cpp's command-line tools that llama-cpp-python does not ship — llama-imatrix,
# llama-perplexity, llama-quantize — from the llama.cpp source vendored inside the
# llama-cpp-python sdist of the exact version pinned in scripts/requirements-test.txt, so the
# tools and the Python bindings used by the tests are the same llama.cpp.
#
#   scripts/build_llama_tools.sh          build (or reuse) build/llama-tools/bin/llama-*
#   LLAMA_TOOLS_DIR=/some/dir ...         put the cache somewhere else
#
# Cached: the sdist is downloaded once, the tree is configured once, and a stamp file named
# after the version skips everything on re-runs. The interop tests and bench/bench_eval.sh
# look for the tools in build/llama-tools/bin and skip (tests) or stop (bench) without them.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py="${SMOLQ_PYTHON:-$here/.venv/bin/python}"
dir="${LLAMA_TOOLS_DIR:-$here/build/llama-tools}"
# The version whose sdist we build: the one the tests import.
version=$(sed -n 's/^llama-cpp-python==\([0-9.]*\).*/\1/p' "$here/scripts/requirements-test.txt")
[ -n "$version" ] || { echo "[llama-tools] no llama-cpp-python pin in requirements-test.txt" >&2; exit 1; }
stamp="$dir/.built-$version"
tools=(llama-imatrix llama-perplexity llama-quantize)

mkdir -p "$dir/dl"
# One build at a time (setup.sh and a test run may start this together): the second waits,
# then finds the stamp.
exec 9>"$dir/.lock"
flock 9
if [ -f "$stamp" ]; then
  echo "[llama-tools] llama.cpp tools of llama-cpp-python $version already built in $dir/bin"
  exit 0
fi
sdist="$dir/dl/llama_cpp_python-$version.tar.gz"
if [ ! -f "$sdist" ]; then
  echo "[llama-tools] downloading the llama-cpp-python $version source distribution"
  "$py" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$dir/dl"
fi
src="$dir/src"
if [ ! -f "$src/.unpacked-$version" ]; then
  rm -rf "$src"
  mkdir -p "$src"
  tar -xzf "$sdist" -C "$src" --strip-components=1
  touch "$src/.unpacked-$version"
fi
# GGML_NATIVE=OFF: the same instruction-set baseline scripts/setup.sh gives llama-cpp-python
# (ggml then enables AVX/AVX2/FMA/F16C), so tools and bindings compute alike.
echo "[llama-tools] building ${tools[*]} (a few minutes)"
cmake -S "$src/vendor/llama.cpp" -B "$dir/cmake" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
      -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
      -DBUILD_SHARED_LIBS=OFF >/dev/null
cmake --build "$dir/cmake" -j"$(nproc)" --target "${tools[@]}" >/dev/null
mkdir -p "$dir/bin"
for t in "${tools[@]}"; do cp "$dir/cmake/bin/$t" "$dir/bin/$t"; done
touch "$stamp"
echo "[llama-tools] done: $dir/bin"
