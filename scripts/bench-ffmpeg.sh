#!/usr/bin/env bash
# The ffmpeg `vdit` filter in a decode-edit-encode pipeline, async=1 (the
# engine in a worker thread) against async=0 (the engine inside the filter
# graph's thread), the two run in turn in the same session so the ratio holds
# when the machine's speed drifts.
#
#   scripts/bench-ffmpeg.sh [VERSION] [PAIRS]      (defaults: 7.1, 3)
#
# Environment:
#   VF       the filter chain; VDIT is replaced by the vdit filter with its
#            async option (default: an H.264 1080p input brought to the
#            model's working size, edited, scaled back to 1080p for delivery)
#   VDIT     options of vdit (default: strength=0.5:steps=10:threads=1, one
#            core for the engine and the other for decoding and encoding)
#   ENC      encoder options (default: -c:v libx264 -preset medium)
#   SECONDS_IN  input length in seconds at 16 fps (default 6)
#
# Needs the meson build in build/ (libvdit and the bundled model); builds the
# patched FFmpeg with scripts/build-ffmpeg.sh. Prints one line per run, then
# the median wall time of each mode and the median of the per-pair ratios
# async=1 / async=0 (below 1: the worker thread is faster), with the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
ver=${1:-7.1}
pairs=${2:-3}
VDIT=${VDIT:-strength=0.5:steps=10:threads=1}
VF=${VF:-scale=320:192,VDIT,scale=1920:1080:flags=lanczos}
ENC=${ENC:--c:v libx264 -preset medium}
secs=${SECONDS_IN:-6}

bash scripts/build-ffmpeg.sh "$ver" >/dev/null
ff=build/ffmpeg-$ver/prefix/bin/ffmpeg
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo "cpu: $cpu, $(nproc) cores; ffmpeg $ver"
# shellcheck disable=SC2086
"$ff" -hide_banner -nostdin -loglevel error -y -f lavfi -i "testsrc2=s=1920x1080:r=16:d=$secs" \
  $ENC "$tmp/in.mp4"
echo "input: $((secs * 16)) frames of 1920x1080 H.264; -vf ${VF/VDIT/vdit=$VDIT}; $ENC"

run() { # async -> prints the wall seconds
  local t0 t1
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  "$ff" -hide_banner -nostdin -loglevel error -y -i "$tmp/in.mp4" \
    -vf "${VF/VDIT/vdit=$VDIT:async=$1}" $ENC "$tmp/out$1.mp4"
  t1=$(date +%s.%N)
  n=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames \
      -of default=nw=1:nk=1 "$tmp/out$1.mp4")
  [ "$n" = $((secs * 16)) ] || { echo "async=$1 wrote $n frames, not $((secs * 16))" >&2; exit 1; }
  echo "$t0 $t1" | awk '{ printf "%.2f", $2 - $1 }'
}
sync=() async=() ratios=()
for ((i = 1; i <= pairs; i++)); do
  a=$(run 0); b=$(run 1)
  r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')
  echo "pair $i: async=0 $a s, async=1 $b s, ratio $r"
  sync+=("$a") async+=("$b") ratios+=("$r")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "median: async=0 $(median "${sync[@]}") s, async=1 $(median "${async[@]}") s," \
  "async/sync $(median "${ratios[@]}") (per-pair median, $pairs pairs)"
