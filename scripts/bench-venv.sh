#!/usr/bin/env bash
# The Python baselines of `vdit bench dit --torch`: a virtual environment with
# a current PyTorch 2.x and diffusers (WanTransformer3DModel) from PyPI,
# created when missing. Debian's python3-torch (1.13) stays the system row.
#
#   scripts/bench-venv.sh [--upgrade]
#
# Prints the versions on stderr and the venv's python path on stdout (last
# line), so a caller can do  PY=$(scripts/bench-venv.sh).
# Idempotent: when the venv imports torch and diffusers it installs nothing
# (--upgrade: move both to the newest releases on PyPI).
#
# Environment:
#   VDIT_BENCH_VENV    where the venv lives (default: .venv-bench in the
#                      repository root, ignored by git)
#   VDIT_BENCH_PYTHON  the interpreter that creates it (default: /usr/bin/python3,
#                      else python3); needs the venv module, on Debian the
#                      python3-venv package (apt-get install python3-venv)
#   VDIT_BENCH_TORCH   torch requirement (default: 'torch>=2,<3', the newest)
#
# PyPI only (no download.pytorch.org): the Linux torch wheels on PyPI are CUDA
# builds whose libraries (libtorch_cpu.so included) link the nvidia-* CUDA
# runtime libraries, so `import torch` fails without them even on a CPU-only
# machine. What it installs: torch --no-deps, then torch's own requirements
# except triton (the GPU compiler, ~290 MB download, 1 GB on disk) and
# cuda-bindings, neither of which `import torch` or CPU inference needs.
# Torch 2.15: ~2.7 GB download, 4.4 GB on disk, about a minute at 50 MB/s.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VDIT_BENCH_VENV:-$PWD/.venv-bench}
base=${VDIT_BENCH_PYTHON:-}
if [ -z "$base" ]; then
  if [ -x /usr/bin/python3 ]; then base=/usr/bin/python3; else base=python3; fi
fi
torch_req=${VDIT_BENCH_TORCH:-torch>=2,<3}
upgrade=0
[ "${1:-}" = "--upgrade" ] && upgrade=1
# no pip cache: the wheels are gigabytes and the venv is the only user
export PIP_NO_CACHE_DIR=${PIP_NO_CACHE_DIR:-1} PIP_DISABLE_PIP_VERSION_CHECK=1

py=$venv/bin/python
if [ ! -x "$py" ]; then
  echo "bench-venv: creating $venv with $base" >&2
  if ! "$base" -m venv "$venv" >&2; then
    rm -rf "$venv"
    echo "bench-venv: '$base -m venv' failed (on Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
fi
pip() { "$py" -m pip -q "$@" >&2; }

# what is missing of torch, diffusers, numpy (one interpreter start)
missing() {
  "$py" - 2>/dev/null <<'EOF2' || echo torch diffusers
import importlib.util as u
print(" ".join(m for m in ("torch", "diffusers", "numpy") if u.find_spec(m) is None))
EOF2
}
t0=$(date +%s)
need=$(missing)
[ $upgrade = 1 ] && need="torch diffusers"
if [[ " $need " == *" torch "* ]]; then
  echo "bench-venv: installing $torch_req from PyPI (CUDA runtime libraries, no triton)" >&2
  pip install --upgrade --no-deps "$torch_req"
  # torch's requirements as pip reads them (markers included), less the two
  # that only GPU work uses
  mapfile -t reqs < <("$py" - <<'EOF'
import importlib.metadata as md
import re
for r in md.requires("torch") or []:
    name = re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-")
    if "extra ==" in r or name in ("triton", "pytorch-triton", "cuda-bindings"):
        continue
    print(r)
EOF
  )
  # pip reports the missing triton as a conflict; that is expected
  "$py" -m pip -q install "${reqs[@]}" 2>&1 | grep -v -E "dependency resolver|requires (triton|cuda-bindings)" >&2 || true
fi
if [[ " $need " == *" diffusers "* || " $need " == *" numpy "* ]]; then
  echo "bench-venv: installing diffusers, numpy from PyPI" >&2
  pip install --upgrade diffusers numpy
fi
"$py" - >&2 <<'EOF' || { echo "bench-venv: $venv is broken: rerun with --upgrade or remove it" >&2; exit 1; }
import sys
import numpy, torch, diffusers
from diffusers import WanTransformer3DModel  # noqa: F401  (fails early if diffusers lacks it)
print("bench-venv: python %s, torch %s, diffusers %s, numpy %s, CPU capability %s"
      % (sys.version.split()[0], torch.__version__, diffusers.__version__, numpy.__version__,
         torch.backends.cpu.get_cpu_capability()))
EOF
t1=$(date +%s)
[ -n "$need" ] && echo "bench-venv: ready in $((t1 - t0)) s, $(du -sh "$venv" | cut -f1) on disk" >&2
echo "$py"
