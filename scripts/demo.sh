#!/usr/bin/env bash
# Installs dependencies, builds vdit and runs the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build
./build/core/cli/vdit selfcheck
./build/core/cli/vdit bench --quick
