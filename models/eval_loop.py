"""How seamless a bridge-back loop can be with this VAE: its ceiling.

usage: /usr/bin/python3 models/eval_loop.py [--model models/default] [--seeds 4] [--frames 9]

The engine makes a loop of N frames (N >= 8) from a clip of N + 1 frames:
it keeps frames 1 .. N - 4 and makes the last 4 again as a bridge from frame
N - 4 back to frame 1, in a 13-frame window [frame N - 4 | 4 new | frames
1 .. 8] that it encodes, denoises (only the 4 new frames) and decodes
(core/src/pipeline/generate.c, train_gpu.py's loop_bridge_times). Here the
DiT is replaced by the truth: the window holds the clip's decoded frames and
the generator's exact bridge frames (the object moving back evenly), and the
VAE's round trip of that window gives the bridge. The loop's seam (last ->
first frame distance over the median consecutive distance, as the
model_loop test measures it) is what a perfect DiT would reach; the same
measure on the true frames is printed beside it.
"""
import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "data"))
import gen  # noqa: E402
import train_gpu  # noqa: E402
from eval_vae import load_vae, round_trip  # noqa: E402
from wan.vae import latent_scale  # noqa: E402

MOTIONS = ["moves down", "moves left", "rotates", "grows", "bounces"]


def seam(frames):
    f = np.asarray(frames, np.float64)
    steps = [np.abs(f[i + 1] - f[i]).mean() for i in range(len(f) - 1)]
    return np.abs(f[-1] - f[0]).mean() / max(float(np.median(steps)), 1e-6)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=os.path.join(HERE, "default"))
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--frames", type=int, default=9, help="loop length (8 or more)")
    a = p.parse_args()
    torch.set_num_threads(1)
    vae = load_vae(a)
    scale = latent_scale()
    n = a.frames + 1  # the clip the loop is cut from
    tc = 1 + 4 * ((n - 1 + 3) // 4)  # the clip's window (1 + 4k frames)
    for mot in MOTIONS:
        got, ideal = [], []
        for s in range(a.seeds):
            kw = dict(size_wh=(64, 64), frames=n, n_objects=1, motions=[mot], bg_weights=[1, 0, 0, 0, 0])
            truth = gen.make_clip(100 + s, **kw)["video"]
            clip = round_trip(vae, scale, gen.make_clip(100 + s, times=list(range(n)) + [n - 1] * (tc - n), **kw)["video"])[:n]
            win = gen.make_clip(100 + s, times=train_gpu.loop_bridge_times(n), **kw)["video"].astype(np.float64)
            ideal.append(seam(np.concatenate([truth[1:n - 4], win[1:5]])))
            win[0], win[5:] = clip[n - 5], clip[1:9]  # held frames as the engine holds them
            bridge = round_trip(vae, scale, np.round(win).astype(np.uint8))[1:5]
            got.append(seam(np.concatenate([clip[1:n - 4], bridge])))
        print("%-11s seam / median with the VAE: %s (true frames: %s)" % (
            mot, " ".join("%.2f" % x for x in got), " ".join("%.2f" % x for x in ideal)))


if __name__ == "__main__":
    main()
