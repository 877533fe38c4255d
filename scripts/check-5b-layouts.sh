#!/usr/bin/env bash
# A Wan2.2 TI2V-5B-sized random DiT in each published layout loads and runs.
#
#   scripts/check-5b-layouts.sh [--layers N] [--dir DIR] [--only LIST] [--vdit PATH]
#
# One checkpoint at a time (disk and memory are limited): write it with
# models/bench/make_random_dit.py (numpy, streamed tensor by tensor), then
#   vdit info PATH           must name the family (wan2.2-ti2v) and the dims
#   vdit bench dit --dit PATH --steps 2
#                            loads it as the models do (mmap, key layout, the
#                            bf16 copy of fp32/fp16 weights, fp8 widened) and
#                            runs DiT forwards at 16 tokens (one timestep per
#                            token); the output must be finite
# and delete it. Prints per layout the bytes written, write and load seconds,
# the forward, the peak RSS (/usr/bin/time), then a table; exit 1 if any fails.
#
# Layouts (--only takes a comma-separated subset of the names):
#   official-fp32   diffusion_pytorch_model-0000K-of-00003.safetensors + index,
#                   original names, fp32: the Wan-AI/Wan2.2-TI2V-5B release (20 GB)
#   comfy-fp16      wan2.2_ti2v_5B_fp16.safetensors, "model.diffusion_model."
#                   names (ComfyUI's repackaging, 10 GB)
#   diffusers-bf16  transformer/ with diffusers names, 3 shards + index (10 GB;
#                   Wan2.2-TI2V-5B-Diffusers is fp32, here bf16 for the dtype)
#   comfy-fp8       wan2.2_ti2v_5B_fp8_e4m3fn_scaled.safetensors: block weights
#                   F8_E4M3 with scale_weight, the rest bf16 (5 GB)
#   official-bf16   (not in the default set) one file, original names, bf16
#
# --layers N: N of the 30 blocks (a quick check of the script: --layers 2).
# --dir: where the files go (default $TMPDIR or /tmp; needs the largest
# checkpoint's size free: 20 GB for official-fp32 at 30 layers).
# Environment: VDIT (default build/core/cli/vdit), PY (default /usr/bin/python3:
# needs numpy).
set -u
cd "$(dirname "$0")/.."
layers=30
dir=${TMPDIR:-/tmp}
only=official-fp32,comfy-fp16,diffusers-bf16,comfy-fp8
vdit=${VDIT:-build/core/cli/vdit}
py=${PY:-/usr/bin/python3}
while [ $# -gt 0 ]; do
  case $1 in
    --layers) layers=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --vdit) vdit=$2; shift 2 ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "check-5b-layouts: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$vdit" ] || { echo "check-5b-layouts: no $vdit (build first: ninja -C build)" >&2; exit 2; }
