#!/usr/bin/env bash
# gst-launch-1.0 pipelines through the vdit elements, with the plugin taken
# from the build tree. Usage: launch.sh PLUGIN_DIR MODEL_DIR [TAEHV_FILE [VDIT]]
# (VDIT: the vdit command, whose image-to-video size the checks compare with;
# VDIT_TEST_LORA_DIR in the environment: make_lora.py's files for the model's
# DiT, for the lora property)
set -u
plugin_dir=$1 model=$2 tae=${3:-} vdit=${4:-} loras=${VDIT_TEST_LORA_DIR:-}
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

# formats: I420 (BT.709) unless downstream asks for RGB
src="vditsrc model=\"$model\" steps=2 guidance=1 num-frames=5"
caps_of() { grep 'GstVditSrc:vditsrc0.GstPad:src: caps' "$1" | tail -1; }
eval gst-launch-1.0 -v $src num-buffers=3 ! fakesink >"$tmp/i420.log" 2>&1
check "vditsrc ! fakesink negotiates I420, bt709" \
  "caps_of '$tmp/i420.log' | grep -q 'format=(string)I420' && caps_of '$tmp/i420.log' | grep -q 'colorimetry=(string)bt709'"
eval gst-launch-1.0 -v $src num-buffers=3 ! video/x-raw,format=RGB,width=48,height=32 \
  ! fakesink >"$tmp/rgb.log" 2>&1
check "vditsrc ! video/x-raw,format=RGB gives RGB" "caps_of '$tmp/rgb.log' | grep -q 'format=(string)RGB'"
probe() { # FILE: pix_fmt,frames,width,height of the video stream (decoded and counted)
  /usr/bin/ffprobe -v error -count_frames -select_streams v:0 \
    -show_entries stream=pix_fmt,nb_read_frames,width,height -of csv=p=0 "$1" 2>/dev/null |
    awk -F, '{print $3","$4","$1","$2}'
}
have_probe=0; [ -x /usr/bin/ffprobe ] && have_probe=1
[ $have_probe = 1 ] || echo "skip: /usr/bin/ffprobe is missing, files are not probed"
# y4m at a width that is a multiple of 4 (GStreamer 1.22's y4menc pads other rows)
eval gst-launch-1.0 -q $src num-buffers=7 ! video/x-raw,width=48,height=32 ! y4menc \
  ! filesink location="$tmp/yuv.y4m" >"$tmp/yuv.log" 2>&1
check "vditsrc ! y4menc: 7 frames" "[ \$(frames '$tmp/yuv.y4m') = 7 ]"
[ $have_probe = 1 ] && check "vditsrc ! y4menc: ffprobe reads 7 yuv420p frames of 48x32" \
  "[ \"\$(probe '$tmp/yuv.y4m')\" = 'yuv420p,7,48,32' ]"
