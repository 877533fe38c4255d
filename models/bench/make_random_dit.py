#!/usr/bin/python3
"""A random Wan DiT checkpoint of a released size, in one of the published
layouts, written tensor by tensor (never more than a few hundred MB in memory):
scripts/check-5b-layouts.sh loads and runs each.

    make_random_dit.py --layout LAYOUT --dtype DTYPE --out PATH
                       [--config wan22-5b|wan21-1.3b] [--layers N] [--shards N]

Layouts (PATH is the file, or the folder the layout lives in):
  official   original names (wan/modules/model.py), --shards N > 1: files
             diffusion_pytorch_model-0000K-of-0000N.safetensors and
             diffusion_pytorch_model.safetensors.index.json in the folder PATH
             (the Wan2.2-TI2V-5B release: 3 shards, fp32); 1: PATH is one file
  comfy      one file, every name behind "model.diffusion_model." (ComfyUI's
             repackaging, wan2.2_ti2v_5B_fp16.safetensors)
  diffusers  PATH/transformer/ with diffusers' WanTransformer3DModel names
             (Wan2.2-TI2V-5B-Diffusers), --shards N files and the index, and a
             config.json
DTYPE: fp32, bf16, fp16, or fp8: the "fp8_e4m3fn_scaled" repackaging (comfy
layout only): every 2-D+ weight of the blocks as F8_E4M3 with a per-tensor
F32 scale_weight and scale_input, the "scaled_fp8" marker, the rest bf16.

Values: uniform with the variance of 1 / fan_in for weights (0.05 for biases,
1 +- 0.1 for norm weights, 0.1 for modulation tables), taken from one pool of
2^22 random values at a pseudo-random offset per tensor: cheap to write, finite,
and a network of the right scale (this is a loading and memory check, not a
model). numpy only (Debian's /usr/bin/python3 has it).
"""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np

CONFIGS = {
    # dim, ffn, heads, layers, in/out channels, text_dim, freq_dim
    "wan22-5b": dict(dim=3072, ffn=14336, heads=24, layers=30, ch=48, text_dim=4096, freq=256),
    "wan21-1.3b": dict(dim=1536, ffn=8960, heads=12, layers=30, ch=16, text_dim=4096, freq=256),
}
POOL = 1 << 22


def specs(c):
    """[(original name, shape, kind)] in the order of wan/modules/model.py;
    kind: w (weight), b (bias), n (norm weight), nb (norm bias), m (modulation)."""
    D, out = c["dim"], []

    def lin(p, o, i):
        out.append((p + ".weight", (o, i), "w"))
        out.append((p + ".bias", (o,), "b"))

    out.append(("patch_embedding.weight", (D, c["ch"], 1, 2, 2), "w"))
    out.append(("patch_embedding.bias", (D,), "b"))
    lin("text_embedding.0", D, c["text_dim"])
    lin("text_embedding.2", D, D)
    lin("time_embedding.0", D, c["freq"])
    lin("time_embedding.2", D, D)
    lin("time_projection.1", 6 * D, D)
    for i in range(c["layers"]):
        for a in ("self_attn", "cross_attn"):
            for q in "qkvo":
                lin("blocks.%d.%s.%s" % (i, a, q), D, D)
            out.append(("blocks.%d.%s.norm_q.weight" % (i, a), (D,), "n"))
            out.append(("blocks.%d.%s.norm_k.weight" % (i, a), (D,), "n"))
        out.append(("blocks.%d.norm3.weight" % i, (D,), "n"))
        out.append(("blocks.%d.norm3.bias" % i, (D,), "nb"))
        lin("blocks.%d.ffn.0" % i, c["ffn"], D)
        lin("blocks.%d.ffn.2" % i, D, c["ffn"])
        out.append(("blocks.%d.modulation" % i, (1, 6, D), "m"))
    lin("head.head", c["ch"] * 4, D)
    out.append(("head.modulation", (1, 2, D), "m"))
    return out


