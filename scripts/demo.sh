#!/usr/bin/env bash
# Installs dependencies, builds vdit and runs the main job: text to video
# with the bundled default model (models/default), written to demo.mp4 and
# demo.png (its first frame). Without a bundled model it runs the engine's
# self-check and a short kernel benchmark instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build
vdit=./build/core/cli/vdit
$vdit selfcheck
if [ -f models/default/vdit.json ]; then
  prompt=${VDIT_PROMPT:-"a red circle moves to the right on a blue background"}
  $vdit generate --prompt "$prompt" --seed 1 --output demo.mp4
  $vdit generate --prompt "$prompt" --seed 1 --frames 1 --output demo.png
  echo "wrote demo.mp4 and demo.png from the prompt: $prompt"
else
  $vdit bench kernels --quick
fi
