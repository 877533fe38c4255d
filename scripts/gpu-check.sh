#!/usr/bin/env bash
# Everything the GPU must show, in one run of under 8 minutes on a machine
# with an NVIDIA GPU, into one log: the build with the CUDA backend, the GPU
# kernel tests and the DiT, VAE and umT5 conformance folders computed on the device
# (fp32 within the CPU bounds, bf16 within the documented bf16 bound), and the
# benchmarks side by side with PyTorch on the same device (the project's own
# Wan port, bf16 autocast, scaled_dot_product_attention): the DiT forward at
# 1200 tokens and at 32760 tokens (81 frames of 832x480), TFLOP/s, % of the
# device's measured bf16 matrix peak, peak device memory; the Wan2.1 VAE
# decode of 81 frames at 832x480 (models/wan/vae.py in bf16 on the PyTorch
# side), seconds, frames/s, peak device memory.
#
#   bash scripts/gpu-check.sh --fetch        here (network to Debian's
#       archive): downloads the Debian packages the build needs and a GPU
#       image lacks (oneDNN) into .gpu-debs/ (git-ignored), to carry along
#   bash scripts/gpu-check.sh [LOG]          on the GPU machine (LOG default
#       ${OUT:-.}/gpu-check.log); needs nvcc, gcc, meson, ninja, python3 with
#       torch and numpy there, and .gpu-debs/ (or oneDNN installed)
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fetch" ]; then
    mkdir -p .gpu-debs
    (cd .gpu-debs && apt-get download libdnnl2 libdnnl-dev ocl-icd-libopencl1) || exit 1
    ls -la .gpu-debs
    exit 0
fi

LOG=${1:-${OUT:-.}/gpu-check.log}
mkdir -p "$(dirname "$LOG")"
exec > >(tee "$LOG") 2>&1
t_start=$(date +%s)
step() { echo; echo "=== $* ($(($(date +%s) - t_start)) s)"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || echo "nvidia-smi: not found"
nvcc --version | tail -2
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no device")' 2>&1
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) threads"

# oneDNN from the carried Debian packages, unpacked beside the build
if ! echo '#include <dnnl.h>' | cc -E - >/dev/null 2>&1; then
    step "oneDNN from .gpu-debs"
    SYS=/tmp/vdit-sys
    mkdir -p $SYS
    for f in .gpu-debs/*.deb; do dpkg -x "$f" $SYS || exit 1; done
    LIBDIR=$SYS/usr/lib/x86_64-linux-gnu
    export CPATH=$SYS/usr/include${CPATH:+:$CPATH}
    export LIBRARY_PATH=$LIBDIR${LIBRARY_PATH:+:$LIBRARY_PATH}
    export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    [ -e $LIBDIR/libdnnl.so ] || ln -sf libdnnl.so.2 $LIBDIR/libdnnl.so
fi

step "build (meson, -Dcuda=enabled)"
B=build-gpu
rm -rf $B
meson setup $B -Dcuda=enabled -Dgst_plugin=disabled -Dslow_tests=false >$B.setup.log 2>&1 ||
    { tail -40 $B.setup.log; echo "GPU CHECK: build setup failed"; exit 1; }
ninja -C $B >$B.ninja.log 2>&1 || { tail -60 $B.ninja.log; echo "GPU CHECK: build failed"; exit 1; }
echo "built in $(($(date +%s) - t_start)) s"
VDIT=$B/core/cli/vdit

step "GPU tests: kernels against the CPU reference, DiT, VAE and umT5 conformance folders on the device"
meson test -C $B --suite cuda --print-errorlogs --num-processes 1 2>&1 | tail -25
$B/tests/cuda/test_cuda 2>&1 | tail -60
for p in fp32 bf16; do
    for d in tests/conformance/wan2.1/dit_tiny tests/conformance/wan2.1/dit_tiny_i2v \
             tests/conformance/wan2.2/dit_ti2v_tiny tests/conformance/wan2.1/vae_tiny \
             tests/conformance/wan2.2/vae22_tiny tests/conformance/wan2.1/umt5_tiny; do
        $VDIT conform --device cuda --precision $p --verbose $d 2>&1 | tail -4
    done
done
step "the same folders on the CPU, for comparison"
$VDIT conform tests/conformance/wan2.1/dit_tiny 2>&1 | tail -2

# the issue's figures first (the 32760-token forward, the 81-frame decode),
# then the small and exact runs; each bounded so the whole stays in budget
step "benchmark: DiT forward, 32760 tokens (81 frames of 832x480), bf16, vs PyTorch on the device"
timeout 240 $VDIT bench dit --device cuda --size 832x480x81 --steps 2 --torch --python python3 \
    --no-venv 2>&1 | grep -v '^  | torch step'

step "benchmark: Wan2.1 VAE decode, 81 frames of 832x480, bf16, vs PyTorch on the device"
# the per-frame progress (carriage returns, stderr) left out
timeout 90 $VDIT bench vae --device cuda --case 832x480x81:dec --torch --python python3 --no-venv \
    2>&1 | tr '\r' '\n' | grep -Ev '^ *(en|de)code [0-9]+x[0-9]+: [0-9]+/[0-9]+ |^ *$'

step "benchmark: DiT forward, 1200 tokens (17 frames of 320x192), bf16, vs PyTorch on the device"
timeout 120 $VDIT bench dit --device cuda --steps 3 --torch --python python3 --no-venv 2>&1 |
    grep -v '^  | torch step'
step "benchmark: DiT forward, 1200 tokens, exact fp32 (no TF32)"
timeout 60 $VDIT bench dit --device cuda --precision fp32 --steps 2 2>&1 | tail -3

step "done"