# original -> diffusers (WanTransformer3DModel), first match wins; diffusers'
# norm2 is the original norm3 (the affine norm before cross-attention)
_DIFFUSERS = [
    ("time_embedding.0.", "condition_embedder.time_embedder.linear_1."),
    ("time_embedding.2.", "condition_embedder.time_embedder.linear_2."),
    ("time_projection.1.", "condition_embedder.time_proj."),
    ("text_embedding.0.", "condition_embedder.text_embedder.linear_1."),
    ("text_embedding.2.", "condition_embedder.text_embedder.linear_2."),
    ("head.modulation", "scale_shift_table"),
    ("head.head.", "proj_out."),
    (".modulation", ".scale_shift_table"),
    (".self_attn.o.", ".attn1.to_out.0."),
    (".cross_attn.o.", ".attn2.to_out.0."),
    (".self_attn.norm_", ".attn1.norm_"),
    (".cross_attn.norm_", ".attn2.norm_"),
    (".self_attn.", ".attn1.to_"),
    (".cross_attn.", ".attn2.to_"),
    (".norm3.", ".norm2."),
    (".ffn.0.", ".ffn.net.0.proj."),
    (".ffn.2.", ".ffn.net.2."),
]


def diffusers_name(n):
    for a, b in _DIFFUSERS:
        if a in n:
            return n.replace(a, b, 1)
    return n


def to_bf16(f):
    """float32 -> bf16 bits, round to nearest even."""
    u = f.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def e4m3_table():
    """The finite F8_E4M3 (fn) values by byte (NaN: 0x7f, 0xff)."""
    v = np.zeros(256, np.float64)
    for b in range(256):
        s, e, m = b >> 7, (b >> 3) & 15, b & 7
        x = (m / 8.0) * 2.0 ** -6 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7)
        v[b] = -x if s else x
    v[0x7F] = v[0xFF] = np.nan
    return v


def to_e4m3(f):
    """float values within +-448 -> nearest F8_E4M3 byte."""
    t = e4m3_table()
    ok = np.where(~np.isnan(t))[0]
    order = ok[np.argsort(t[ok], kind="stable")]
    vals = t[order]
    mid = (vals[1:] + vals[:-1]) / 2
    return order[np.searchsorted(mid, f.astype(np.float64))].astype(np.uint8)


class Pool:
    """The random values, and their encodings per (scale, mean, dtype), kept."""

    def __init__(self, seed=1):
        self.u = np.random.default_rng(seed).uniform(-1, 1, POOL).astype(np.float32)
        self.cache = {}

    def bytes_of(self, kind, fan_in, dt):
        key = (kind, fan_in, dt)
        if key not in self.cache:
            if kind == "w":
                scale, mean = (3.0 / fan_in) ** 0.5, 0.0
            elif kind == "n":
                scale, mean = 0.1, 1.0
            elif kind == "m":
                scale, mean = 0.1, 0.0
            else:
                scale, mean = 0.05, 0.0
            f = self.u * np.float32(scale) + np.float32(mean)
            if dt == "F32":
                b = f.tobytes()
            elif dt == "F16":
                b = f.astype("<f2").tobytes()
            elif dt == "BF16":
                b = to_bf16(f).tobytes()
            else:  # F8_E4M3: the pool normalised to +-448; the scale goes beside it
                b = to_e4m3(self.u / np.abs(self.u).max() * 448.0).tobytes()
            self.cache[key] = b
        return self.cache[key]