# odd sizes (chroma rounded up), raw I420 in Matroska
for wh in 130x74 129x73; do
  w=${wh%x*} h=${wh#*x}
  eval gst-launch-1.0 -q $src num-buffers=6 ! video/x-raw,width=$w,height=$h ! matroskamux \
    ! filesink location="$tmp/odd$wh.mkv" >"$tmp/odd$wh.log" 2>&1
  check "vditsrc $wh ! matroskamux: exit 0" "[ -s '$tmp/odd$wh.mkv' ] && ! grep -q ERROR '$tmp/odd$wh.log'"
  [ $have_probe = 1 ] && check "vditsrc $wh ! matroskamux: ffprobe reads 6 yuv420p frames of $wh" \
    "[ \"\$(probe '$tmp/odd$wh.mkv')\" = 'yuv420p,6,$w,$h' ]"
done
# H.264 straight from vditsrc, no videoconvert (x264 wants even sizes in 4:2:0)
if gst-inspect-1.0 x264enc >/dev/null 2>&1; then
  eval gst-launch-1.0 -q $src num-buffers=9 ! video/x-raw,width=130,height=74 ! x264enc \
    ! mp4mux ! filesink location="$tmp/gen.mp4" >"$tmp/x264.log" 2>&1
  check "vditsrc ! x264enc ! mp4mux: a file" "[ -s '$tmp/gen.mp4' ]"
  [ $have_probe = 1 ] && check "vditsrc ! x264enc ! mp4mux: ffprobe reads 9 yuv420p frames of 130x74" \
    "[ \"\$(probe '$tmp/gen.mp4')\" = 'yuv420p,9,130,74' ]"
else
  echo "skip: x264enc is missing (gstreamer1.0-plugins-ugly)"
fi

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

# step caching: the same edit with cache=easy (10 steps, so that some are reused)
gst-launch-1.0 -q videotestsrc num-buffers=12 pattern=ball \
  ! video/x-raw,format=I420,width=66,height=38,framerate=10/1 \
  ! vdit model="$model" steps=10 guidance=1 strength=0.9 window=5 cache=easy cache-threshold=0.2 \
  ! y4menc ! filesink location="$tmp/cache.y4m" >"$tmp/cache.log" 2>&1
check "vdit cache=easy keeps every frame (12 in, 12 out)" "[ \$(frames '$tmp/cache.y4m') = 12 ]"
# bad values are refused with a message naming the property: a value that
# does not parse stops gst-launch; one out of range is refused by GObject
# with a warning (the property keeps its value), as for every property
for bad in cache=foo cache-threshold=abc; do
  gst-launch-1.0 videotestsrc num-buffers=2 ! vdit model="$model" $bad ! fakesink \
    >"$tmp/badcache.log" 2>&1
  rc=$?
  check "vdit $bad: refused with a message" \
    "[ $rc -ne 0 ] && grep -q 'could not set property \"${bad%%=*}\"' '$tmp/badcache.log'"
done
gst-launch-1.0 videotestsrc num-buffers=2 ! vdit model="$model" cache-threshold=-1 ! fakesink \
  >"$tmp/badcache.log" 2>&1
check "vdit cache-threshold=-1: refused with a message" \
  "grep -q \"out of range for property 'cache-threshold'\" '$tmp/badcache.log'"

# 10-bit video straight through vdit (16-bit RGB to the model), no
# videoconvert: the same caps on both pads, one buffer out for each in
# (counted by identity, whose chain messages gst-launch -v prints)
pads_caps() { # LOG PAD: the caps vdit0's pad settled on, without the pad's name
  grep "GstVdit:vdit0.GstPad:$2: caps" "$1" | tail -1 | sed 's/.*: caps = //'
}
chains() { grep -c "/GstIdentity:$2: last-message = chain" "$1"; }
for f in I420_10LE P010_10LE; do
  gst-launch-1.0 -v videotestsrc num-buffers=7 pattern=ball \
    ! video/x-raw,format=$f,width=66,height=50,framerate=10/1,colorimetry=bt709 \
    ! identity name=in silent=false ! vdit model="$model" steps=1 guidance=1 window=5 \
    ! identity name=out silent=false ! fakesink >"$tmp/$f.log" 2>&1
  check "vdit $f: the same caps on both pads, $f bt709" \
    "[ -n \"\$(pads_caps '$tmp/$f.log' sink)\" ] && [ \"\$(pads_caps '$tmp/$f.log' sink)\" = \"\$(pads_caps '$tmp/$f.log' src)\" ] && pads_caps '$tmp/$f.log' src | grep -q 'format=(string)$f.*colorimetry=(string)bt709'"
  check "vdit $f: 7 buffers in, 7 out" \
    "[ \$(chains '$tmp/$f.log' in) = 7 ] && [ \$(chains '$tmp/$f.log' out) = 7 ]"
done

# interlaced and HDR streams are refused with the fix named; accept= lets
# them through (here to the model). The sources are live: gst-launch-1.0
# (1.22) misses an error posted before its main loop runs and then waits
# forever, and a live source starts only once the loop has set PLAYING.
gst-launch-1.0 videotestsrc is-live=true num-buffers=3 \
  ! video/x-raw,format=I420,width=32,height=16,interlace-mode=interleaved \
  ! vdit model="$model" steps=1 ! fakesink >"$tmp/interlaced.log" 2>&1
rc=$?
check "vdit on interlaced caps: an error naming deinterlace and accept=interlaced" \
  "[ $rc -ne 0 ] && grep -q 'deinterlace first (deinterlace element), or set accept=interlaced' '$tmp/interlaced.log'"
gst-launch-1.0 videotestsrc is-live=true num-buffers=3 \
  ! video/x-raw,format=I420_10LE,width=32,height=16,colorimetry=bt2100-pq \
  ! vdit model="$model" steps=1 ! fakesink >"$tmp/pq.log" 2>&1
rc=$?
check "vdit on colorimetry=bt2100-pq: an error naming tone-mapping and accept=hdr" \
  "[ $rc -ne 0 ] && grep -q 'tone-map it to SDR first.*accept=hdr' '$tmp/pq.log'"
gst-launch-1.0 -v videotestsrc num-buffers=5 \
  ! video/x-raw,format=I420_10LE,width=32,height=16,colorimetry=bt2100-pq,interlace-mode=interleaved \
  ! vdit model="$model" steps=1 window=5 accept=interlaced+hdr ! identity name=out silent=false \
  ! fakesink >"$tmp/accept.log" 2>&1
rc=$?
check "vdit accept=interlaced+hdr: both through, 5 buffers" "[ $rc = 0 ] && [ \$(chains '$tmp/accept.log' out) = 5 ]"

# vditsrc with a 10-bit format downstream: negotiated, in the colorimetry
# downstream fixes (or bt709), every buffer written
for c in I420_10LE:bt709 P010_10LE:bt2020 v210:bt709; do
  f=${c%:*} col=${c#*:}
  caps="video/x-raw,format=$f,width=48,height=32"
  [ $col = bt709 ] || caps="$caps,colorimetry=$col"
  eval gst-launch-1.0 -v $src num-buffers=7 ! "$caps" ! identity name=out silent=false \
    ! fakesink >"$tmp/src$f.log" 2>&1
  check "vditsrc ! $f: negotiated, colorimetry $col" \
    "caps_of '$tmp/src$f.log' | grep -q 'format=(string)$f.*colorimetry=(string)$col'"
  check "vditsrc ! $f: num-buffers=7 gives 7 buffers" "[ \$(chains '$tmp/src$f.log' out) = 7 ]"
done

# image to video: image= (a PNG and a JPEG made here by GStreamer's own
# encoders, a 2:1 picture). Without a size from downstream the output has
# the size libvdit picks for the image (the size `vdit generate --image`
# makes, when the build has the command; else the tiny model's, 96x32 from
# its 64x48 area in multiples of 16); with one, that size.
gst-launch-1.0 -q videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,width=128,height=64 \
  ! pngenc ! filesink location="$tmp/wide.png" >/dev/null 2>&1
gst-launch-1.0 -q videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,width=128,height=64 \
  ! jpegenc ! filesink location="$tmp/wide.jpg" >/dev/null 2>&1
i2v_size=96x32
if [ -n "$vdit" ] && "$vdit" generate --model "$model" --image "$tmp/wide.png" --frames 1 \
     --steps 1 --threads 1 --seed 1 -q --output "$tmp/cli_i2v.y4m" >/dev/null 2>&1; then
  i2v_size=$(head -c 64 "$tmp/cli_i2v.y4m" | sed -n 's/^YUV4MPEG2 W\([0-9]*\) H\([0-9]*\) .*/\1x\2/p')
fi
for img in wide.png wide.jpg; do
  eval gst-launch-1.0 -q $src threads=1 image="$tmp/$img" num-buffers=7 ! videoconvert ! y4menc \
    ! filesink location="$tmp/i2v_$img.y4m" >"$tmp/i2v_$img.log" 2>&1
  check "vditsrc image=$img: 7 frames of $i2v_size (the size libvdit picks)" \
    "[ \$(frames '$tmp/i2v_$img.y4m') = 7 ] && head -c 64 '$tmp/i2v_$img.y4m' | grep -q 'W${i2v_size%x*} H${i2v_size#*x} '"
done
eval gst-launch-1.0 -q $src threads=1 image="$tmp/wide.png" num-buffers=7 \
  ! video/x-raw,width=40,height=24 ! videoconvert ! y4menc \
  ! filesink location="$tmp/i2v_sized.y4m" >"$tmp/i2v_sized.log" 2>&1
check "vditsrc image= with 40x24 downstream: 7 frames of 40x24" \
  "[ \$(frames '$tmp/i2v_sized.y4m') = 7 ] && head -c 64 '$tmp/i2v_sized.y4m' | grep -q 'W40 H24 '"
# a missing file, random bytes, a text file: an error naming the file and
# the cause, the pipeline ends (no hang)
head -c 3000 /dev/urandom >"$tmp/noise.png"
printf 'not a picture\n' >"$tmp/text.png"
for img in none.png noise.png text.png; do
  case $img in none.png) why="No such file or directory" ;; *) why="not a picture" ;; esac
  eval timeout 60 gst-launch-1.0 $src image="$tmp/$img" num-buffers=3 ! fakesink \
    >"$tmp/bad_$img.log" 2>&1
  rc=$?
  check "vditsrc image=$img: error exit, no hang" "[ $rc -ne 0 ] && [ $rc -ne 124 ]"
  check "vditsrc image=$img: the message names the file and '$why'" \
    "grep -q 'Could not read the image \"$tmp/$img\": .*$why' '$tmp/bad_$img.log'"
