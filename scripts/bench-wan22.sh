#!/usr/bin/env bash
# The Wan2.2 TI2V-5B figures of docs/families.md ("Figures") in one command,
# random weights, vdit and the project's PyTorch port in the same run. Run it
# on an otherwise idle machine, after `ninja -C build`:
#
#   scripts/bench-wan22.sh [--quick] [--fp32] [--only PARTS] [--threads N] [--out DIR]
#
# Parts (--only: a comma-separated subset; default all five, about 15 minutes
# on the 2-core Zen 4, estimated from loaded-machine CPU times):
#   dit1200  the DiT at 1200 tokens (latent 5x24x40: 17 frames of 640x384), 3 of
#            the 30 layers measured and scaled to 30, best of 2 steps; vdit bf16
#            and fp32, PyTorch 2 bf16 and fp32 (models/wan/dit.py, SDPA),
#            diffusers bf16, Debian's torch 1.13 fp32
#   dit720p  the DiT at 1280x704x121 (latent 31x44x80 = 27280 tokens), 1 layer
#            measured and scaled to 30, 1 step; vdit bf16, PyTorch 2 bf16,
#            diffusers bf16 (--fp32: vdit fp32 and PyTorch 2 fp32 too; the
#            Debian row cannot hold its 24 x 27280^2 attention scores)
#   vae720p  the Wan2.2-VAE decoding 2 latent frames to 5 frames of 1280x704
#            (s/frame, peak RSS), vdit bf16 (--fp32: and fp32); about 3.5 min
#   vaetorch the same decode at 640x352 beside PyTorch 2 bf16
#            (models/wan/vae22.py, official chunked path; --fp32: PyTorch 2
#            fp32 and vdit fp32 too): the PyTorch port at 1280x704 would take
#            5-10 minutes more
#   vaeflat  peak RSS flat in length: vdit bf16 decoding 5 and 17 frames of
#            160x96 (2 and 5 latent frames), each in its own process
# --quick: the same commands at tiny sizes (checks the script, a few minutes).
# --fp32: also the fp32 rows named above (beyond the 15 minutes).
# Every part's full output goes to DIR (default bench-wan22-DATE under $TMPDIR
# or /tmp); the summary lines are printed at the end with each part's time.
#
# Environment: VDIT (default build/core/cli/vdit), VDIT_BENCH_PYTHON_PATH (a
# PyTorch 2 + diffusers interpreter; default scripts/bench-venv.sh's
# .venv-bench, created when missing: 2.7 GB from PyPI, not counted above).
set -u
cd "$(dirname "$0")/.."
vdit=${VDIT:-build/core/cli/vdit}
quick=0 fp32=0 only=dit1200,dit720p,vae720p,vaetorch,vaeflat threads=
out=${TMPDIR:-/tmp}/bench-wan22-$(date +%Y%m%d-%H%M%S)
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --fp32) fp32=1; shift ;;
    --only) only=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "bench-wan22: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$vdit" ] || { echo "bench-wan22: no $vdit (build first: ninja -C build)" >&2; exit 2; }
mkdir -p "$out" || exit 2
common=()
[ -n "$threads" ] && common+=(--threads "$threads")
[ -n "${VDIT_BENCH_PYTHON_PATH:-}" ] && py=(--python "$VDIT_BENCH_PYTHON_PATH") || py=()

echo "bench-wan22: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (modified)'), logs in $out"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) threads ($(lscpu 2>/dev/null | awk -F: '/^Core\(s\) per socket/ {gsub(/ /, "", $2); print $2}') cores per socket), $(free -g | awk '/Mem:/ {print $2}') GB memory; load average $(cut -d' ' -f1-3 /proc/loadavg)"
grep -o -w -E 'avx512_bf16|avx512f|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ' | sed 's/^/CPU flags: /; s/ $/\n/'

