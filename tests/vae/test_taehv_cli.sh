#!/bin/sh
# `vdit generate --decoder FILE` and `vdit edit --decoder FILE`: TAEHV decodes
# and the clip has the frames asked for (9, and 7: not 1 + 4k); a bad
# --decoder fails (exit 1) with a message naming the file.
# usage: test_taehv_cli.sh VDIT MODEL TAEHV_FILE
vdit=$1 model=$2 tae=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; fail=1; fi; }
# FRAME markers of a y4m file (the pixel rows are binary: no line tools)
frames() {
  python3 -c 'import sys; print(open(sys.argv[1], "rb").read().count(b"FRAME\n"))' "$1" \
    2>/dev/null || echo 0
}
common="--model $model --steps 2 --threads 1 --seed 1 --quiet"
size="--width 40 --height 24"
"$vdit" generate --prompt "a cat" --frames 9 --decoder "$tae" $common $size --output "$tmp/g9.y4m"
check "generate --decoder FILE: exit 0" "[ $? = 0 ]"
check "generate --decoder FILE: 9 frames" "[ \$(frames '$tmp/g9.y4m') = 9 ]"
"$vdit" generate --prompt "a cat" --frames 7 --decoder "$tae" $common $size --output "$tmp/g7.y4m"
check "generate --decoder FILE --frames 7: 7 frames" "[ \$(frames '$tmp/g7.y4m') = 7 ]"
"$vdit" edit --prompt "a dog" --input "$tmp/g9.y4m" --strength 0.5 --decoder "$tae" \
  $common --output "$tmp/e9.y4m"
check "edit --decoder FILE: 9 frames" "[ \$(frames '$tmp/e9.y4m') = 9 ]"
"$vdit" generate --prompt "a cat" --frames 9 --decoder vae $common $size --output "$tmp/v9.y4m"
check "--decoder vae: 9 frames" "[ \$(frames '$tmp/v9.y4m') = 9 ]"
check "--decoder vae and FILE decode differently" "! cmp -s '$tmp/v9.y4m' '$tmp/g9.y4m'"
"$vdit" generate --prompt x --frames 5 --decoder "$tmp/none.pth" $common $size \
  --output "$tmp/x.y4m" 2>"$tmp/err"
rc=$?
check "missing --decoder file: exit 1" "[ $rc = 1 ]"
check "missing --decoder file: message names it" "grep -q '$tmp/none.pth' '$tmp/err'"
printf 'junk' >"$tmp/junk.safetensors"
"$vdit" generate --prompt x --frames 5 --decoder "$tmp/junk.safetensors" $common $size \
  --output "$tmp/x.y4m" 2>"$tmp/err"
rc=$?
check "corrupt --decoder file: exit 1, names it" "[ $rc = 1 ] && grep -q junk.safetensors '$tmp/err'"
[ $fail = 0 ] || cat "$tmp/err"
exit $fail
