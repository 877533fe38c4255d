#!/usr/bin/env bash
# The FFmpeg adapter through real command lines (issue 8).
#
#   test-ffmpeg.sh VERSION SOURCE_DIR BUILD_DIR [MODEL_DIR]
#
# Builds the patched FFmpeg VERSION (5.1 or 7.1) with scripts/build-ffmpeg.sh
# into BUILD_DIR/ffmpeg-VERSION (a no-op when it is up to date), then runs
# ffmpeg/ffprobe command lines: documented options, bad options and a missing
# model (error exit with a clear message), and with MODEL_DIR (a tiny
# random-weight model) generation with vditsrc and editing with vdit. Without
# MODEL_DIR only the model-free checks run and the test reports a skip (77).
# Prints one line per check; exits 1 if any failed.
set -uo pipefail

ver=$1 src=$2 build=$3 model=${4:-}
work=$build/ffmpeg-$ver
py=/usr/bin/python3

t0=$(date +%s)
VDIT_BUILD_DIR=$build VDIT_FFMPEG_DIR=$work bash "$src/scripts/build-ffmpeg.sh" "$ver" ||
  { echo "FAIL build of FFmpeg $ver"; exit 1; }
echo "build: $(($(date +%s) - t0)) s"
ff=$work/prefix/bin/ffmpeg
fp=$work/prefix/bin/ffprobe
tmp=$(mktemp -d "$build/ffmpeg-$ver-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fails=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2:+: $2}"; fails=$((fails + 1)); }
# expect_error NAME REGEX ffmpeg-args...: non-zero exit and REGEX in stderr
expect_error() {
  local name=$1 re=$2; shift 2
  if "$ff" -hide_banner -nostdin -y "$@" >"$tmp/err.log" 2>&1; then
    fail "$name" "exit status 0"
  elif grep -Eq "$re" "$tmp/err.log"; then
    pass "$name"
  else
    fail "$name" "no /$re/ in: $(tail -3 "$tmp/err.log" | tr '\n' ' ')"
  fi
}
run() { # NAME ffmpeg-args...
  local name=$1; shift
  if "$ff" -hide_banner -nostdin -y "$@" >"$tmp/$name.log" 2>&1; then
    return 0
  fi
  fail "$name" "ffmpeg failed: $(grep -iE 'error|fail|vdit' "$tmp/$name.log" | tail -4 | tr '\n' ' ')"
  return 1
}
# probe FILE: "WIDTHxHEIGHT RATE FRAMES SAR"
probe() {
  "$fp" -v error -count_frames -select_streams v:0 -of default=nw=1:nk=1 \
    -show_entries stream=width,height,r_frame_rate,nb_read_frames,sample_aspect_ratio "$1" |
    tr '\n' ' ' | awk '{ printf "%sx%s %s %s %s", $1, $2, $4, $5, $3 }'
}
expect_probe() { # NAME FILE EXPECTED
  local got; got=$(probe "$2")
  [ "$got" = "$3" ] && pass "$1" || fail "$1" "ffprobe says '$got', expected '$3'"
}
# pts, dts and duration of every frame of a framemd5 file (its hashes dropped)
timing() { grep -v '^#' "$1" | cut -d, -f1-4 | tr -d ' '; }
expect_same_timing() { # NAME IN.md5 OUT.md5
  local a b; a=$(timing "$2" | wc -l); b=$(timing "$3" | wc -l)
  if [ "$a" -eq 0 ] || [ "$a" != "$b" ]; then
    fail "$1" "$a frames in, $b out"
  elif [ "$(timing "$2")" != "$(timing "$3")" ]; then
    fail "$1" "timestamps differ: $(diff <(timing "$2") <(timing "$3") | head -4 | tr '\n' ' ')"
  else
    pass "$1 ($a frames, same timestamps)"
  fi
}

enc=mpeg4
"$ff" -hide_banner -encoders 2>/dev/null | grep -q libx264 && enc=libx264

# ---- without a model --------------------------------------------------------
h=$("$ff" -hide_banner -h filter=vdit 2>&1)
miss=""
for o in prompt negative_prompt strength steps guidance seed sampler dpm++ shift model \
         window overlap async cache cache_threshold; do
  grep -q -- "^ *$o " <<<"$h" || miss+=" $o"
done
[ -z "$miss" ] && pass "vdit options documented" || fail "vdit options documented" "missing$miss"
h=$("$ff" -hide_banner -h filter=vditsrc 2>&1)
miss=""
for o in prompt negative_prompt size s rate r duration d seed steps guidance sampler shift \
         model loop cache cache_threshold; do
  grep -q -- "^ *$o " <<<"$h" || miss+=" $o"
