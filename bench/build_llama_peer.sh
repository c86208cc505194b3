#!/usr/bin/env bash
# The benchmark peer: llama.cpp's llama-quantize, llama-perplexity and llama-imatrix built
# from the same pinned source as scripts/build_llama_tools.sh (the llama.cpp tree vendored in
# the llama-cpp-python sdist pinned in scripts/requirements-test.txt), but with the best SIMD
# this CPU offers, so bench/ compares smolq against llama.cpp at its fastest here:
#   AVX, AVX2, FMA, F16C always; AVX-512 F/BW/VL/DQ (GGML_AVX512), VBMI, VNNI and BF16 when
#   /proc/cpuinfo lists them. AMX (GGML_AMX_TILE/INT8/BF16) stays OFF: it crashes in these VMs.
# The tests keep using the baseline build (build/llama-tools, GGML_NATIVE=OFF, AVX2), which
# matches the llama-cpp-python wheel they import; only the benchmarks use this one.
#
#   bench/build_llama_peer.sh            build (or reuse) build/llama-peer/bin/llama-*
#   LLAMA_PEER_DIR=/some/dir ...         put it somewhere else
#   LLAMA_TOOLS_DIR=/dir ...             where the baseline build keeps its sdist (dl/)
#
# Never downloads: it reuses the sdist scripts/build_llama_tools.sh fetched (run that first).
# Prints the ggml options and compiler flags it built with; a stamp named after the version
# and the options skips the build on re-runs.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools_dir="${LLAMA_TOOLS_DIR:-$here/build/llama-tools}"
dir="${LLAMA_PEER_DIR:-$here/build/llama-peer}"
version=$(sed -n 's/^llama-cpp-python==\([0-9.]*\).*/\1/p' "$here/scripts/requirements-test.txt")
[ -n "$version" ] || { echo "[llama-peer] no llama-cpp-python pin in scripts/requirements-test.txt" >&2; exit 1; }
sdist="$tools_dir/dl/llama_cpp_python-$version.tar.gz"
[ -f "$sdist" ] || { echo "[llama-peer] $sdist missing: run scripts/build_llama_tools.sh first" >&2; exit 1; }
tools=(llama-imatrix llama-perplexity llama-quantize)

# CPU features, as the kernel reports them.
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { [[ "$flags" == *" $1 "* ]] && echo ON || echo OFF; }
avx512=OFF
if [ "$(has avx512f)$(has avx512bw)$(has avx512vl)$(has avx512dq)" = ONONONON ]; then avx512=ON; fi
opts=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
      -DGGML_AVX512="$avx512"
      -DGGML_AVX512_VBMI="$([ $avx512 = ON ] && has avx512vbmi || echo OFF)"
      -DGGML_AVX512_VNNI="$([ $avx512 = ON ] && has avx512_vnni || echo OFF)"
      -DGGML_AVX512_BF16="$([ $avx512 = ON ] && has avx512_bf16 || echo OFF)"
      -DGGML_AVX_VNNI="$(has avx_vnni)"
      -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
      -DGGML_OPENMP=ON)
key=$(echo "$version ${opts[*]}" | sha256sum | cut -c1-12)
stamp="$dir/.built-$key"

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if [ ! -f "$stamp" ]; then
  src="$dir/src"
  if [ ! -f "$src/.unpacked-$version" ]; then
    rm -rf "$src"
    mkdir -p "$src"
    tar -xzf "$sdist" -C "$src" --strip-components=1
    touch "$src/.unpacked-$version"
  fi
  echo "[llama-peer] building ${tools[*]} (several minutes)" >&2
  cmake -S "$src/vendor/llama.cpp" -B "$dir/cmake" -DCMAKE_BUILD_TYPE=Release "${opts[@]}" \
        -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DBUILD_SHARED_LIBS=OFF >"$dir/cmake.log" 2>&1
  cmake --build "$dir/cmake" -j"$(nproc)" --target "${tools[@]}" >"$dir/build.log" 2>&1
  mkdir -p "$dir/bin"
  for t in "${tools[@]}"; do cp "$dir/cmake/bin/$t" "$dir/bin/$t"; done
  rm -f "$dir"/.built-*
  touch "$stamp"
fi
# What the peer was built with: the ggml options, and the -m flags ggml-cpu was compiled with.
echo "[llama-peer] llama.cpp from llama-cpp-python $version: $dir/bin"
echo "[llama-peer] options: ${opts[*]}"
cflags=$(grep -rhoE -- '-m(avx|fma|f16c|bmi)[a-z0-9_-]*' "$dir/cmake/ggml/src/CMakeFiles/ggml-cpu.dir/flags.make" 2>/dev/null |
         sort -u | tr '\n' ' ')
echo "[llama-peer] ggml-cpu compile flags: ${cflags:-"(see $dir/cmake/ggml/src/CMakeFiles/ggml-cpu.dir/flags.make)"}"
