#!/usr/bin/python3
"""PyTorch side of `vdit bench t5`: the umT5 encoder blocks of the project's
models/wan/t5.py on the same weights and token ids, CPU, fp32.

    bench_t5_torch.py --weights W.safetensors --ids IDS.txt --out PREFIX --threads N --reps R

The weights file is the one `vdit bench t5` wrote (BF16, original names,
possibly fewer blocks than 24). Linear weights are widened to fp32 (CPU
PyTorch 1.13 has no fast bf16 matmul). The token embedding (256384 x 4096)
stays a memory map: its rows are gathered per call (inside the timing), so
the 2 GB table is never read whole, as in the C engine. IDS.txt holds one
prompt per line (ids separated by spaces). Prints per prompt
`torch_seconds <n_tokens> <best of R>`, `torch_cpu_seconds <n> <its CPU time>` and `torch_peak_rss_mb <n> <MiB>`,
and writes PREFIX<n>.f32 (the [n, dim] output).
"""
import argparse
import json
import os
import resource
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from wan.t5 import T5LayerNorm, T5SelfAttention  # noqa: E402


def open_st(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        hdr = json.loads(f.read(n).decode("utf-8"))
    maps = {}
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "BF16", name
        a, b = info["data_offsets"]
        maps[name] = np.memmap(path, dtype=np.uint16, mode="r", offset=8 + n + a,
                               shape=tuple(info["shape"]))
    return maps


def bf16(u16):
    """uint16 array holding bf16 -> float32 torch tensor."""
    return torch.from_numpy((np.asarray(u16, dtype=np.uint32) << 16).view(np.float32))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    w = open_st(a.weights)
    emb = w["token_embedding.weight"]
    dim = emb.shape[1]
    nb, heads = w["blocks.0.pos_embedding.embedding.weight"].shape
    n_layers = 0
    while "blocks.%d.norm1.weight" % n_layers in w:
        n_layers += 1
    # the weights are loaded below: skip the random initialisation (slow at this size)
    torch.nn.Linear.reset_parameters = lambda self: None
    torch.nn.Embedding.reset_parameters = lambda self: None
    blocks = torch.nn.ModuleList([
        T5SelfAttention(dim, w["blocks.0.attn.q.weight"].shape[0], w["blocks.0.ffn.fc1.weight"].shape[0],
                        heads, nb, shared_pos=False, dropout=0.0) for _ in range(n_layers)])
    sd = {k[len("blocks."):]: bf16(v) for k, v in w.items() if k.startswith("blocks.")}
    blocks.load_state_dict(sd, strict=True)
    del sd
    norm = T5LayerNorm(dim)
    norm.weight.data.copy_(bf16(w["norm.weight"]))
    blocks.eval()
    print("torch load %.1f s, %d blocks, %d threads, torch %s" %
          (time.time() - t0, n_layers, a.threads, torch.__version__), flush=True)
    with open(a.ids) as f:
        prompts = [[int(t) for t in line.split()] for line in f if line.strip()]
    with torch.no_grad():
        for ids in prompts:
            n = len(ids)
            best = None
            for r in range(a.reps + 1):  # the first call warms up
                t0 = time.time()
                c0 = time.process_time()
                x = bf16(emb[np.array(ids)])[None]          # [1, n, dim]
                mask = torch.ones(1, n, dtype=torch.long)
                for blk in blocks:
                    x = blk(x, mask)
                x = norm(x)
                dt = time.time() - t0
                if r and (best is None or dt < best):
                    best, cpu = dt, time.process_time() - c0
            x[0].contiguous().numpy().astype(np.float32).tofile("%s%d.f32" % (a.out, n))
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            print("torch_seconds %d %.4f" % (n, best), flush=True)
            print("torch_cpu_seconds %d %.4f" % (n, cpu), flush=True)
            print("torch_peak_rss_mb %d %.0f" % (n, rss), flush=True)


if __name__ == "__main__":
    main()
