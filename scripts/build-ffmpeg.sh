#!/usr/bin/env bash
# Builds an FFmpeg with the vdit filters (vdit, vditsrc) into a local prefix:
#
#   scripts/build-ffmpeg.sh [5.1|7.1]        (default 5.1)
#
# FFmpeg 5.1 is what Debian 12 ships, 7.1 what Debian 13 ships. The source
# comes as the Debian source package through apt, using a private apt
# configuration under build/ffmpeg-<ver>/apt/ (the system's apt setup is not
# touched and no root is needed), is patched with patches/ffmpeg-<ver>/*.patch,
# gets ffmpeg-filter/*.c copied in, and is configured lean (the filters,
# codecs and formats the docs and tests use) and built against the libvdit
# of the meson build directory. Result:
#
#   build/ffmpeg-<ver>/prefix/bin/ffmpeg, ffprobe
#
# Every step is skipped when already done, so a second run only recompiles
# what changed (the filter sources, a new patch series).
#
# Environment:
#   VDIT_BUILD_DIR   meson build directory holding libvdit (default: build)
#   VDIT_FFMPEG_DIR  work directory (default: build/ffmpeg-<ver>)
#   DEBIAN_MIRROR    Debian mirror (default: the one in /etc/apt/sources.list*)
#   JOBS             make jobs (default 2)
#   VDIT_FFMPEG_TOOLCHAIN  FFmpeg's --toolchain (e.g. gcc-asan: the sanitizer
#                    run of the adapter tests, against an instrumented libvdit)
set -euo pipefail

ver=${1:-5.1}
case $ver in
  5.1) suite=bookworm ;;
  7.1) suite=trixie ;;
  *) echo "usage: $0 [5.1|7.1]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
vbuild=$(cd "$root" && realpath -m "${VDIT_BUILD_DIR:-build}")
work=$(cd "$root" && realpath -m "${VDIT_FFMPEG_DIR:-build/ffmpeg-$ver}")
jobs=${JOBS:-2}
t0=$(date +%s)
say() { echo "build-ffmpeg $ver: $*" >&2; }
die() { say "error: $*"; exit 1; }

pcdir=$vbuild/meson-uninstalled
[ -f "$pcdir/vdit-uninstalled.pc" ] && ls "$vbuild"/core/src/libvdit.so >/dev/null 2>&1 ||
  die "no libvdit in $vbuild: build vdit first (meson setup build && ninja -C build)"
for t in apt-get dpkg-source make pkg-config; do
  command -v $t >/dev/null || die "$t not found: run scripts/install-deps.sh"
done
mkdir -p "$work"

# ---- 1. source package through a private apt configuration -------------
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # First Debian archive URI the machine uses (one-line .list or deb822 .sources).
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
             2>/dev/null | grep -v '^\s*#' | grep -oE '(https?|file)://[^ ]*/debian/?( |$)' |
           grep -v security | head -1 | tr -d ' ' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
apt=$work/apt
dsc=$(ls "$apt"/src/ffmpeg_*.dsc 2>/dev/null | head -1 || true)
if [ -z "$dsc" ]; then
  say "fetching the ffmpeg source package ($suite) from $mirror"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/parts" "$apt/src"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" \
    >"$apt/sources.list"
  # Everything apt writes or reads as a source list lives under $apt.
  cat >"$apt/apt.conf" <<EOF
Dir::Etc::sourcelist "$apt/sources.list";
Dir::Etc::sourceparts "$apt/parts";
Dir::Etc::preferencesparts "$apt/parts";
Dir::State::Lists "$apt/lists";
Dir::Cache "$apt/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT::Sandbox::User "$(id -un)";
EOF
  apt-get -c "$apt/apt.conf" -qq update || die "apt-get update failed (is $mirror reachable?)"
  (cd "$apt/src" && apt-get -c "$apt/apt.conf" -qq source --download-only ffmpeg) ||
    die "apt-get source ffmpeg failed"
  dsc=$(ls "$apt"/src/ffmpeg_*.dsc | head -1)
fi

