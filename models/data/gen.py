"""Procedural video clips with exact captions, deterministic from a seed.

    clip = make_clip(seed)            # dict: video uint8 [T,H,W,3], caption, spec
    spec = sample_spec(rng); render(spec) -> uint8 video

One or two objects (shape, colour, size, motion) over a background (solid,
gradient, stripes, checkerboard, textured noise), optionally with a camera
pan.  The caption is generated from the same spec by a small grammar, so it
always describes the video exactly.  Native sizes are small for CPU training.
"""
import hashlib

import numpy as np

COLOURS = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 230), "yellow": (245, 220, 40),
    "purple": (150, 60, 200), "orange": (250, 140, 30), "white": (245, 245, 245), "cyan": (40, 210, 220),
    "pink": (250, 130, 190), "black": (15, 15, 15), "gray": (128, 128, 128), "brown": (130, 80, 40),
}
OBJ_COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "cyan", "pink", "black"]
BG_COLOURS = ["blue", "green", "white", "black", "gray", "brown", "yellow", "red", "purple"]
SHAPES = ["circle", "square", "triangle", "star", "diamond"]
SIZES = {"small": 0.16, "": 0.24, "large": 0.34}     # radius as a fraction of min(H,W)
DIRS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1),
        "up and left": (-0.71, -0.71), "up and right": (0.71, -0.71),
        "down and left": (-0.71, 0.71), "down and right": (0.71, 0.71)}
MOTIONS = ["moves " + d for d in DIRS] + ["rotates", "grows", "shrinks", "bounces", "stays still"]
BACKGROUNDS = ["solid", "gradient", "stripes", "checkerboard", "noise"]
PANS = ["left", "right", "up", "down"]
# native (width, height) and lengths (1+4k frames at 8 fps)
SIZES_WH = [(64, 64), (80, 48), (48, 80)]
LENGTHS = [9, 17]
FPS = 8


def held_out(colour, shape, motion):
    """Single-object (colour, shape, motion) triples never used in training."""
    h = hashlib.md5(("%s|%s|%s" % (colour, shape, motion)).encode()).digest()
    return h[0] % 8 == 0


def _obj_phrase(o):
    words = "%s%s %s %s" % ((o["size"] + " ") if o["size"] else "", o["colour"], o["shape"], o["motion"])
    return ("an " if words[0] in "aeiou" else "a ") + words


def _bg_phrase(b):
    c1, c2 = b["c1"], b.get("c2")
    k = b["kind"]
    if k == "solid":
        return "on a %s background" % c1
    if k == "gradient":
        return "on a %s and %s gradient" % (c1, c2)
    if k == "stripes":
        return "on %s and %s stripes" % (c1, c2)
    if k == "checkerboard":
        return "on a %s and %s checkerboard" % (c1, c2)
    return "on a textured %s background" % c1


def caption(spec):
    s = " and ".join(_obj_phrase(o) for o in spec["objects"]) + " " + _bg_phrase(spec["bg"])
    if spec.get("pan"):
        s += " as the camera pans " + spec["pan"]
    return s


def sample_spec(rng, allow_held_out=False, n_objects=None, size_wh=None, frames=None, bg_weights=None, motions=None,
                period=None):
    """bg_weights: optional probabilities of BACKGROUNDS (default uniform; the
    default draws the same random numbers as before, so seeds keep their clips);
    motions: optional subset of MOTIONS to draw from; period: a periodic clip
    (frame t + period = frame t): moving objects cross the whole frame once
    per period and wrap around its edges, no camera pan (what a seamless
    loop of that caption shows)."""
    w, h = size_wh or SIZES_WH[rng.integers(len(SIZES_WH))]
    T = frames or LENGTHS[rng.integers(len(LENGTHS))]
    n = n_objects or (1 if rng.random() < 0.75 else 2)
    used = set()
    objs = []
    if bg_weights is None:
        bgk = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    else:
        bgk = BACKGROUNDS[rng.choice(len(BACKGROUNDS), p=np.asarray(bg_weights, np.float64) / sum(bg_weights))]
    bgc = [c for c in BG_COLOURS]
    c1 = bgc[rng.integers(len(bgc))]
    c2 = c1
    while c2 == c1:
        c2 = bgc[rng.integers(len(bgc))]
    bg_used = {c1} | ({c2} if bgk in ("gradient", "stripes", "checkerboard") else set())
    for i in range(n):
        while True:
            col = OBJ_COLOURS[rng.integers(len(OBJ_COLOURS))]
            shp = SHAPES[rng.integers(len(SHAPES))]
            mot = MOTIONS[rng.integers(len(MOTIONS))] if motions is None else motions[rng.integers(len(motions))]
            if col in bg_used or col in used:
                continue
            if n == 1 and not allow_held_out and held_out(col, shp, mot):
                continue
            break
        used.add(col)
        size = list(SIZES)[rng.integers(len(SIZES))] if n == 1 else "small"
        objs.append({"colour": col, "shape": shp, "motion": mot, "size": size})
    pan = PANS[rng.integers(len(PANS))] if (bgk != "solid" and rng.random() < 0.15) else None
    if period:
        pan = None
    spec_period = {"period": int(period)} if period else {}
    return {**spec_period, "w": int(w), "h": int(h), "frames": int(T), "objects": objs,
            "bg": {"kind": bgk, "c1": c1, "c2": c2, "phase": float(rng.random()),
                   "period": int(rng.integers(8, 17)), "angle": float(rng.random() * np.pi)},
            "pan": pan, "seed": int(rng.integers(1 << 31))}


