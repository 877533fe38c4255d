#!/bin/sh
# vdit info on the vendored conformance weights (tests/conformance/wan2.1),
# the .pth fixtures and a malicious file. Arguments: VDIT_EXE DATA_DIR CONFORMANCE_DIR
set -u
vdit=$1 data=$2 conf=$3
fail=0
check() { # description, expected substring, command output
  case "$3" in
    *"$2"*) ;;
    *) echo "FAILED: $1: no '$2' in:"; echo "$3"; fail=1 ;;
  esac
}
out=$("$vdit" info --tensors "$data/tensors.pth" 2>&1)
check "pth summary" "tensors: 13" "$out"
check "pth dtypes" "BF16 1 tensors" "$out"
check "pth listing" "nested.inner.x	F32	[2]" "$out"
check "pth listing" "wT	F32	[3, 2]" "$out"
out=$("$vdit" info "$data/bad_global.pth" 2>&1) && { echo "FAILED: malicious file accepted"; fail=1; }
check "malicious" "global 'posix.system' is not allowed" "$out"
out=$("$vdit" info "$data/no-such-file.safetensors" 2>&1) && { echo "FAILED: missing file accepted"; fail=1; }
check "missing" "no-such-file.safetensors" "$out"
out=$("$vdit" info "$conf/dit_tiny/weights.safetensors" 2>&1)
check "dit" "Wan2.1 DiT (t2v), original key names" "$out"
check "dit dims" "dim 64, layers 2, ffn 128, in_dim 16, out_dim 16, text_dim 48, freq_dim 32, patch [1, 2, 2]" "$out"
out=$("$vdit" info "$conf/dit_tiny_i2v/weights.safetensors" 2>&1)
check "dit i2v" "Wan2.1 DiT (i2v)" "$out"
check "dit i2v in_dim" "in_dim 36" "$out"
out=$("$vdit" info "$conf/vae_tiny" 2>&1)
check "vae" "Wan2.1 VAE, original key names" "$out"
check "vae dims" "base dim 6, z_dim 16" "$out"
out=$("$vdit" info "$conf/umt5_tiny/weights.safetensors" 2>&1)
check "umt5" "umT5 encoder" "$out"
check "umt5 dims" "vocab 512, dim 32, layers 2, heads 4, ffn 64, position buckets 32" "$out"
[ $fail -eq 0 ] && echo "info: all checks passed"
exit $fail