done
[ -z "$miss" ] && pass "vditsrc options documented" || fail "vditsrc options documented" "missing$miss"

src_clip="testsrc2=s=64x48:r=10:d=1"
expect_error "strength out of range" "strength.*out of range" \
  -f lavfi -i "$src_clip" -vf vdit=strength=2 -f null -
expect_error "unknown sampler" "sampler|foo" \
  -f lavfi -i "$src_clip" -vf vdit=sampler=foo -f null -
expect_error "unknown cache mode" "cache|foo" \
  -f lavfi -i "$src_clip" -vf vdit=cache=foo -f null -
expect_error "cache threshold out of range" "cache_threshold.*out of range" \
  -f lavfi -i "$src_clip" -vf vdit=cache_threshold=-1 -f null -
expect_error "unknown option" "bogus.*not found|not found.*bogus" \
  -f lavfi -i "$src_clip" -vf vdit=bogus=1 -f null -
expect_error "overlap not below window" "overlap \(9\) must be smaller than window \(9\)" \
  -f lavfi -i "$src_clip" -vf vdit=window=9:overlap=9 -f null -
expect_error "vdit missing model" "cannot load the model '$tmp/no-such-model'" \
  -f lavfi -i "$src_clip" -vf "vdit=model=$tmp/no-such-model" -f null -
expect_error "vditsrc missing model" "cannot load the model '$tmp/no-such-model'" \
  -f lavfi -i "vditsrc=model=$tmp/no-such-model" -f null -
expect_error "vditsrc bad duration" "'d' out of range" -f lavfi -i "vditsrc=d=-5" -f null -

if [ -z "$model" ]; then
  echo "no tiny model: model checks skipped"
  [ $fails -eq 0 ] && exit 77 || exit 1
fi

# ---- vditsrc ------------------------------------------------------------------
# One engine thread: the 5.1 and 7.1 tests run at the same time, and two
# OpenMP teams spinning on two cores make each other many times slower.
M="model=$model:threads=1:steps=2"
if run gen -f lavfi -i "vditsrc=$M:prompt=a red fox:s=64x48:r=8:d=1" -c:v $enc \
     -pix_fmt yuv420p "$tmp/gen.mp4"; then
  expect_probe "vditsrc to mp4 ($enc)" "$tmp/gen.mp4" "64x48 8/1 8 1:1"
fi
# Default size, rate and length: the model's (its vdit.json).
native=$($py - "$model/vdit.json" 2>/dev/null <<'EOF'
import json, sys
from fractions import Fraction
j = json.load(open(sys.argv[1]))
r = Fraction(j["fps"]).limit_denominator(1001000)
print("%dx%d %d/%d %d 1:1" % (j["width"], j["height"], r.numerator, r.denominator, j["frames"]))
EOF
)
if run gen_default -f lavfi -i "vditsrc=$M" -pix_fmt yuv444p "$tmp/gen_default.y4m"; then
  expect_probe "vditsrc defaults are the model's" "$tmp/gen_default.y4m" "${native:-vdit.json unreadable}"
fi
# Longer than a window: continued by extension; odd size.
if run gen_long -f lavfi -i "vditsrc=$M:s=130x74:r=10:d=2.5:window=5" -pix_fmt yuv444p \
     "$tmp/gen_long.y4m"; then
  expect_probe "vditsrc 130x74, 25 frames in windows of 5" "$tmp/gen_long.y4m" "130x74 10/1 25 1:1"
fi
# No format options: YUV 4:2:0 that players open (mp4: H.264 High, not
# 4:4:4; y4m takes no RGB), RGB when the output asks for it.
# pix: "PIX_FMT FRAMES [PROFILE]"
pix() {
  "$fp" -v error -count_frames -select_streams v:0 -of default=nw=1:nk=1 \
    -show_entries stream=pix_fmt,nb_read_frames,profile "$1" | tr '\n' ' ' | sed 's/ $//'
}
if run plain_mp4 -f lavfi -i "vditsrc=$M:s=64x48:r=8:d=1.5" "$tmp/plain.mp4"; then
  got=$(pix "$tmp/plain.mp4")
  want="High yuv420p 12"; [ "$enc" = libx264 ] || want="Simple Profile yuv420p 12"
  [ "$got" = "$want" ] && pass "vditsrc out.mp4: $got" || fail "vditsrc out.mp4" "'$got', expected '$want'"