# ---- 2. unpack and patch (redone from scratch when the patches change) ----
src=$work/src
patches=("$root"/patches/ffmpeg-"$ver"/*.patch)
[ -e "${patches[0]}" ] || die "no patches in patches/ffmpeg-$ver"
phash=$(cat "$dsc" "${patches[@]}" | sha256sum | cut -c1-16)
if [ "$(cat "$src/.vdit-patched" 2>/dev/null)" != "$phash" ]; then
  say "unpacking $(basename "$dsc") and applying ${#patches[@]} patch(es)"
  rm -rf "$src" "$work/obj"
  dpkg-source -q -x "$dsc" "$src" >/dev/null 2>"$work/dpkg-source.log" ||
    { cat "$work/dpkg-source.log" >&2; die "dpkg-source -x failed"; }
  for p in "${patches[@]}"; do
    patch -d "$src" -p1 -s --no-backup-if-mismatch <"$p" || die "patch $(basename "$p") does not apply"
  done
  echo "$phash" >"$src/.vdit-patched"
fi
for f in "$root"/ffmpeg-filter/*.[ch]; do
  cmp -s "$f" "$src/libavfilter/$(basename "$f")" || cp "$f" "$src/libavfilter/"
done

# ---- 3. configure (out of tree, redone when the options change) ----------
export PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
pkg-config --exists vdit || die "pkg-config does not find vdit in $pcdir"
enc=mpeg4
extra=()
if pkg-config --exists x264; then
  enc=libx264
  extra+=(--enable-gpl --enable-libx264)
else
  say "libx264 not found (apt-get install libx264-dev): mp4 files use mpeg4"
fi
# vditsrc's image= reads PNG and JPEG files (ff_load_image: image2pipe, the
# codec found from the content by the image_png_pipe and image_jpeg_pipe probes, whatever
# the file's name); the tests make them with the png and mjpeg encoders.
conf=(
  --prefix="$work/prefix"
  --disable-everything --disable-autodetect --disable-doc --disable-ffplay
  --disable-network --disable-debug
  --enable-zlib --enable-libvdit "${extra[@]}"
  --extra-ldflags="-Wl,-rpath,$vbuild/core/src"
  --enable-filter=vdit,vditsrc,testsrc2,testsrc,color,format,scale,pad,crop,null,nullsink,fps,setpts,settb,setsar,trim,split,showinfo,sendcmd,setparams,setfield,setrange
  --enable-encoder=rawvideo,wrapped_avframe,png,mjpeg,mpeg4,$enc
  --enable-decoder=rawvideo,png,mjpeg,mpeg4,h264
  --enable-muxer=yuv4mpegpipe,rawvideo,image2,image2pipe,mp4,mov,null,framemd5,framecrc
  --enable-demuxer=yuv4mpegpipe,rawvideo,image2,image2pipe,image_png_pipe,image_jpeg_pipe,mov,h264,m4v
  --enable-parser=png,mjpeg,h264,mpeg4video
  --enable-protocol=file,pipe --enable-indev=lavfi
)
[ -n "${VDIT_FFMPEG_TOOLCHAIN:-}" ] && conf+=(--toolchain="$VDIT_FFMPEG_TOOLCHAIN")
# Since 7.0 the lavfi device hands out wrapped frames that need decoding.
[ "$ver" = 5.1 ] || conf+=(--enable-decoder=wrapped_avframe)
obj=$work/obj
chash=$(printf '%s\n' "${conf[@]}" "$phash" | sha256sum | cut -c1-16)
if [ "$(cat "$obj/.vdit-configured" 2>/dev/null)" != "$chash" ]; then
  say "configuring"
  rm -rf "$obj"
  mkdir -p "$obj"
  (cd "$obj" && "$src/configure" "${conf[@]}" >"$work/configure.log" 2>&1) ||
    { tail -20 "$obj/ffbuild/config.log" >&2 2>/dev/null; die "configure failed (see $work/configure.log)"; }
  echo "$chash" >"$obj/.vdit-configured"
fi

# ---- 4. build and install --------------------------------------------------
say "building (make -j$jobs)"
make -C "$obj" -j"$jobs" install >"$work/make.log" 2>&1 ||
  { grep -E 'error|Error' "$work/make.log" | head -30 >&2; die "make failed (see $work/make.log)"; }
"$work/prefix/bin/ffmpeg" -hide_banner -h filter=vdit >/dev/null 2>&1 ||
  die "the built ffmpeg has no vdit filter"
say "ready in $(($(date +%s) - t0)) s: $work/prefix/bin/ffmpeg"