"$py" -c 'import numpy' 2>/dev/null || { echo "check-5b-layouts: $py cannot import numpy" >&2; exit 2; }
[ -x /usr/bin/time ] && timev=/usr/bin/time || timev=
work=$(mktemp -d "$dir/vdit-5b-layouts.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
echo "check-5b-layouts: Wan2.2 TI2V-5B, $layers layers, in $work ($(df -h "$work" | awk 'NR==2 {print $4}') free)"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) threads, $(free -g | awk '/Mem:/ {print $2}') GB memory"
t_all=$(date +%s)
fails=0
rows=()
# name: make_random_dit.py arguments | the path vdit is given
spec() {
  case $1 in
    official-fp32) echo "--layout official --dtype fp32 --shards 3 --out $work/official|$work/official/diffusion_pytorch_model.safetensors.index.json" ;;
    official-bf16) echo "--layout official --dtype bf16 --out $work/diffusion_pytorch_model.safetensors|$work/diffusion_pytorch_model.safetensors" ;;
    comfy-fp16) echo "--layout comfy --dtype fp16 --out $work/wan2.2_ti2v_5B_fp16.safetensors|$work/wan2.2_ti2v_5B_fp16.safetensors" ;;
    diffusers-bf16) echo "--layout diffusers --dtype bf16 --shards 3 --out $work/diffusers|$work/diffusers/transformer" ;;
    comfy-fp8) echo "--layout comfy --dtype fp8 --out $work/wan2.2_ti2v_5B_fp8_e4m3fn_scaled.safetensors|$work/wan2.2_ti2v_5B_fp8_e4m3fn_scaled.safetensors" ;;
    *) return 1 ;;
  esac
}
for name in ${only//,/ }; do
  s=$(spec "$name") || { echo "check-5b-layouts: unknown layout $name" >&2; fails=$((fails + 1)); continue; }
  args=${s%%|*} path=${s#*|}
  echo
  echo "== $name"
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  if ! "$py" models/bench/make_random_dit.py --layers "$layers" $args; then
    echo "FAILED: $name: writing"; fails=$((fails + 1)); rm -rf "${work:?}"/*; continue
  fi
  t_write=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  gb=$(du -sb --apparent-size "$work" | awk '{printf "%.2f", $1 / 1e9}')
  ok=1
  "$vdit" info "$path" >"$work/info.txt" 2>&1
  sed -n '/^checkpoint:/,$p' "$work/info.txt" | grep -E '^(files|dtypes|architecture|  dim|  key prefix)' | sed 's/^/  info: /'
  grep -q "family wan2.2-ti2v" "$work/info.txt" || { echo "FAILED: $name: vdit info names no wan2.2-ti2v family"; ok=0; }
  grep -q "dim 3072, layers $layers, ffn 14336, in_dim 48, out_dim 48" "$work/info.txt" ||
    { echo "FAILED: $name: vdit info: not the 5B dims"; ok=0; }
  if [ -n "$timev" ]; then
    $timev -v "$vdit" bench dit --dit "$path" --steps 2 >"$work/run.txt" 2>"$work/time.txt"
  else
    "$vdit" bench dit --dit "$path" --steps 2 >"$work/run.txt" 2>"$work/time.txt"
  fi
  rc=$?
  sed 's/^/  /' "$work/run.txt"
  grep -v -E '^\s+(Command|User|System|Percent|Elapsed|Average|Major|Minor|Volun|Invol|Swaps|File sys|Socket|Signals|Page size|Exit)' "$work/time.txt" | grep -v "Maximum resident" | sed 's/^/  /'
  peak=$(awk -F: '/Maximum resident/ {printf "%.0f", $2 / 1024}' "$work/time.txt")
  load=$(sed -n 's/.*; \([0-9.]*\) s with the .* preparation.*/\1/p' "$work/run.txt")
  fwd=$(sed -n 's/.*forward 2: .*: \([0-9.]*\) s$/\1/p' "$work/run.txt")
  if [ $rc != 0 ] || ! grep -q "output: finite" "$work/run.txt"; then
    echo "FAILED: $name: the forward (exit $rc)"; ok=0
  fi
  [ $ok = 1 ] && res=ok || { res=FAILED; fails=$((fails + 1)); }
  rows+=("$(printf '%-15s %8s %8.1f %8s %9s %9s  %s' "$name" "$gb" "$t_write" "${load:-?}" "${fwd:-?}" "${peak:-?}" "$res")")
  rm -rf "${work:?}"/*
done
echo
echo "Wan2.2 TI2V-5B random DiT, $layers layers (vdit bench dit --dit PATH: 2 forwards at 1x8x8 = 16 tokens, default precision)"
printf '%-15s %8s %8s %8s %9s %9s  %s\n' layout GB "write s" "load s" "forward s" "peak MiB" result
for r in "${rows[@]}"; do echo "$r"; done
echo "total $(( $(date +%s) - t_all )) s, $fails failed"
[ $fails = 0 ]
