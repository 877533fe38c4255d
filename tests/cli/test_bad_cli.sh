#!/bin/sh
# The vdit command on bad input: each case must end with the documented exit
# status (1 runtime failure, 2 bad usage) and a message naming the problem,
# never a crash or a hang; a few odd but valid cases must succeed.
# Arguments: VDIT_EXE TINY_MODEL_DIR WORK_DIR [PYTHON3]
set -u
vdit=$1 model=$2 work=$3 py=${4:-}
fail=0
case $vdit in /*) ;; *) vdit=$PWD/$vdit ;; esac
case $model in /*) ;; *) model=$PWD/$model ;; esac
rm -rf "$work" && mkdir -p "$work" || exit 1
cd "$work" || exit 1
common="--model $model --threads 1 --steps 1 --seed 1 --quiet"

# expect STATUS SUBSTRING ARGS...: runs vdit ARGS, checks status and stderr
expect() {
    want=$1 msg=$2
    shift 2
    out=$(timeout 120 "$vdit" "$@" 2>&1)
    got=$?
    case "$out" in
        *"Sanitizer"* | *"runtime error:"*)
            echo "FAILED (sanitizer report): vdit $*"; echo "$out" | head -20; fail=1; return ;;
    esac
    if [ "$got" != "$want" ]; then
        echo "FAILED (status $got, expected $want): vdit $*"
        echo "$out" | tail -3
        fail=1
    elif [ -n "$msg" ]; then
        case "$out" in
            *"$msg"*) ;;
            *) echo "FAILED (no '$msg' in the message): vdit $*"; echo "$out" | tail -3; fail=1 ;;
        esac
    fi
}

# ---- usage errors: exit 2, before any work ----
expect 2 "unknown command" bogus
expect 2 "unknown option '--bogus'" generate --bogus 1 --output a.y4m
expect 2 "needs a value" generate --output
expect 2 "bad value 'fp16' for --precision" generate --precision fp16 --output a.y4m
for d in gpu cuda:x cuda: cuda:-1 CPU; do
    expect 2 "bad value '$d' for --device" generate --device "$d" --output a.y4m
done
expect 2 "needs a value" generate --output a.y4m --steps
expect 2 "--output is required" generate $common
for o in "--width 0" "--width -5" "--width 99999" "--height abc" "--frames 0" "--frames -1" \
         "--steps 0" "--steps 1.5" "--steps 12x" "--fps 0" "--guidance -1" "--guidance inf" \
         "--shift 0" "--threads 0" "--seed -1" "--seed 1x" "--sampler foo" "--cache foo" \
         "--cache-threshold 0" "--cache-threshold -1" "--cache-start 1.5" "--cache-end 0" \
         "--cache-max-skip 0" "--cache-max-skip 2.5" "--guidance-end 0" "--guidance-end 2"; do
    expect 2 "bad value" generate $o --output a.y4m --model "$model"
done
for o in "--strength 1.5" "--strength -0.1" "--strength nan" "--strength x"; do
    expect 2 "bad value" edit $o --input a.y4m --output e.y4m --model "$model"
done
expect 2 "unknown option '--strength'" generate --strength 0.5 --output a.y4m
expect 2 "unknown option '--backward'" edit --backward --input a.y4m --output e.y4m
expect 2 "--input is required" edit --output e.y4m
expect 2 "--input2 is required" bridge --input a.y4m --frames-new 3 --output b.y4m
expect 2 "--frames-new is required" extend --input a.y4m --output b.y4m
expect 2 "4 or more" loop --frames 3 --output l.gif
# the output is checked before the model is even loaded
expect 2 "unknown output type '.foo'" generate $common --output x.foo
expect 2 "no extension" generate $common --output noext
expect 2 "%d pattern" generate $common --frames 3 --output several.png
# the other subcommands: 2 for bad usage, 1 when their input is missing
expect 2 "unknown option '--bogus'" tokenize --bogus
expect 1 "/nonexistent/spiece.model" tokenize /nonexistent/spiece.model
expect 2 "--threads needs a number" conform --threads x /nonexistent
expect 2 "unknown option" conform --bogus
expect 1 "/nonexistent/config.json" conform /nonexistent
expect 2 "usage" info
expect 1 "/nonexistent" info /nonexistent
expect 2 "unknown subject" bench bogus
for c in generate edit extend loop bridge tokenize conform; do
    expect 0 "Exit status" $c --help
done
for c in generate edit extend loop bridge; do
    expect 0 "--device D" $c --help
done

# ---- odd but valid sizes ----
expect 0 "" generate $common --width 40 --height 24 --frames 5 --output a.y4m
for s in "1 1 1" "2 2 2" "7 5 3" "130 74 1" "4097 9 1"; do
    set -- $s
    expect 0 "" generate $common --width "$1" --height "$2" --frames "$3" --output "g$1x$2.y4m"
done
expect 0 "" generate $common --frames 1 --width 16 --height 16 --output one.png
# step caching: runs, and the summary says how many forwards were computed
expect 0 "DiT forwards computed (step cache on)" generate --model "$model" --threads 1 \
    --steps 8 --seed 1 --cache tea --cache-threshold 0.5 --cache-start 0.2 --cache-end 0.9 \
    --cache-max-skip 2 --guidance-end 0.5 --width 16 --height 16 --frames 5 --output c.y4m
expect 0 "" edit $common --input g7x5.y4m --output e7x5.y4m
expect 0 "" extend $common --input g1x1.y4m --frames-new 2 --output x1x1.y4m
# image to video runs at the model's rate (the tiny model's 8), not the
# reader's 25 for an image; a clip keeps its own rate
expect 0 "" extend $common --input one.png --frames-new 4 --output i2v.y4m
head -c 64 i2v.y4m | grep -q " F8:1 " || { echo "FAILED: image to video not at 8 fps"; fail=1; }
expect 0 "" extend $common --input a.y4m --fps 12 --frames-new 4 --output a12.y4m
expect 0 "" extend $common --input a12.y4m --frames-new 4 --output a12b.y4m
head -c 64 a12b.y4m | grep -q " F12:1 " || { echo "FAILED: extend lost the clip's rate"; fail=1; }

# ---- runtime failures: exit 1 with the file named ----
expect 1 "cannot write into folder '/nonexistent/dir'" generate $common --output /nonexistent/dir/x.y4m
expect 1 "no-such.y4m" edit $common --input no-such.y4m --output e.y4m
: > empty.mp4
expect 1 "empty.mp4" edit $common --input empty.mp4 --output e.y4m
echo "not a video" > text.mkv
expect 1 "text.mkv" edit $common --input text.mkv --output e.y4m
expect 1 "differ in size" bridge $common --input g7x5.y4m --input2 a.y4m --frames-new 3 --output b.y4m
expect 1 "/nonexistent/model" generate --model /nonexistent/model --output a.y4m
# --device: cuda where it cannot be used (a build without the CUDA backend,
# or no GPU, no driver) fails the load saying why, and leaves no file; auto
# then runs on the CPU: the same bytes as the default (cpu). Where a GPU
# answers, cuda runs and auto is that GPU: a clip of the same size and length.
expect 0 "" generate $common --width 24 --height 16 --frames 5 --output dev_default.y4m
expect 0 "" generate $common --width 24 --height 16 --frames 5 --device cpu --output dev_cpu.y4m
expect 0 "" generate $common --width 24 --height 16 --frames 5 --device auto --output dev_auto.y4m
cmp -s dev_default.y4m dev_cpu.y4m || { echo "FAILED: --device cpu differs from the default"; fail=1; }
out=$(timeout 120 "$vdit" generate $common --width 24 --height 16 --frames 5 --device cuda \
      --output dev_cuda.y4m 2>&1)
got=$?
case "$got:$out" in
    0:*)
        # a usable GPU: auto took it too
        [ "$(head -1 dev_auto.y4m)" = "$(head -1 dev_default.y4m)" ] &&
        [ "$(wc -c <dev_auto.y4m)" = "$(wc -c <dev_default.y4m)" ] ||
            { echo "FAILED: --device auto (on the GPU) is not a clip like the default's"; fail=1; } ;;
    1:*"cannot load the model: device cuda"*)
        [ -e dev_cuda.y4m ] && { echo "FAILED: --device cuda left a file"; fail=1; }
        cmp -s dev_default.y4m dev_auto.y4m ||
            { echo "FAILED: --device auto without a usable GPU differs from the default"; fail=1; } ;;
    *)
        echo "FAILED (status $got): vdit generate --device cuda: $(echo "$out" | tail -2)"; fail=1 ;;
esac
expect 1 "device cuda:1000" generate $common --frames 1 --device cuda:1000 --output dev.png
# bf16 where the CPU (here lowered to AVX2) has no bf16 instructions
VDIT_CPU=avx2 expect 1 "precision bf16 needs a CPU" generate $common --precision bf16 --output a.y4m

# ---- broken model folders: exit 1 naming the file (or key) ----
broken() { rm -rf m && cp -r "$model" m; }
for part in diffusion_pytorch_model.safetensors Wan2.1_VAE.safetensors \
            models_t5_umt5-xxl-enc.safetensors tokenizer/spiece.model; do
    broken; rm "m/$part"
    expect 1 "no " generate --model m --threads 1 --steps 1 --frames 1 --output o.png
    broken; : > "m/$part"
    expect 1 "m/$part" generate --model m --threads 1 --steps 1 --frames 1 --output o.png
    broken; head -c 5000 "$model/$part" > "m/$part"
    expect 1 "m/$part" generate --model m --threads 1 --steps 1 --frames 1 --output o.png
    broken; printf 'garbage!' | dd of="m/$part" bs=1 seek=8 conv=notrunc 2>/dev/null
    expect 1 "m/$part" generate --model m --threads 1 --steps 1 --frames 1 --output o.png
done
if [ -n "$py" ]; then
    # the largest tensor of each checkpoint: wrong dtype, wrong shape, renamed
    for part in diffusion_pytorch_model.safetensors Wan2.1_VAE.safetensors \
                models_t5_umt5-xxl-enc.safetensors; do
        for kind in dtype shape rename nan; do
            broken
            "$py" - "$model/$part" "m/$part" $kind <<'EOF'
import json, struct, sys
src, dst, kind = sys.argv[1:4]
b = open(src, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
k = max((k for k in h if k != '__metadata__'),
        key=lambda k: h[k]['data_offsets'][1] - h[k]['data_offsets'][0])
if kind == 'dtype':
    h[k]['dtype'] = 'I32'
elif kind == 'shape':
    h[k]['shape'] = h[k]['shape'] + [1]
elif kind == 'nan':  # valid file, garbage values (0xff bytes: NaN in F32)
    s, e = h[k]['data_offsets']
    b = b[:8 + n + s] + b'\xff' * (e - s) + b[8 + n + e:]
else:
    h[k + '.renamed'] = h.pop(k)
hb = json.dumps(h).encode()
hb += b' ' * (-len(hb) % 8)
open(dst, 'wb').write(struct.pack('<Q', len(hb)) + hb + b[8 + n:])
EOF
            msg="m/$part"
            [ $kind = nan ] && msg="non-finite"
            # the VAE's largest tensor is in its encoder, which generate does not use
            [ $kind = nan ] && [ $part = Wan2.1_VAE.safetensors ] && continue
            expect 1 "$msg" generate --model m --threads 1 --steps 1 --frames 1 --output o.png
        done
    done
fi
for j in '' '[1, 2]' '{"width": -5}' '{"width": "abc"}' '{"steps": 2.5}' '{"sampler": "foo"}' \
         '{"num_heads": 0}' '{"guidance": "x"}' '{"negative_prompt": 5}' '{"dit": ""}'; do
    broken; printf '%s' "$j" > m/vdit.json
    expect 1 "vdit.json" generate --model m --threads 1 --steps 1 --frames 1 --output o.png
done
broken; printf '{"dit": "nope.safetensors"}' > m/vdit.json
expect 1 "m/nope.safetensors" generate --model m --threads 1 --steps 1 --frames 1 --output o.png

# progress (stderr not a terminal: a line per step): a clip longer than the
# model's window runs window by window, and each later window says which pass
# it is, so the count never seems to start over
out=$(timeout 120 "$vdit" generate --model "$model" --threads 1 --steps 1 --seed 1 --frames 9 \
      --prompt x --output p1.y4m 2>&1)
case "$out" in *"denoise 1/1"*) ;; *) echo "FAILED: no 'denoise 1/1' progress line"; fail=1 ;; esac
case "$out" in *"(pass"*) echo "FAILED: a one-window clip reports passes"; fail=1 ;; esac
out=$(timeout 120 "$vdit" generate --model "$model" --threads 1 --steps 1 --seed 1 --frames 17 \
      --prompt x --output p2.y4m 2>&1)
case "$out" in *"denoise (pass 2) 1/1"*) ;; *) echo "FAILED: no 'denoise (pass 2)' line"; echo "$out" | tail -5; fail=1 ;; esac

# the output disk full (here: a file-size limit): status 1, a message naming
# the file and the cause, and the frames written so far in a finished file
( ulimit -f 40; exec "$vdit" generate $common --prompt x --width 64 --height 48 --frames 21 \
    --output full.y4m ) >full.log 2>&1
got=$?
if [ $got != 1 ] || ! grep -q "full.y4m.*File too large.*disk full" full.log; then
    echo "FAILED (status $got): a full disk: $(tail -2 full.log)"; fail=1
elif [ -n "$py" ] && [ "$("$py" -c 'import sys; print(open(sys.argv[1], "rb").read().count(b"FRAME\n") > 0)' full.y4m)" != True ]; then
    echo "FAILED: the partial file holds no frame"; fail=1
fi

# SIGINT / SIGTERM mid-run: stops at the next step, status 130 / 143, says
# so, and leaves no output file
for sig in INT TERM; do
    rm -f sig.y4m sig.log # (the old log would say "denoise" before the new one exists)
    # (384x256x9 at 1000 steps: seconds of work left after the second
    # step, even on a fast CPU, so the signal cannot come after the end)
    "$vdit" generate --model "$model" --threads 1 --seed 1 --steps 1000 --frames 9 \
        --width 384 --height 256 --prompt x --output sig.y4m >sig.log 2>&1 &
    pid=$!
    i=0
    while [ $i -lt 600 ] && ! grep -q "denoise 2/" sig.log 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    kill -$sig $pid
    i=0
    while [ $i -lt 300 ] && kill -0 $pid 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    if kill -0 $pid 2>/dev/null; then
        echo "FAILED: SIG$sig did not stop vdit within 30 s"; kill -9 $pid; fail=1; continue
    fi
    wait $pid
    got=$?
    want=130; [ $sig = TERM ] && want=143
    if [ $got != $want ] || ! grep -q "interrupted (SIG$sig)" sig.log || [ -e sig.y4m ]; then
        echo "FAILED: SIG$sig: status $got (expected $want), $(tail -1 sig.log)"; fail=1
    fi
done

# ... and an edit longer than one window, whose frames are written as they
# are made, leaves a finished file of the frames edited before the signal
if [ -n "$py" ]; then
    "$py" - <<'PYEOF'
w, h, n = 128, 96, 61  # 8 windows of ~0.4 s each: the signal comes mid-run
with open("long_in.y4m", "wb") as f:
    f.write(b"YUV4MPEG2 W128 H96 F8:1 Ip A1:1 C444\n")
    for i in range(n):
        f.write(b"FRAME\n" + bytes((x * 7 + i * 13) & 255 for x in range(w * h * 3)))
PYEOF
    rm -f sig_edit.y4m sig_edit.log
    "$vdit" edit --model "$model" --threads 1 --seed 1 --steps 1000 --strength 1 --prompt x \
        --input long_in.y4m --output sig_edit.y4m >sig_edit.log 2>&1 &
    pid=$!
    i=0
    while [ $i -lt 1200 ] && ! grep -q "denoise (pass 2) 2/" sig_edit.log 2>/dev/null; do
        sleep 0.1; i=$((i + 1))
    done
    kill -INT $pid
    i=0
    while [ $i -lt 300 ] && kill -0 $pid 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    kill -9 $pid 2>/dev/null
    wait $pid
    got=$?
    nf=$("$py" -c 'import sys; print(open(sys.argv[1], "rb").read().count(b"FRAME\n"))' \
         sig_edit.y4m 2>/dev/null || echo 0)
    if [ $got != 130 ] || ! grep -q "interrupted (SIGINT): sig_edit.y4m holds the" sig_edit.log ||
       [ "${nf:-0}" -lt 1 ] || [ "${nf:-0}" -ge 61 ]; then
        echo "FAILED: SIGINT mid-edit: status $got, $nf frames, $(tail -1 sig_edit.log)"; fail=1
    fi
fi

[ $fail -eq 0 ] && echo "bad input: all checks passed"
exit $fail
