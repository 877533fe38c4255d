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
# --decoder tae: the family's TAEHV file in the model's folder, which
# `vdit info` names
mkdir "$tmp/withtae"
for f in "$model"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$tmp/withtae/"; done
fam=$("$vdit" info "$model" 2>/dev/null | sed -n 's/^family: \([^ ]*\).*/\1/p')
name=taew2_1.safetensors
[ "$fam" = wan2.2-ti2v ] && name=taew2_2.safetensors
cp "$tae" "$tmp/withtae/$name"
"$vdit" info "$tmp/withtae" >"$tmp/info" 2>&1
check "vdit info names the folder's TAEHV ($fam)" "grep -q 'TAEHV $name' '$tmp/info'"
"$vdit" info "$model" >"$tmp/info0" 2>&1
check "vdit info: only the VAE without one" "grep -q '^decoders: the VAE (default)$' '$tmp/info0'"
"$vdit" generate --prompt "a cat" --frames 9 --decoder tae --model "$tmp/withtae" --steps 2 \
  --threads 1 --seed 1 --quiet $size --output "$tmp/t9.y4m"
check "--decoder tae from the folder: the same clip as --decoder FILE" "cmp -s '$tmp/t9.y4m' '$tmp/g9.y4m'"
[ $fail = 0 ] || cat "$tmp/err"
exit $fail