fi
if run plain_y4m -f lavfi -i "vditsrc=$M:s=64x48:r=8:d=1.5" "$tmp/plain.y4m"; then
  got=$(pix "$tmp/plain.y4m")
  [ "$got" = "unknown yuv420p 12" ] && pass "vditsrc out.y4m: $got" || fail "vditsrc out.y4m" "'$got', expected 'unknown yuv420p 12'"
fi
if run plain_rgb -v verbose -filter_complex "vditsrc=$M:s=64x48:r=8:d=0.5,showinfo" -pix_fmt rgb24 \
     -f rawvideo "$tmp/plain.rgb"; then
  # negotiated as RGB by the source itself: no scaler in the graph
  if grep -q "fmt:rgb24" "$tmp/plain_rgb.log" && ! grep -q "auto_scale" "$tmp/plain_rgb.log" &&
     [ "$(stat -c %s "$tmp/plain.rgb")" = $((64 * 48 * 3 * 4)) ]; then
    pass "vditsrc gives rgb24 when asked"
  else
    fail "vditsrc gives rgb24 when asked" "$(grep -E 'fmt:|auto_scale' "$tmp/plain_rgb.log" | head -3 | tr '\n' ' ')"
  fi
fi
if run tags -filter_complex "vditsrc=$M:s=64x48:r=8:d=0.5" "$tmp/tags.mp4"; then
  got=$("$fp" -v error -select_streams v:0 -of default=nw=1:nk=1 \
        -show_entries stream=color_range,color_space,color_transfer,color_primaries "$tmp/tags.mp4" | tr '\n' ' ')
  [ "$got" = "tv bt709 bt709 bt709 " ] && pass "vditsrc tags BT.709 limited range" ||
    fail "vditsrc tags BT.709 limited range" "$got"
fi
if run gen_loop -f lavfi -i "vditsrc=$M:loop=1:window=8:r=8:d=2" -f framemd5 "$tmp/loop.md5"; then
  # 16 frames out of one looping window repeated: frame i and i+8 identical
  hashes=$(grep -v '^#' "$tmp/loop.md5" | awk -F, '{ print $6 }')
  n=$(wc -l <<<"$hashes")
  [ "$n" -eq 16 ] && [ "$(sed -n 1,8p <<<"$hashes")" = "$(sed -n 9,16p <<<"$hashes")" ] &&
    pass "vditsrc loop repeats its window" || fail "vditsrc loop repeats its window" "$n frames"
fi

# `threads` is libavfilter's generic option; the engine must get its value.
for t in 1 2; do
  if run "threads$t" -v verbose -f lavfi -i "testsrc2=s=64x48:r=10:d=0.5" \
       -vf "vdit=model=$model:steps=2:threads=$t" -f null -; then
    grep -q "$t threads (0: all cores)" "$tmp/threads$t.log" && pass "vdit threads=$t reaches the engine" ||
      fail "vdit threads=$t reaches the engine" "$(grep -i 'loading model' "$tmp/threads$t.log")"
  fi
done

# ---- vdit ----------------------------------------------------------------------
# Irregular timestamps and a non-square SAR must come through untouched.
clip="testsrc2=s=64x48:r=10:d=2.5,setpts='N*3+if(gt(N,10),7,0)',setsar=4/3"
run ref -f lavfi -i "$clip" -fps_mode passthrough -map 0 -f framemd5 "$tmp/ref.md5" \
  -map 0 -f rawvideo -pix_fmt rgb24 "$tmp/ref.rgb"
for s in 0 0.3 0.9; do
  if run "edit$s" -v verbose -filter_complex "[0]vdit=$M:steps=10:strength=$s:window=9,split[a][b]" \
       -f lavfi -i "$clip" -fps_mode passthrough -map "[a]" -f framemd5 "$tmp/e$s.md5" \
       -fps_mode passthrough -map "[b]" -f rawvideo -pix_fmt rgb24 "$tmp/e$s.rgb"; then
    expect_same_timing "vdit strength $s keeps every frame" "$tmp/ref.md5" "$tmp/e$s.md5"
  fi
done
# step caching: the same edit with cache=easy keeps every frame and says how
# many forwards it computed
if run editcache -v verbose -f lavfi -i "$clip" \
     -vf "vdit=$M:steps=10:strength=0.9:window=9:cache=easy:cache_threshold=0.2" \
     -fps_mode passthrough -f framemd5 "$tmp/ecache.md5"; then
  expect_same_timing "vdit cache=easy keeps every frame" "$tmp/ref.md5" "$tmp/ecache.md5"
  grep -q "DiT forwards computed (step cache on)" "$tmp/editcache.log" &&
    pass "vdit cache=easy reports the forwards computed" ||
    fail "vdit cache=easy reports the forwards computed" "no count in the log"