ESIZE = {"F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1}


class Tensor:
    def __init__(self, name, shape, dtype, kind, index, scalar=None):
        self.name, self.shape, self.dtype, self.kind, self.index = name, shape, dtype, kind, index
        self.scalar = scalar  # a 1-value F32/U8 tensor's value
        n = 1
        for s in shape:
            n *= s
        self.numel = n
        self.nbytes = n * ESIZE[dtype] if dtype in ESIZE else n

    def write(self, f, pool):
        if self.scalar is not None:
            f.write(np.asarray(self.scalar, dtype=np.float32 if self.dtype == "F32" else np.uint8)
                    .reshape(-1).tobytes())
            return
        fan_in = self.numel // self.shape[0] if self.kind == "w" else 0
        src = pool.bytes_of(self.kind, fan_in, self.dtype)
        es = ESIZE[self.dtype]
        off = ((self.index * 2654435761) % POOL) * es  # pseudo-random start in the pool
        left = self.nbytes
        while left:
            m = min(left, len(src) - off)
            f.write(memoryview(src)[off:off + m])
            left -= m
            off = 0


def write_st(path, tensors, pool, metadata=None):
    hdr, off = {}, 0
    for t in tensors:
        hdr[t.name] = {"dtype": t.dtype, "shape": list(t.shape),
                       "data_offsets": [off, off + t.nbytes]}
        off += t.nbytes
    if metadata:
        hdr["__metadata__"] = metadata
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for t in tensors:
            t.write(f, pool)
    return off


def build(c, layout, dtype):
    """The tensors of the layout, in file order."""
    dt = {"fp32": "F32", "bf16": "BF16", "fp16": "F16", "fp8": "BF16"}[dtype]
    ts = []
    for i, (name, shape, kind) in enumerate(specs(c)):
        if layout == "diffusers":
            name = diffusers_name(name)
        elif layout == "comfy":
            name = "model.diffusion_model." + name
        q = dtype == "fp8" and kind == "w" and len(shape) >= 2 and ".blocks." in "." + name
        ts.append(Tensor(name, shape, "F8_E4M3" if q else dt, kind, i))
        if q:
            fan_in = ts[-1].numel // shape[0]
            # the weights' scale: the pool's max |u| (1) times the kind's scale, over 448
            scale = (3.0 / fan_in) ** 0.5 / 448.0
            base = name[: -len(".weight")]
            ts.append(Tensor(base + ".scale_weight", (), "F32", "s", i, scalar=[scale]))
            ts.append(Tensor(base + ".scale_input", (), "F32", "s", i, scalar=[1.0]))
    if dtype == "fp8":
        ts.append(Tensor("scaled_fp8", (1,), "F8_E4M3", "s", 0, scalar=[0]))
    return ts


def write_sharded(folder, stem, ts, n, pool):
    os.makedirs(folder, exist_ok=True)
    total = sum(t.nbytes for t in ts)
    # split by bytes, as the release does (about equal shards)
    shards, cur, acc = [], [], 0
    for t in ts:
        cur.append(t)
        acc += t.nbytes
        if acc >= total * (len(shards) + 1) / n and len(shards) < n - 1:
            shards.append(cur)
            cur = []
    shards.append(cur)
    n = len(shards)
    wmap = {}
    for k, part in enumerate(shards):
        fn = "%s-%05d-of-%05d.safetensors" % (stem, k + 1, n)
        write_st(os.path.join(folder, fn), part, pool)
        for t in part:
            wmap[t.name] = fn
        print("  wrote %s (%.2f GB)" % (fn, sum(t.nbytes for t in part) / 1e9), flush=True)
    with open(os.path.join(folder, stem + ".safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layout", choices=("official", "comfy", "diffusers"), required=True)
    ap.add_argument("--dtype", choices=("fp32", "bf16", "fp16", "fp8"), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="wan22-5b")
    ap.add_argument("--layers", type=int, default=0, help="default: the model's")
    ap.add_argument("--shards", type=int, default=1)
    a = ap.parse_args()
    c = dict(CONFIGS[a.config])
    if a.layers:
        c["layers"] = a.layers
    if a.dtype == "fp8" and a.layout != "comfy":
        sys.exit("fp8: the comfy layout only (the repackagings are single prefixed files)")
    t0 = time.time()
    pool = Pool()
    ts = build(c, a.layout, a.dtype)
    total = sum(t.nbytes for t in ts)
    print("%s, %d layers, %s layout, %s: %d tensors, %.2f G values, %.2f GB" % (
        a.config, c["layers"], a.layout, a.dtype, len(ts), sum(t.numel for t in ts) / 1e9,
        total / 1e9), flush=True)
    if a.layout == "diffusers":
        folder = os.path.join(a.out, "transformer")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump({"_class_name": "WanTransformer3DModel", "patch_size": [1, 2, 2],
                       "num_attention_heads": c["heads"], "attention_head_dim": c["dim"] // c["heads"],
                       "in_channels": c["ch"], "out_channels": c["ch"], "text_dim": c["text_dim"],
                       "freq_dim": c["freq"], "ffn_dim": c["ffn"], "num_layers": c["layers"],
                       "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6},
                      f, indent=1)
        write_sharded(folder, "diffusion_pytorch_model", ts, max(a.shards, 1), pool)
    elif a.shards > 1:
        write_sharded(a.out, "diffusion_pytorch_model", ts, a.shards, pool)
    else:
        meta = {"format": "pt"}
        write_st(a.out, ts, pool, meta)
    dt = time.time() - t0
    print("written in %.1f s (%.0f MB/s)" % (dt, total / 1e6 / dt), flush=True)


if __name__ == "__main__":
    main()
