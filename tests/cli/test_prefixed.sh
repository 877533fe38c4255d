#!/bin/sh
# Distilled checkpoints as their training code saves them (issue 29): the
# tiny model's DiT rewritten as a Self-Forcing .pt ({"generator_ema":
# {"model.<name>": ...}}), a CausVid .pt ({"generator": {"model.<name>"}}),
# a safetensors file with FSDP's wrapper in the names
# ("_fsdp_wrapped_module.model.blocks.0._fsdp_wrapped_module.self_attn..."),
# one under "model." and one under torch.compile's "_orig_mod.". Each must:
# be described by `vdit info` (the prefix it found, the DiT), and give
# exactly the clip the original file gives (same weights, same names once
# the prefix and the wrappers are gone).
# Usage: test_prefixed.sh VDIT TINY_MODEL_DIR WORKDIR PYTHON
vdit=$1 model=$(cd "$2" && pwd) work=$3 py=$4
fails=0
pass() { echo "ok: $1"; }
fail() { echo "FAIL: $1${2:+: $2}"; fails=$((fails + 1)); }
if ! "$py" -c 'import torch, numpy' 2>/dev/null; then
  echo "SKIP: $py has no torch/numpy"; exit 77
fi
rm -rf "$work" && mkdir -p "$work" || exit 1

"$py" - "$model/diffusion_pytorch_model.safetensors" "$work" "$(dirname "$0")/../../models" <<'PY' || { echo "FAIL: writing the files"; exit 1; }
import sys
import torch

src, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
from wan import st  # the project's safetensors reader and writer

sd = st.load(src)

def fsdp(k):
    # the outer wrapper around the model, one around each block
    parts = k.split(".")
    if parts[0] == "blocks":
        k = ".".join(parts[:2] + ["_fsdp_wrapped_module"] + parts[2:])
    return "_fsdp_wrapped_module.model." + k

tt = {k: torch.from_numpy(v) for k, v in sd.items()}
torch.save({"generator_ema": {"model." + k: v for k, v in tt.items()}}, out + "/self_forcing.pt")
torch.save({"generator": {"model." + k: v for k, v in tt.items()}, "step": 1000},
           out + "/causvid.pt")
st.save(out + "/fsdp.safetensors", {fsdp(k): v for k, v in sd.items()})
st.save(out + "/model_prefix.safetensors", {"model." + k: v for k, v in sd.items()})
st.save(out + "/compiled.safetensors", {"_orig_mod." + k: v for k, v in sd.items()})
PY

gen() { # FOLDER OUT
  "$vdit" generate --model "$1" --prompt "a red ball" --frames 5 --steps 2 --seed 7 \
    --threads 1 --output "$2" >"$2.log" 2>&1
}
if ! gen "$model" "$work/ref.y4m"; then
  fail "reference clip" "$(tail -2 "$work/ref.y4m.log")"; exit 1
fi
folder() { # DIT_FILE: a folder of the tiny model's parts with this DiT
  d=$work/model_${1%%.*}
  mkdir -p "$d"
  for p in "$model"/*; do
    case $(basename "$p") in diffusion_pytorch_model*|vdit.json) ;; *) ln -sf "$p" "$d/" ;; esac
  done
  sed "s|^{|{ \"dit\": \"$work/$1\",|" "$model/vdit.json" >"$d/vdit.json"
  echo "$d"
}
for v in self_forcing.pt:generator_ema.model. causvid.pt:generator.model. \
         fsdp.safetensors:model. model_prefix.safetensors:model. compiled.safetensors:; do
  f=${v%%:*} prefix=${v#*:}
  info=$("$vdit" info "$work/$f" 2>&1)
  if [ -n "$prefix" ]; then
    echo "$info" | grep -q "key prefix: '$prefix'" && pass "$f: vdit info finds the prefix '$prefix'" ||
      fail "$f: vdit info prefix" "$(echo "$info" | grep -i 'prefix\|wrapper' | head -3)"
  fi
  case $f in fsdp*|compiled*)
    echo "$info" | grep -q "module wrappers in the names" && pass "$f: vdit info says the wrappers are dropped" ||
      fail "$f: vdit info wrappers" ;;
  esac
  echo "$info" | grep -q "wan2.1" && pass "$f: vdit info names the family" ||
    fail "$f: vdit info family" "$(echo "$info" | head -12 | tr '\n' '|')"
  d=$(folder "$f")
  if gen "$d" "$work/$f.y4m"; then
    cmp -s "$work/ref.y4m" "$work/$f.y4m" && pass "$f: the same clip as the original file" ||
      fail "$f: clip differs from the original file's"
  else
    fail "$f: generate" "$(tail -2 "$work/$f.y4m.log")"
  fi
done
# Two models in one file (a trainer's checkpoint with the generator and the
# critic): refused, naming both.
"$py" - "$work" <<'PY'
import sys, torch
out = sys.argv[1]
sd = torch.load(out + "/causvid.pt")["generator"]
torch.save({"generator": sd, "critic": sd}, out + "/two.pt")
PY
if "$vdit" generate --model "$(folder two.pt)" --prompt x --frames 1 --output "$work/two.png" \
     >"$work/two.log" 2>&1; then
  fail "two models in one file accepted"
else
  grep -q "more than one model" "$work/two.log" && pass "two models in one file refused: $(grep -o 'several tensors[^:]*' "$work/two.log" | head -1)" ||
    fail "two models in one file" "$(tail -2 "$work/two.log")"
fi
echo "$fails failed"
[ $fails -eq 0 ]