fi
grep -q "denoise" "$tmp/edit0.9.log" && pass "progress at verbose level" ||
  fail "progress at verbose level" "no 'denoise' lines"
# Farther from the strength-0 result (the input through the model's VAE)
# the more strength: the random-weight VAE changes everything anyway.
if [ -s "$tmp/e0.rgb" ] && [ -s "$tmp/e0.3.rgb" ] && [ -s "$tmp/e0.9.rgb" ]; then
  res=$($py - "$tmp/e0.rgb" "$tmp/e0.3.rgb" "$tmp/e0.9.rgb" <<'EOF'
import sys
a, b, c = (open(p, "rb").read() for p in sys.argv[1:])
d = lambda x, y: sum(abs(p - q) for p, q in zip(x, y)) / len(x)
print(f"{d(a, b):.3f} {d(a, c):.3f}")
EOF
)
  awk -v r="$res" 'BEGIN { split(r, v, " "); exit !(v[2] > v[1] && v[2] > 0) }' &&
    pass "higher strength changes more (mean |diff| $res)" ||
    fail "higher strength changes more" "mean |diff| from strength 0: $res"
fi
# Odd size in a filtergraph with filters on both sides, SAR kept (y4m stores it).
if run odd -f lavfi -i "testsrc2=s=130x74:r=8:d=1.5,setsar=4/3" \
     -vf "format=yuv420p,vdit=$M:strength=0.5,pad=iw+2:ih+2:1:1,crop=130:74" -pix_fmt yuv444p \
     "$tmp/odd.y4m"; then
  expect_probe "vdit 130x74 in a filter chain" "$tmp/odd.y4m" "130x74 8/1 12 4:3"
fi

# A stream several windows long, with a runtime command changing strength.
run long -v verbose -f lavfi -i "testsrc2=s=64x48:r=10:d=4.1" -fps_mode passthrough \
  -f framemd5 "$tmp/long_ref.md5"
if run long_edit -v verbose -f lavfi -i "testsrc2=s=64x48:r=10:d=4.1" \
     -vf "sendcmd=c='1.0 vdit strength 0.9',vdit=$M:window=5" -fps_mode passthrough \
     -f framemd5 "$tmp/long.md5"; then
  expect_same_timing "vdit over 10+ windows of 5" "$tmp/long_ref.md5" "$tmp/long.md5"
  grep -q "strength set for the next window" "$tmp/long_edit.log" &&
    pass "runtime strength command" || fail "runtime strength command" "no acknowledgement"
fi

# async (the default) and async=0 give the same frames: a long input at an
# odd size, windows of 5 (about 60 windows), and a decode-edit-encode run.
run sync -f lavfi -i "testsrc2=s=129x73:r=25:d=12" -vf "vdit=$M:window=5:async=0" \
  -fps_mode passthrough -f framemd5 "$tmp/sync.md5"
run async -f lavfi -i "testsrc2=s=129x73:r=25:d=12" -vf "vdit=$M:window=5:async=1" \
  -fps_mode passthrough -f framemd5 "$tmp/async.md5"
n=$(grep -vc '^#' "$tmp/async.md5" 2>/dev/null)
if [ "$n" = 300 ] && cmp -s "$tmp/sync.md5" "$tmp/async.md5"; then
  pass "async=1 and async=0: the same 300 frames, hashes and timestamps"
else
  fail "async=1 and async=0 agree" "$n frames; $(diff "$tmp/sync.md5" "$tmp/async.md5" | head -3 | tr '\n' ' ')"
fi
if run h264_in -f lavfi -i "testsrc2=s=96x64:r=25:d=4" -c:v $enc "$tmp/in.mp4" &&
   run transcode -i "$tmp/in.mp4" -vf "vdit=$M:window=9" -c:v $enc "$tmp/edited.mp4"; then
  got=$(pix "$tmp/edited.mp4" | awk '{ print $NF }')
  [ "$got" = 100 ] && pass "decode-edit-encode keeps 100 frames" || fail "decode-edit-encode keeps 100 frames" "$got"
fi
# Output closed early: the worker is stopped mid-window, ffmpeg ends cleanly.
if run early -f lavfi -i "testsrc2=s=64x48:r=25:d=20" -vf "vdit=$M:steps=8:window=9" -frames:v 3 \
     -f framemd5 "$tmp/early.md5"; then
  [ "$(grep -vc '^#' "$tmp/early.md5")" = 3 ] && pass "output closed early" ||
    fail "output closed early" "$(grep -vc '^#' "$tmp/early.md5") frames"
fi

echo "total: $(($(date +%s) - t0)) s, $fails failed"
[ $fails -eq 0 ]