# the commands (--quick: tiny sizes through the same options)
if [ $quick = 1 ]; then
  dit1200=(bench dit --model wan22-5b --layers 1 --latent 2,4,8 --steps 2 --torch)
  dit720p=(bench dit --model wan22-5b --layers 1 --latent 3,8,8 --steps 1 --torch-rows torch-bf16,diffusers)
  vae720p=(bench vae --model wan22 --case 64x64x5:dec)
  vaetorch=(bench vae --model wan22 --case 32x32x5:dec --torch-rows torch-bf16)
  vaeflat=(bench vae --model wan22 --case 32x32x5:dec --case 32x32x17:dec)
  vae32=(bench vae --model wan22 --case 64x64x5:dec --precision fp32)
else
  dit1200=(bench dit --model wan22-5b --layers 3 --steps 2 --torch)
  dit720p=(bench dit --model wan22-5b --layers 1 --size 1280x704x121 --steps 1 --torch-rows torch-bf16,diffusers)
  vae720p=(bench vae --model wan22 --case 1280x704x5:dec)
  vaetorch=(bench vae --model wan22 --case 640x352x5:dec --torch-rows torch-bf16)
  vaeflat=(bench vae --model wan22 --case 160x96x5:dec --case 160x96x17:dec)
  vae32=(bench vae --model wan22 --case 1280x704x5:dec --precision fp32)
fi
if [ $fp32 = 1 ]; then
  dit720p=("${dit720p[@]/torch-bf16,diffusers/torch-bf16,diffusers,torch-fp32}")
  vaetorch=("${vaetorch[@]/torch-bf16/torch-bf16,torch-fp32}")
fi

t_all=$(date +%s)
summary=()
fails=0
run() { # part, vdit arguments...
  local part=$1 t0 rc
  shift
  echo
  echo "== $part: vdit $*"
  t0=$(date +%s)
  "$vdit" "$@" >"$out/$part.log" 2>&1
  rc=$?
  local dt=$(( $(date +%s) - t0 ))
  # the lines worth keeping: settings, peaks, results and summaries
  grep -E '^(dit bench|level|vdit |vs |dit (bf16|fp32)|vae |Wan2|[0-9]+x[0-9]+ |  PyTorch|  diffusers|PyTorch.*skipped|diffusers.*skipped|torch baselines|  vdit|  PyTorch|  diffusers|.*scaled to)' "$out/$part.log" | grep -v '^  OPENBLAS' | sed 's/^/  /'
  echo "  ($part: ${dt} s, exit $rc)"
  [ $rc = 0 ] || { fails=$((fails + 1)); tail -5 "$out/$part.log" | sed 's/^/  ! /'; }
  summary+=("$part (${dt} s, exit $rc):")
  while IFS= read -r l; do summary+=("  $l"); done < <(grep -E '^(dit (bf16|fp32) \(|vs |vae \(Wan2.2\)|vdit .*scaled to|size |[0-9]+x[0-9]+ )' "$out/$part.log")
}
for part in ${only//,/ }; do
  case $part in
    dit1200) run dit1200 "${dit1200[@]}" "${common[@]}" "${py[@]}" ;;
    dit720p)
      run dit720p "${dit720p[@]}" "${common[@]}" "${py[@]}" ;;
    vae720p)
      run vae720p "${vae720p[@]}" "${common[@]}"
      [ $fp32 = 1 ] && run vae720p-fp32 "${vae32[@]}" "${common[@]}" ;;
    vaetorch) run vaetorch "${vaetorch[@]}" "${common[@]}" "${py[@]}" ;;
    vaeflat) run vaeflat "${vaeflat[@]}" "${common[@]}" ;;
    *) echo "bench-wan22: unknown part $part" >&2; fails=$((fails + 1)) ;;
  esac
done
echo
echo "== summary ($(( $(date +%s) - t_all )) s in all, $fails failed; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
for l in "${summary[@]}"; do echo "$l"; done
[ $fails = 0 ]