done
# The first frame is the image, on the bundled model (trained; the tiny
# model's random autoencoder returns no picture): red left, blue right. It
# must be much closer to that picture than to its mirror (blue left, red
# right: the same colours in the same amounts), which an output unrelated to
# the image is about as far from.
/usr/bin/python3 - "$tmp/rb.png" <<'EOF'
import struct, sys, zlib
w, h = 128, 64
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
row = b"\0" + b"".join(bytes((255, 0, 0) if x < w // 2 else (0, 0, 255)) for x in range(w))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" +
    chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
    chunk(b"IDAT", zlib.compress(row * h)) + chunk(b"IEND", b""))
EOF
gst-launch-1.0 -v vditsrc image="$tmp/rb.png" threads=1 steps=4 seed=1 prompt="a red ball" \
  num-buffers=5 ! video/x-raw,format=RGB ! filesink location="$tmp/rb.rgb" >"$tmp/rb.log" 2>&1
rb_w=$(caps_of "$tmp/rb.log" | sed -n 's/.*width=(int)\([0-9]*\).*/\1/p')
rb_h=$(caps_of "$tmp/rb.log" | sed -n 's/.*height=(int)\([0-9]*\).*/\1/p')
res=$(/usr/bin/python3 - "$tmp/rb.rgb" "${rb_w:-0}" "${rb_h:-0}" <<'EOF'
import sys
data = open(sys.argv[1], "rb").read()
w, h = int(sys.argv[2]), int(sys.argv[3])
stride = (w * 3 + 3) // 4 * 4  # GStreamer's RGB rows: 4-byte aligned
if w < 2 or len(data) < stride * h:
    print("no frames (%d bytes at %dx%d)" % (len(data), w, h)); sys.exit(1)
def diff(left, right):
    s = 0
    for y in range(h):
        for x in range(w):
            ref = left if 2 * x < w else right
            i = y * stride + x * 3
            s += sum(abs(data[i + c] - ref[c]) for c in range(3))
    return s / (w * h * 3)
same, mirror = diff((255, 0, 0), (0, 0, 255)), diff((0, 0, 255), (255, 0, 0))
print("mean |diff| %.1f to the image, %.1f to its mirror (%dx%d)" % (same, mirror, w, h))
sys.exit(0 if same < mirror / 2 else 1)
EOF
)
rb_rc=$?
check "vditsrc image=: the first frame is the image ($res)" "[ $rb_rc = 0 ]"

# device: where the DiT runs. cuda where it cannot be used (a build without
# the CUDA backend, no GPU, no driver) fails to start saying why, without a
# hang; auto then runs on the CPU: the same bytes as the default. Where a GPU
# answers, cuda runs and auto takes it: as many bytes as the default. A bad
# value is refused naming it.
check "gst-inspect-1.0 vdit documents device" "grep -q '^  device' '$tmp/filter'"
check "gst-inspect-1.0 vditsrc documents device" "grep -q '^  device' '$tmp/src'"
dev_caps="video/x-raw,format=I420,width=32,height=32,framerate=8/1"
dev_pipe() { # NAME ELEMENT DEVICE-PROPERTY...: runs it into $tmp/dev_NAME.yuv (log .log)
  local name=$1 el=$2; shift 2
  if [ "$el" = vdit ]; then
    timeout 120 gst-launch-1.0 videotestsrc num-buffers=5 pattern=ball ! "$dev_caps" \
      ! vdit model="$model" steps=1 guidance=1 window=5 threads=1 "$@" \
      ! filesink location="$tmp/dev_$name.yuv" >"$tmp/dev_$name.log" 2>&1
  else
    timeout 120 gst-launch-1.0 vditsrc model="$model" steps=1 guidance=1 num-frames=5 \
      num-buffers=5 threads=1 "$@" ! "$dev_caps" \
      ! filesink location="$tmp/dev_$name.yuv" >"$tmp/dev_$name.log" 2>&1
  fi
}
for el in vdit vditsrc; do
  rm -f "$tmp"/dev_*.yuv
  dev_pipe default $el
  dev_pipe auto $el device=auto
  dev_pipe cuda $el device=cuda
  rc=$?
  check "$el: the default writes 5 frames" "[ \$(stat -c %s '$tmp/dev_default.yuv' 2>/dev/null || echo 0) = $((32 * 32 * 3 / 2 * 5)) ]"
  if [ $rc = 0 ]; then
    echo "note: $el device=cuda ran (a GPU answers)"
    check "$el device=auto (on the GPU): as many bytes as the default" \
      "[ \$(stat -c %s '$tmp/dev_auto.yuv') = \$(stat -c %s '$tmp/dev_default.yuv') ]"
  else
    check "$el device=cuda without a usable GPU: error exit, no hang, says why" \
      "[ $rc -ne 124 ] && grep -q 'device cuda:0: ' '$tmp/dev_cuda.log'"
    check "$el device=auto without a usable GPU: the default's frames" \
      "[ -s '$tmp/dev_auto.yuv' ] && cmp -s '$tmp/dev_auto.yuv' '$tmp/dev_default.yuv'"
  fi
  dev_pipe gpu $el device=gpu
  rc=$?
  check "$el device=gpu: error exit, no hang, names the value" \
    "[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q \"device 'gpu': expected cpu, cuda\" '$tmp/dev_gpu.log'"
done

# a missing model is a clear error, not a crash
gst-launch-1.0 videotestsrc num-buffers=2 ! vdit model=/nonexistent ! fakesink >"$tmp/bad.log" 2>&1
rc=$?
check "missing model: error exit" "[ $rc -ne 0 ]"
check "missing model: message names it" "grep -q '/nonexistent' '$tmp/bad.log'"

# a model of the wrong kind: a plain file, a folder of junk (the pipeline
# ends with the error on the bus, no hang)
printf 'not a checkpoint' >"$tmp/junk.txt"
mkdir -p "$tmp/junk-model" && printf 'xx' >"$tmp/junk-model/diffusion_pytorch_model.safetensors"
for m in "$tmp/junk.txt" "$tmp/junk-model"; do
  timeout 60 gst-launch-1.0 videotestsrc num-buffers=2 ! vdit model="$m" ! fakesink \
    >"$tmp/junk.log" 2>&1
  rc=$?
  check "model $(basename "$m"): error exit, no hang" "[ $rc -ne 0 ] && [ $rc -ne 124 ]"
  check "model $(basename "$m"): message names it" "grep -q '$m' '$tmp/junk.log'"
done

# decoder=FILE: TAEHV decodes (the frame count is the VAE's); a missing file
# is an error naming it
if [ -n "$tae" ]; then
  gst-launch-1.0 -q vditsrc model="$model" decoder="$tae" steps=1 guidance=1 num-frames=5 \
    num-buffers=5 ! video/x-raw,width=48,height=32 ! videoconvert ! y4menc \
    ! filesink location="$tmp/tae.y4m" >"$tmp/tae.log" 2>&1
  check "vditsrc decoder=TAEHV writes 5 frames" "[ \$(frames '$tmp/tae.y4m') = 5 ]"
  gst-launch-1.0 videotestsrc num-buffers=2 ! vdit model="$model" decoder=/nonexistent/taew.pth \
    ! fakesink >"$tmp/badtae.log" 2>&1
  rc=$?
  check "missing decoder file: error exit" "[ $rc -ne 0 ]"
  check "missing decoder file: message names it" "grep -q '/nonexistent/taew.pth' '$tmp/badtae.log'"
fi

# lora: merged at load on both elements; a LoRA for another architecture refused
if [ -n "$loras" ]; then
  gst-launch-1.0 -q vditsrc model="$model" steps=2 guidance=1 num-frames=5 num-buffers=5 \
    lora="$loras/kohya.safetensors:0.5|$loras/comfy.safetensors" \
    ! video/x-raw,width=48,height=32 ! y4menc ! filesink location="$tmp/lora.y4m" >"$tmp/lora.log" 2>&1
  check "vditsrc lora=A:0.5|B: 5 frames" "[ \$(frames '$tmp/lora.y4m') = 5 ]"
  gst-launch-1.0 -q videotestsrc num-buffers=5 ! video/x-raw,format=I420,width=48,height=32 \
    ! vdit model="$model" steps=2 guidance=1 window=5 lora="$loras/peft_original.safetensors:-1" \
    ! y4menc ! filesink location="$tmp/loraedit.y4m" >"$tmp/loraedit.log" 2>&1
  check "vdit lora=A:-1: 5 frames" "[ \$(frames '$tmp/loraedit.y4m') = 5 ]"
  timeout 60 gst-launch-1.0 vditsrc model="$model" num-buffers=1 \
    lora="$loras/bad_nomatch.safetensors" ! fakesink >"$tmp/lorabad.log" 2>&1
  rc=$?
  check "vditsrc with another architecture's LoRA: error exit, says why" \
    "[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q 'no key names a tensor' '$tmp/lorabad.log'"
  timeout 60 gst-launch-1.0 vditsrc model="$model" num-buffers=1 lora=":0.5" ! fakesink \
    >"$tmp/lorasyntax.log" 2>&1
  rc=$?
  check "vditsrc lora=:0.5: error exit" "[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q 'lora' '$tmp/lorasyntax.log'"
fi

[ $fail = 0 ] || { for f in "$tmp"/*.log; do echo "== $f"; tail -5 "$f"; done; }
exit $fail
