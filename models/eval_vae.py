"""How much of the adherence the VAE alone allows: round-trip ground truth.

usage: /usr/bin/python3 models/eval_vae.py [--ckpt models/work/ckpt_vae.pt | --model models/default] [--n 24]

Renders the ground-truth clip of each held-out test prompt (data.gen.test_prompts:
single object, solid background, 64x64, 9 frames), encodes and decodes it with the
VAE (chunked path, as the engine runs it) and runs the adherence detector
(detect.py) on the result. A DiT cannot score higher than this: the figure is
the ceiling the VAE sets on colour / motion adherence. Also prints the mean
absolute error in 0..255 levels, over all frames and over frame 0 alone (the
causal VAE encodes and decodes frame 0 by itself).
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from data import gen  # noqa: E402
import detect  # noqa: E402
from wan import st  # noqa: E402
from wan.vae import WanVAE_, latent_scale  # noqa: E402
from train import CFG  # noqa: E402


def load_vae(a):
    vae = WanVAE_(**CFG["vae"]).eval()
    if a.model:
        sd = {k: v.float() for k, v in st.load_torch(os.path.join(a.model, "Wan2.1_VAE.safetensors")).items()}
    else:
        s = torch.load(a.ckpt, map_location="cpu")
        sd = s["model"]
    vae.load_state_dict(sd)
    return vae


def round_trip(vae, scale, v):
    """uint8 video [T,H,W,3] -> its VAE round trip (chunked, as the engine runs it), uint8."""
    x = torch.from_numpy(np.asarray(v)).float().permute(3, 0, 1, 2).unsqueeze(0) / 127.5 - 1.0
    with torch.no_grad():
        y = vae.decode(vae.encode(x, scale, chunked=True), scale, chunked=True)[0].clamp(-1, 1)
    return ((y.permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", default=os.path.join(HERE, "work", "ckpt_vae.pt"))
    p.add_argument("--model", default=None, help="a bundle folder (its Wan2.1_VAE.safetensors) instead of --ckpt")
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("-v", action="store_true", help="one line per prompt")
    a = p.parse_args()
    torch.set_num_threads(1)
    vae = load_vae(a)
    scale = latent_scale()
    t0 = time.time()
    oc = om = 0
    err, err0 = [], []
    tp = gen.test_prompts(a.n)
    for i, q in enumerate(tp):
        spec = {"w": 64, "h": 64, "frames": a.frames,
                "objects": [{"colour": q["colour"], "shape": q["shape"], "motion": q["motion"], "size": ""}],
                "bg": {"kind": "solid", "c1": q["bg"], "c2": q["bg"], "phase": 0, "period": 8, "angle": 0},
                "pan": None, "seed": 7000 + i}
        v = gen.render(spec)
        r = round_trip(vae, scale, v)
        d = np.abs(r.astype(np.float32) - v.astype(np.float32))
        err.append(d.mean())
        err0.append(d[0].mean())
        det = detect.detect(r)
        c, m = det["colour"] == q["colour"], det["direction"] == q["motion"][6:]
        oc += c
        om += m
        if a.v:
            print("%-55s colour %-7s %s  motion %-15s %s  err %.1f (frame 0 %.1f)" % (
                q["prompt"], det["colour"], "ok " if c else "BAD", det["direction"], "ok " if m else "BAD",
                err[-1], err0[-1]), flush=True)
    n = len(tp)
    print("VAE round trip of %d held-out ground-truth clips: colour %d/%d, motion %d/%d, "
          "mean abs error %.2f levels (frame 0: %.2f), %.0fs" % (
              n, oc, n, om, n, float(np.mean(err)), float(np.mean(err0)), time.time() - t0))


if __name__ == "__main__":
    main()
