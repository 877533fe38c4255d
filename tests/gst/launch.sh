#!/usr/bin/env bash
# gst-launch-1.0 pipelines through the vdit elements, with the plugin taken
# from the build tree. Usage: launch.sh PLUGIN_DIR MODEL_DIR
set -u
plugin_dir=$1 model=$2
export GST_PLUGIN_PATH=$plugin_dir
export GST_REGISTRY=$(mktemp -u /tmp/vdit-gst-registry.XXXXXX)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$GST_REGISTRY"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; fail=1; fi; }
# frames in a y4m file (GStreamer's y4menc writes padded rows for odd
# sizes, so count the FRAME markers rather than dividing the size)
frames() {
  /usr/bin/python3 -c 'import sys; print(open(sys.argv[1], "rb").read().count(b"FRAME\n"))' "$1" 2>/dev/null || echo 0
}

gst-inspect-1.0 "$plugin_dir/libgstvdit.so" >"$tmp/plugin" 2>&1
check "the plugin lists both elements" "grep -q vditsrc '$tmp/plugin' && grep -q 'vdit video editor' '$tmp/plugin'"
gst-inspect-1.0 vdit >"$tmp/filter" 2>&1
check "gst-inspect-1.0 vdit documents strength with its range and default" \
  "grep -A3 '^  strength' '$tmp/filter' | grep -q 'Range: *0 - *1 *Default: *0.6'"
GST_DEBUG=0 gst-inspect-1.0 vditsrc >"$tmp/src" 2>&1
check "gst-inspect-1.0 vditsrc documents its properties" \
  "grep -q num-frames '$tmp/src' && grep -q 'negative-prompt' '$tmp/src'"

# generate: vditsrc num-buffers=N
gst-launch-1.0 -q vditsrc model="$model" steps=2 guidance=1 num-frames=5 num-buffers=7 \
  ! video/x-raw,width=48,height=32,framerate=8/1 ! videoconvert ! y4menc \
  ! filesink location="$tmp/gen.y4m" >"$tmp/gen.log" 2>&1
check "vditsrc num-buffers=7 writes 7 frames" "[ \$(frames '$tmp/gen.y4m') = 7 ]"
check "vditsrc output is 48x32" "head -c 64 '$tmp/gen.y4m' | grep -q 'W48 H32'"

# edit: videotestsrc ! vdit, compared with the same pipeline without vdit
gst-launch-1.0 -q videotestsrc num-buffers=12 pattern=ball \
  ! video/x-raw,format=I420,width=66,height=38,framerate=10/1 \
  ! vdit model="$model" steps=2 guidance=1 strength=0.9 window=5 \
  ! y4menc ! filesink location="$tmp/edit.y4m" >"$tmp/edit.log" 2>&1
gst-launch-1.0 -q videotestsrc num-buffers=12 pattern=ball \
  ! video/x-raw,format=I420,width=66,height=38,framerate=10/1 \
  ! y4menc ! filesink location="$tmp/plain.y4m" >/dev/null 2>&1
check "vdit keeps every frame (12 in, 12 out)" "[ \$(frames '$tmp/edit.y4m') = 12 ]"
check "vdit changes the content" "! cmp -s '$tmp/edit.y4m' '$tmp/plain.y4m'"

# a missing model is a clear error, not a crash
gst-launch-1.0 videotestsrc num-buffers=2 ! vdit model=/nonexistent ! fakesink >"$tmp/bad.log" 2>&1
rc=$?
check "missing model: error exit" "[ $rc -ne 0 ]"
check "missing model: message names it" "grep -q '/nonexistent' '$tmp/bad.log'"

[ $fail = 0 ] || { for f in "$tmp"/*.log; do echo "== $f"; tail -5 "$f"; done; }
exit $fail
