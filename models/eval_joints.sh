#!/bin/bash
# Joint continuity of `vdit extend` over more clips than the behaviour test's
# one: 4 prompts x seeds 12 and 34, each extending the model's own 9-frame
# clip (seed 11) by 8 frames forward and backward. Prints, per direction,
# the joint distance over the median consecutive distance (mean abs RGB
# difference, as tests/model's check_joint) of every clip, their mean and
# how many are at most x1.5.
#
# usage: models/eval_joints.sh MODEL [VDIT]   (VDIT: build/core/cli/vdit)
set -euo pipefail
M=${1:?usage: eval_joints.sh MODEL [VDIT]}
V=${2:-$(dirname "$0")/../build/core/cli/vdit}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
run() { "$V" "$@" --model "$M" --threads 1 --quiet; }
i=0
for P in "a red circle moves right on a blue background" \
         "a green square moves up on a gray background" \
         "a white triangle moves left on a black background" \
         "a purple star moves down and right on a yellow background"; do
    i=$((i + 1))
    run generate --prompt "$P" --seed 11 --output "$D/in$i.y4m"
    for s in 12 34; do
        run extend --prompt "$P" --input "$D/in$i.y4m" --frames-new 8 --seed $s --output "$D/f$i-$s.y4m"
        run extend --backward --prompt "$P" --input "$D/in$i.y4m" --frames-new 8 --seed $s \
            --output "$D/b$i-$s.y4m"
    done
done
/usr/bin/python3 - "$D" <<'PY'
import glob
import sys

import numpy as np


def frames(path):
    """RGB frames of a 4:4:4 y4m as vdit writes it (BT.601 limited range)."""
    data = open(path, "rb").read()
    head = data[:data.index(b"\n")].split()
    w = int(next(x for x in head if x.startswith(b"W"))[1:])
    h = int(next(x for x in head if x.startswith(b"H"))[1:])
    if b"C444" not in head:
        sys.exit("%s: not 4:4:4" % path)
    out = []
    for f in data.split(b"FRAME\n")[1:]:
        y, u, v = np.frombuffer(f[:w * h * 3], np.uint8).reshape(3, h, w).astype(float)
        y, u, v = (y - 16) * 255 / 219, (u - 128) * 255 / 224, (v - 128) * 255 / 224
        rgb = np.stack([y + 1.402 * v, y - 0.344 * u - 0.714 * v, y + 1.772 * u])
        out.append(np.clip(np.round(rgb), 0, 255))
    return out


for kind, joint in (("forward", 8), ("backward", 7)):  # 9 given + 8 new frames
    rs = []
    for p in sorted(glob.glob(sys.argv[1] + "/%s*.y4m" % kind[0])):
        fr = frames(p)
        d = [np.abs(fr[i] - fr[i + 1]).mean() for i in range(len(fr) - 1)]
        med = np.median([x for i, x in enumerate(d) if i != joint])
        rs.append(d[joint] / med)
    print("%s: joint / median over %d clips: mean %.2f, max %.2f, %d of %d <= 1.5  [%s]" % (
        kind, len(rs), np.mean(rs), np.max(rs), sum(r <= 1.5 for r in rs), len(rs),
        " ".join("%.2f" % r for r in rs)))
PY
