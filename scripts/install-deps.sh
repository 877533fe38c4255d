#!/usr/bin/env bash
# Installs every build and test dependency of vdit on Debian 12 with apt-get.
# Idempotent: when everything is present it prints nothing and touches nothing.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --train  also what models/ training needs (same today)
set -euo pipefail

PKGS=(
  build-essential pkg-config meson ninja-build
  libdnnl-dev libglib2.0-dev
  libavcodec-dev libavformat-dev libavfilter-dev libavutil-dev libswscale-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-ugly
  ffmpeg
  python3 python3-numpy python3-torch python3-sentencepiece
  libopenblas0-pthread
  clang libclang-rt-14-dev libomp-14-dev
  dpkg-dev nasm libx264-dev
)
# Not installed here (optional): python3-venv, which scripts/bench-venv.sh
# needs to create the PyTorch 2.x / diffusers venv of `vdit bench dit --torch`.

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
