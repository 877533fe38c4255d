"""Prompt-adherence detector: main object colour and motion direction.

The C behaviour tests compute the same figures from generated frames:
  1. background colour = per-channel median of the frame's border pixels
     (first and last row and column), per frame;
  2. object mask = pixels whose RGB distance from that colour exceeds 60;
  3. colour = mean RGB of the mask pixels over all frames, named by the
     nearest palette entry (data.gen.COLOURS restricted to object colours);
  4. motion = centroid of the mask in the last quarter of the frames minus
     the centroid in the first quarter, (dx, dy) in pixels; if its length is
     below 6% of min(W,H) it is "still", else the nearest of 8 directions by
     angle (left, right, up, down and the diagonals, y grows downwards).
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import gen  # noqa: E402

DIR8 = ["right", "down and right", "down", "down and left", "left", "up and left", "up", "up and right"]


def object_mask(frame, thr=60.0):
    f = frame.astype(np.float32)
    border = np.concatenate([f[0], f[-1], f[:, 0], f[:, -1]])
    bg = np.median(border, axis=0)
    return np.sqrt(((f - bg) ** 2).sum(-1)) > thr


def detect(video):
    """uint8 [T,H,W,3] -> dict(colour, direction, dx, dy, coverage)."""
    T, H, W, _ = video.shape
    masks = [object_mask(fr) for fr in video]
    pix = np.concatenate([video[t][masks[t]] for t in range(T)]).astype(np.float32)
    cov = float(np.mean([m.mean() for m in masks]))
    if len(pix) == 0:
        return {"colour": None, "direction": None, "dx": 0.0, "dy": 0.0, "coverage": 0.0}
    mean = pix.mean(0)
    names = gen.OBJ_COLOURS
    d = [np.sum((mean - np.array(gen.COLOURS[n], np.float32)) ** 2) for n in names]
    colour = names[int(np.argmin(d))]

    def centroid(ts):
        ys, xs = [], []
        for t in ts:
            yy, xx = np.nonzero(masks[t])
            ys += list(yy)
            xs += list(xx)
        return (np.mean(xs), np.mean(ys)) if xs else (np.nan, np.nan)

    q = max(1, T // 4)
    x0, y0 = centroid(range(q))
    x1, y1 = centroid(range(T - q, T))
    dx, dy = float(x1 - x0), float(y1 - y0)
    if not np.isfinite(dx) or math.hypot(dx, dy) < 0.06 * min(W, H):
        direction = "still"
    else:
        a = math.atan2(dy, dx)
        direction = DIR8[int(round(a / (math.pi / 4))) % 8]
    return {"colour": colour, "direction": direction, "dx": dx, "dy": dy, "coverage": cov}


if __name__ == "__main__":
    # sanity check on ground-truth clips of the held-out prompts
    ok_c = ok_m = 0
    tp = gen.test_prompts(24)
    for i, p in enumerate(tp):
        spec = {"w": 64, "h": 64, "frames": 17, "objects": [{"colour": p["colour"], "shape": p["shape"],
                "motion": p["motion"], "size": ""}], "bg": {"kind": "solid", "c1": p["bg"], "c2": p["bg"],
                "phase": 0, "period": 8, "angle": 0}, "pan": None, "seed": i}
        r = detect(gen.render(spec))
        ok_c += r["colour"] == p["colour"]
        ok_m += r["direction"] == p["motion"][6:]
    print("ground truth: colour %d/%d motion %d/%d" % (ok_c, len(tp), ok_m, len(tp)))
