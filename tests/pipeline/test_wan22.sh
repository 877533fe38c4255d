#!/bin/sh
# A tiny Wan2.2 TI2V model folder (mktiny with the conformance Wan2.2-VAE)
# through the vdit command: the family is found, text-to-video,
# image-to-video (the output size from the image), extend and a streaming
# edit longer than a window all run and give what was asked.
# usage: test_wan22.sh VDIT MODEL_DIR WORK_DIR PYTHON
vdit=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") model=$2 work=$3 py=$4
mkdir -p "$work" && cd "$work" || exit 1
fail=0
frames() { "$py" -c 'import sys; d=open(sys.argv[1],"rb").read(); print(d.split(b"\n",1)[0].decode().split()[1:3], d.count(b"FRAME\n"))' "$1"; }
check() { # what file expected
    got=$(frames "$2" 2>/dev/null)
    [ "$got" = "$3" ] || { echo "FAILED: $1: got $got, expected $3"; fail=1; }
}
"$vdit" info "$model" >info.txt 2>&1
grep -q "^family: wan2.2-ti2v" info.txt || { echo "FAILED: vdit info: $(head -3 info.txt)"; fail=1; }
grep -q "sizes in multiples of 32" info.txt || { echo "FAILED: vdit info alignment"; fail=1; }
run() { "$vdit" "$@" --model "$model" --threads 1 --seed 3 --steps 3 --prompt "a red ball" -q; }
run generate --output t2v.y4m || fail=1
check "text to video" t2v.y4m "['W64', 'H64'] 9"
"$py" - <<'PYEOF'
w, h = 100, 60
with open("img.y4m", "wb") as f:
    f.write(b"YUV4MPEG2 W100 H60 F25:1 Ip A1:1 C444\n")
    f.write(b"FRAME\n" + bytes(((x % w) * 2 + (x // w) * 3) & 255 for x in range(w * h))
            + bytes(128 for _ in range(w * h * 2)))
PYEOF
run generate --image img.y4m --frames 5 --output i2v.y4m || fail=1
check "image to video (best_output_size at 64x64: 64x64)" i2v.y4m "['W64', 'H64'] 5"
run generate --image img.y4m --frames 5 --width 96 --height 40 --output i2v_sized.y4m || fail=1
check "image to video at a given size" i2v_sized.y4m "['W96', 'H40'] 5"
run extend --input t2v.y4m --frames-new 4 --output ext.y4m || fail=1
check "extend" ext.y4m "['W64', 'H64'] 13"
"$py" - <<'PYEOF'
w, h, n = 64, 64, 21
with open("long.y4m", "wb") as f:
    f.write(b"YUV4MPEG2 W64 H64 F8:1 Ip A1:1 C444\n")
    for i in range(n):
        f.write(b"FRAME\n" + bytes((x * 7 + i * 13) & 255 for x in range(w * h * 3)))
PYEOF
run edit --input long.y4m --strength 0.7 --output edit.y4m || fail=1
check "streaming edit of 21 frames (window 9)" edit.y4m "['W64', 'H64'] 21"
[ $fail = 0 ] && echo "wan2.2 tiny model: all checks passed"
exit $fail
