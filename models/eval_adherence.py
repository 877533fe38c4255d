"""Measure prompt adherence of the bundled model with the PyTorch sampler.

usage: /usr/bin/python3 models/eval_adherence.py [--model models/default] [--n 24]
Prompts: data.gen.test_prompts (single-object (colour, shape, motion) triples
held out of training).  Prints per-prompt results and the colour / motion
accuracy measured by detect.py (the figures the C tests should reach).
"""
import argparse
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from data import gen  # noqa: E402
import detect  # noqa: E402
import sample  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=os.path.join(HERE, "default"))
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    m = sample.load_bundle(a.model)
    t0 = time.time()
    oc = om = 0
    tp = gen.test_prompts(a.n)
    for i, q in enumerate(tp):
        v = sample.to_uint8(sample.generate(m, q["prompt"], seed=1000 + i, steps=a.steps, guidance=a.guidance))
        r = detect.detect(v)
        c, d = r["colour"] == q["colour"], r["direction"] == q["motion"][6:]
        oc += c
        om += d
        print("%-55s colour %-7s %s  motion %-15s %s (dx %.1f dy %.1f)" % (
            q["prompt"], r["colour"], "ok " if c else "BAD", r["direction"], "ok " if d else "BAD", r["dx"], r["dy"]),
            flush=True)
    n = len(tp)
    print("adherence over %d held-out prompts: colour %d/%d (%.0f%%), motion %d/%d (%.0f%%), %.0fs" % (
        n, oc, n, 100.0 * oc / n, om, n, 100.0 * om / n, time.time() - t0))


if __name__ == "__main__":
    main()