def _shape_mask(shape, xs, ys, cx, cy, r, rot):
    """Coverage in [0,1] of one shape at supersampled coords xs, ys."""
    dx, dy = xs - cx, ys - cy
    c, s = np.cos(rot), np.sin(rot)
    u, v = c * dx + s * dy, -s * dx + c * dy
    if shape == "circle":
        return (u * u + v * v <= r * r)
    if shape == "square":
        a = r * 0.85
        return (np.abs(u) <= a) & (np.abs(v) <= a)
    if shape == "diamond":
        return (np.abs(u) + np.abs(v) * 0.75 <= r)
    ang = np.arctan2(v, u)
    rad = np.sqrt(u * u + v * v)
    if shape == "triangle":
        k = 3
        a = (ang + np.pi / 2) % (2 * np.pi / k) - np.pi / k
        return rad * np.cos(a) <= r * 0.55
    # star: 5 points, radius oscillating between r and 0.45 r
    k = 5
    a = np.abs((ang + np.pi / 2) % (2 * np.pi / k) - np.pi / k) / (np.pi / k)
    return rad <= r * (1.0 - 0.55 * (1 - a))


def _background(spec, T, H, W, rng, ts):
    b = spec["bg"]
    c1 = np.array(COLOURS[b["c1"]], np.float32)
    c2 = np.array(COLOURS[b["c2"]], np.float32)
    pad = 24  # pans read from a larger canvas
    HH, WW = H + 2 * pad, W + 2 * pad
    yy, xx = np.mgrid[0:HH, 0:WW].astype(np.float32)
    k = b["kind"]
    if k == "solid":
        img = np.broadcast_to(c1, (HH, WW, 3)).copy()
    elif k == "gradient":
        d = (np.cos(b["angle"]) * xx + np.sin(b["angle"]) * yy)
        d = (d - d.min()) / max(d.max() - d.min(), 1e-6)
        img = c1 * (1 - d[..., None]) + c2 * d[..., None]
    elif k == "stripes":
        d = (np.cos(b["angle"]) * xx + np.sin(b["angle"]) * yy) / b["period"] + b["phase"]
        m = (np.floor(d) % 2)[..., None]
        img = c1 * (1 - m) + c2 * m
    elif k == "checkerboard":
        p = b["period"]
        m = ((np.floor(xx / p) + np.floor(yy / p)) % 2)[..., None]
        img = c1 * (1 - m) + c2 * m
    else:
        n = rng.standard_normal((HH // 4 + 2, WW // 4 + 2)).astype(np.float32)
        n = np.kron(n, np.ones((4, 4), np.float32))[:HH, :WW]
        img = c1 * (1 + 0.18 * n[..., None])
    img = np.clip(img, 0, 255)
    frames = []
    pdx, pdy = {"left": (1, 0), "right": (-1, 0), "up": (0, 1), "down": (0, -1), None: (0, 0)}[spec.get("pan")]
    # camera pans left -> scene content moves right in the frame
    for t in ts:
        off = t * 16.0 / max(T - 1, 1)
        ox = int(round(pad - pdx * off * 1.0)) if pdx else pad
        oy = int(round(pad - pdy * off * 1.0)) if pdy else pad
        ox = pad + int(round(pdx * off)) * -1 if pdx else pad
        oy = pad + int(round(pdy * off)) * -1 if pdy else pad
        frames.append(img[oy:oy + H, ox:ox + W])
    return np.stack(frames), (pdx, pdy)


def render(spec):
    """spec -> uint8 video [T,H,W,3]; with spec["times"], one frame per
    (fractional) time of the clip's T-frame timeline instead."""
    rng = np.random.default_rng(spec["seed"])
    T, H, W = spec["frames"], spec["h"], spec["w"]
    times = spec.get("times")
    ts = list(times) if times is not None else list(range(T))
    vid, (pdx, pdy) = _background(spec, T, H, W, rng, ts)
    vid = vid.astype(np.float32)
    S = 2  # supersampling for anti-aliased edges
    ys, xs = np.mgrid[0:H * S, 0:W * S].astype(np.float32)
    xs = (xs + 0.5) / S
    ys = (ys + 0.5) / S
    m = min(H, W)
    n = len(spec["objects"])
    for i, o in enumerate(spec["objects"]):
        r0 = SIZES[o["size"]] * m
        mot = o["motion"]
        dist = 0.55 * m * (T - 1) / 16.0 + 0.12 * m   # travel over the clip
        if mot.startswith("moves "):
            dx, dy = DIRS[mot[6:]]
        else:
            dx, dy = 0.0, 0.0
        # start so that the path is centred in the frame (objects side by side if two)
        cx0 = W / 2 - dx * dist / 2 + (0 if n == 1 else (i - 0.5) * W * 0.45 * (abs(dy) > 0.5 or dx == 0))
        cy0 = H / 2 - dy * dist / 2 + (0 if n == 1 else (i - 0.5) * H * 0.45 * (abs(dy) <= 0.5 and dx != 0))
        cx0 += rng.uniform(-0.06, 0.06) * m
        cy0 += rng.uniform(-0.06, 0.06) * m
        rot0 = rng.uniform(0, 2 * np.pi)
        col = np.array(COLOURS[o["colour"]], np.float32)
        P = spec.get("period")
        for fi, t in enumerate(ts):
            a = t / max(T - 1, 1)
            cx, cy, r, rot = cx0 + dx * dist * a, cy0 + dy * dist * a, r0, rot0
            if P:
                # once across the frame per period, wrapping around the edges
                cx = (cx0 + np.sign(dx) * W * t / P) % W
                cy = (cy0 + np.sign(dy) * H * t / P) % H
            if mot == "rotates":
                rot = rot0 + a * np.pi * (T - 1) / 16.0 * 1.2
            elif mot == "grows":
                r = r0 * (0.5 + 0.9 * a)
            elif mot == "shrinks":
                r = r0 * (1.4 - 0.9 * a)
            elif mot == "bounces":
                cy = H * 0.62 - abs(np.sin(np.pi * 2 * a * (T - 1) / 16.0)) * H * 0.35
            # the camera pan moves objects with the scene
            cx += -pdx * 16.0 * a if pdx else 0
            cy += -pdy * 16.0 * a if pdy else 0
            if P:
                cov = np.zeros(xs.shape, bool)
                for kx in (-W, 0, W):
                    for ky in (-H, 0, H):
                        cov |= _shape_mask(o["shape"], xs, ys, cx + kx, cy + ky, r, rot)
                cov = cov.astype(np.float32)
            else:
                cov = _shape_mask(o["shape"], xs, ys, cx, cy, r, rot).astype(np.float32)
            cov = cov.reshape(H, S, W, S).mean(axis=(1, 3))[..., None]
            vid[fi] = vid[fi] * (1 - cov) + col * cov
    return np.clip(np.round(vid), 0, 255).astype(np.uint8)


def make_clip(seed, times=None, **kw):
    rng = np.random.default_rng(seed)
    spec = sample_spec(rng, **kw)
    if times is not None:
        spec["times"] = [float(t) for t in times]
    return {"video": render(spec), "caption": caption(spec), "spec": spec}


def test_prompts(n=24, seed=123456):
    """Held-out single-object prompts (never seen verbatim in training), solid backgrounds."""
    rng = np.random.default_rng(seed)
    out = []
    seen = set()
    moving = [m for m in MOTIONS if m.startswith("moves ")]
    avail = sum(held_out(c, s, m) for c in OBJ_COLOURS for s in SHAPES for m in moving)
    if n > avail:
        raise ValueError("only %d held-out prompts exist" % avail)
    while len(out) < n:
        col = OBJ_COLOURS[rng.integers(len(OBJ_COLOURS))]
        shp = SHAPES[rng.integers(len(SHAPES))]
        mot = moving[rng.integers(len(moving))]
        bg = BG_COLOURS[rng.integers(len(BG_COLOURS))]
        if not held_out(col, shp, mot) or bg == col or (col, shp, mot) in seen:
            continue
        seen.add((col, shp, mot))
        spec = {"objects": [{"colour": col, "shape": shp, "motion": mot, "size": ""}],
                "bg": {"kind": "solid", "c1": bg, "c2": bg}, "pan": None}
        out.append({"prompt": caption(spec), "colour": col, "shape": shp, "motion": mot, "bg": bg})
    return out


if __name__ == "__main__":
    import sys
    for s in range(int(sys.argv[1]) if len(sys.argv) > 1 else 8):
        c = make_clip(s)
        print(c["video"].shape, c["caption"])
