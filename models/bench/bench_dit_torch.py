#!/usr/bin/python3
"""PyTorch side of `vdit bench dit`: the same DiT (the project's
models/wan/dit.py WanModel) on the same weights and inputs, CPU, fp32.

    bench_dit_torch.py --weights W.safetensors --io IO.safetensors --out OUT.bin \
                       --threads N --steps S

Weights are read with numpy memmaps (fp16 files are widened to fp32: CPU
PyTorch has no fast fp16 matmul). The configuration comes from the tensor
shapes (heads = dim / 128 unless --heads). Prints
`torch_seconds_per_step X` (best of S, wall clock) and
`torch_cpu_seconds_per_step X` (process CPU time of that step), and writes
the output as raw fp32.
"""
import argparse
import json
import os
import struct
import sys
import time

import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from wan.dit import WanModel  # noqa: E402

_NP = {"F32": np.float32, "F16": np.float16}


def load_st(path):
    """{name: read-only tensor over a memmap of the file} in the stored dtype."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        hdr = json.loads(f.read(n).decode("utf-8"))
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # read-only memmaps: only ever copied from
        for name, info in hdr.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            dt = np.dtype(_NP[info["dtype"]])
            arr = np.memmap(path, dtype=dt, mode="r", offset=8 + n + a, shape=tuple(info["shape"]))
            out[name] = torch.from_numpy(arr)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--io", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--heads", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    w = load_st(a.weights)
    io = load_st(a.io)
    D, in_dim = w["patch_embedding.weight"].shape[:2]
    n_layers = 0
    while "blocks.%d.modulation" % n_layers in w:
        n_layers += 1
    m = WanModel(in_dim=in_dim, dim=D, ffn_dim=w["blocks.0.ffn.0.weight"].shape[0],
                 freq_dim=w["time_embedding.0.weight"].shape[1],
                 text_dim=w["text_embedding.0.weight"].shape[1],
                 out_dim=w["head.head.weight"].shape[0] // 4,
                 num_heads=a.heads or D // 128, num_layers=n_layers,
                 text_len=io["context"].shape[0])
    # copy tensor by tensor from the mapped file (fp16 widened on the way):
    # no second full-size copy of the weights in memory
    sd = m.state_dict()
    missing = set(sd) ^ set(w)
    if missing:
        sys.exit("weights and model disagree on: %s" % sorted(missing)[:5])
    with torch.no_grad():
        for k, p in sd.items():
            p.copy_(w[k])
    del w, sd
    m.eval()
    print("torch load %.1f s, %d threads, torch %s" % (time.time() - t0, a.threads, torch.__version__),
          flush=True)
    x, t, ctx = (io[k].float().clone() for k in ("x", "t", "context"))
    best = best_cpu = None
    with torch.no_grad():
        for s in range(a.steps):
            t0, c0 = time.time(), time.process_time()
            out = m([x], t, [ctx])[0]
            dt, dc = time.time() - t0, time.process_time() - c0
            print("torch step %d: %.3f s (process CPU time %.3f s)" % (s + 1, dt, dc), flush=True)
            if best is None or dt < best:
                best, best_cpu = dt, dc
    out.contiguous().numpy().astype(np.float32).tofile(a.out)
    print("torch_cpu_seconds_per_step %.4f" % best_cpu, flush=True)
    print("torch_seconds_per_step %.4f" % best, flush=True)


if __name__ == "__main__":
    main()
