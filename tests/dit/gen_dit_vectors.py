#!/usr/bin/python3
"""Makes DiT conformance folders (config.json, weights.safetensors,
io.safetensors, the layout of tests/conformance/wan2.1/dit_tiny) with other
dims, seeds and latent grids than the shared ones, and checks `vdit conform`
on them.

The reference below is an independent, functional re-statement of the
semantics in tests/conformance/wan2.1/README.md (dit_tiny, dit_tiny_i2v) and
tests/conformance/wan2.2/README.md (dit_ti2v_tiny: model_type ti2v, in_dim =
out_dim = 48, one timestep per token), evaluated in float64 (the truth an
fp32 engine is measured against); inputs and outputs are stored as float32.
The ti2v cases store t as [1, seq_len] (per token) and a second, plain call
with a 1-element t as t2v/t, t2v/out, like dit_ti2v_tiny.

    gen_dit_vectors.py --vdit build/core/cli/vdit --out DIR   # make all cases, run conform
    gen_dit_vectors.py --out DIR --case t2v_portrait          # just make one folder
"""
import argparse
import json
import math
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
from wan import st  # noqa: E402  (the project's safetensors writer)

F64 = torch.float64

# name: constructor overrides, latent [C,F,H,W] of x, context tokens, clip tokens, t, weight dtype.
# ti2v: t is the t2v call's timestep; t_tok names the per-token pattern of the main call
# ("i2v": the tokens of latent frame 0 at 0, the others at t_i2v; "scatter": values from
# t_vals spread over the tokens, several runs each), seq_pad: padding entries of t
# (seq_len = tokens + seq_pad; padding gets t_i2v, as the reference pads).
CASES = {
    # the brief's second shape: other dims, 3 layers, head_dim 16, portrait odd grid (5 x 3)
    "t2v_portrait": dict(dim=96, num_heads=6, num_layers=3, ffn_dim=200, text_dim=40, freq_dim=48,
                         text_len=24, in_dim=16, out_dim=16, x=[16, 2, 10, 6], n_ctx=11, t=937.0,
                         seed=7001, wdtype="F32"),
    # one frame (an image), landscape, head_dim 20 (RoPE split 4/3/3 pairs), text_len < n_ctx bound
    "t2v_image": dict(dim=80, num_heads=4, num_layers=2, ffn_dim=96, text_dim=32, freq_dim=16,
                      text_len=9, in_dim=16, out_dim=16, x=[16, 1, 4, 14], n_ctx=9, t=13.0,
                      seed=7002, wdtype="F32"),
    # other channel counts and a head_dim of 32 (RoPE 6/5/5), non-square, several frames
    "t2v_channels": dict(dim=128, num_heads=4, num_layers=2, ffn_dim=160, text_dim=24, freq_dim=32,
                         text_len=12, in_dim=12, out_dim=8, x=[12, 3, 6, 4], n_ctx=5, t=500.5,
                         seed=7003, wdtype="F32"),
    # without q/k RMSNorm and without the cross-attention LayerNorm (constructor flags off)
    "t2v_nonorm": dict(dim=64, num_heads=2, num_layers=2, ffn_dim=64, text_dim=16, freq_dim=8,
                       text_len=6, in_dim=16, out_dim=16, x=[16, 2, 4, 4], n_ctx=3, t=999.0,
                       seed=7005, wdtype="F32", qk_norm=False, cross_attn_norm=False),
    # image-to-video: F16 weights, other dims, 5 clip tokens
    "i2v_small": dict(model_type="i2v", dim=96, num_heads=6, num_layers=2, ffn_dim=120, text_dim=40,
                      freq_dim=32, text_len=20, in_dim=36, out_dim=16, x=[16, 2, 4, 8], n_ctx=6,
                      n_clip=5, clip_dim=1280, t=250.0, seed=7004, wdtype="F16"),
    # Wan2.2 TI2V: image-to-video timesteps (frame 0 clean), other dims, 3 layers, 3 frames of
    # 2 x 3 tokens, t given as [1, seq_len] with 4 padding entries
    "ti2v_i2v": dict(model_type="ti2v", dim=96, num_heads=6, num_layers=3, ffn_dim=160,
                     text_dim=40, freq_dim=48, text_len=20, in_dim=48, out_dim=48,
                     x=[48, 3, 4, 6], n_ctx=8, t=655.0, t_tok="i2v", t_i2v=870.0, seq_pad=4,
                     seed=7101, wdtype="F32"),
    # scattered per-token timesteps (5 distinct values in many runs, not sorted), head_dim 20,
    # portrait grid, F16 weights
    "ti2v_scatter": dict(model_type="ti2v", dim=80, num_heads=4, num_layers=2, ffn_dim=96,
                         text_dim=32, freq_dim=32, text_len=12, in_dim=48, out_dim=48,
                         x=[48, 2, 10, 4], n_ctx=12, t=999.0,
                         t_tok="scatter", t_vals=[999.0, 0.0, 412.5, 37.0, 731.0],
                         seed=7102, wdtype="F16"),
    # one token per frame (two frames): frame 0 at 0, frame 1 at t; qk_norm off
    "ti2v_tiny_grid": dict(model_type="ti2v", dim=64, num_heads=2, num_layers=2, ffn_dim=64,
                           text_dim=16, freq_dim=16, text_len=6, in_dim=48, out_dim=48,
                           x=[48, 2, 2, 2], n_ctx=6, t=3.0, t_tok="i2v", t_i2v=500.0,
                           seed=7103, wdtype="F32", qk_norm=False),
}


def make_weights(cfg, g):
    D, P = cfg["dim"], 4  # patch (1, 2, 2)
    w = {}

    def lin(name, n_out, n_in):
        w[name + ".weight"] = torch.randn(n_out, n_in, generator=g, dtype=F64) / math.sqrt(n_in)
        w[name + ".bias"] = 0.05 * torch.randn(n_out, generator=g, dtype=F64)

    def vec(name, n, mean=1.0):
        w[name] = mean + 0.1 * torch.randn(n, generator=g, dtype=F64)

    w["patch_embedding.weight"] = torch.randn(D, cfg["in_dim"], 1, 2, 2, generator=g,
                                              dtype=F64) / math.sqrt(cfg["in_dim"] * P)
    w["patch_embedding.bias"] = 0.05 * torch.randn(D, generator=g, dtype=F64)
    lin("text_embedding.0", D, cfg["text_dim"])
    lin("text_embedding.2", D, D)
    lin("time_embedding.0", D, cfg["freq_dim"])
    lin("time_embedding.2", D, D)
    lin("time_projection.1", 6 * D, D)
    for i in range(cfg["num_layers"]):
        b = "blocks.%d." % i
        for a in ("self_attn", "cross_attn"):
            for p in "qkvo":
                lin(b + a + "." + p, D, D)
            if cfg.get("qk_norm", True):
                vec(b + a + ".norm_q.weight", D)
                vec(b + a + ".norm_k.weight", D)
        if cfg.get("model_type") == "i2v":
            lin(b + "cross_attn.k_img", D, D)
            lin(b + "cross_attn.v_img", D, D)
            vec(b + "cross_attn.norm_k_img.weight", D)
        if cfg.get("cross_attn_norm", True):
            vec(b + "norm3.weight", D)
            vec(b + "norm3.bias", D, 0.0)
        lin(b + "ffn.0", cfg["ffn_dim"], D)
        lin(b + "ffn.2", D, cfg["ffn_dim"])
        w[b + "modulation"] = 0.1 * torch.randn(1, 6, D, generator=g, dtype=F64)
    lin("head.head", cfg["out_dim"] * P, D)
    w["head.modulation"] = 0.1 * torch.randn(1, 2, D, generator=g, dtype=F64)
    if cfg.get("model_type") == "i2v":
        c = cfg["clip_dim"]
        vec("img_emb.proj.0.weight", c)
        vec("img_emb.proj.0.bias", c, 0.0)
        lin("img_emb.proj.1", c, c)
        lin("img_emb.proj.3", D, c)
        vec("img_emb.proj.4.weight", D)
        vec("img_emb.proj.4.bias", D, 0.0)
    # round to the stored type so the reference sees exactly the stored values
    st_t = torch.float16 if cfg["wdtype"] == "F16" else torch.float32
    return {k: v.to(st_t).to(F64) for k, v in w.items()}, st_t


def layernorm(x, eps, w=None, b=None):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps)
    if w is not None:
        y = y * w + b
    return y


def rmsnorm(x, w, eps=1e-6):
    if w is None:  # qk_norm off: identity
        return x
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def silu(x):
    return x / (1 + torch.exp(-x))


def attend(q, k, v, heads):
    L, D = q.shape
    d = D // heads
    qh = q.view(L, heads, d).transpose(0, 1)
    kh = k.view(-1, heads, d).transpose(0, 1)
    vh = v.view(-1, heads, d).transpose(0, 1)
    a = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(d), dim=-1)
    return (a @ vh).transpose(0, 1).reshape(L, D)


def rope_angles(f, h, w, d):
    """[L, d/2] angles: pairs split frames / rows / columns as the README says."""
    c = d // 2
    n_r = c // 3
    n_f = c - 2 * n_r
    dim_f, dim_r = d - 4 * (d // 6), 2 * (d // 6)
    ang = torch.zeros(f, h, w, c, dtype=F64)
    for j in range(n_f):
        ang[:, :, :, j] = torch.arange(f, dtype=F64).view(f, 1, 1) * 10000.0 ** (-2 * j / dim_f)
    for j in range(n_r):
        ang[:, :, :, n_f + j] = torch.arange(h, dtype=F64).view(1, h, 1) * 10000.0 ** (-2 * j / dim_r)
        ang[:, :, :, n_f + n_r + j] = torch.arange(w, dtype=F64).view(1, 1, w) * 10000.0 ** (-2 * j / dim_r)
    return ang.reshape(f * h * w, c)


def rope(x, ang, heads):
    L, D = x.shape
    d = D // heads
    xr = x.view(L, heads, d // 2, 2)
    cs, sn = torch.cos(ang).view(L, 1, -1), torch.sin(ang).view(L, 1, -1)
    a, b = xr[..., 0], xr[..., 1]
    return torch.stack([a * cs - b * sn, a * sn + b * cs], dim=-1).reshape(L, D)


def reference(cfg, w, x, t, context, y=None, clip=None):
    """Forward pass in float64; returns out [C,F,H,W] and the inter/ tensors.
    t: a number (every token), or a 1-D tensor of at least as many values as
    tokens (one per token in (f, h, w) order; the rest is seq_len padding)."""
    D, H = cfg["dim"], cfg["num_heads"]
    eps = 1e-6
    inter = {}
    lin = lambda name, a: a @ w[name + ".weight"].T + w[name + ".bias"]  # noqa: E731
    C, F, Hh, W = x.shape
    gf, gh, gw = F, Hh // 2, W // 2
    L = gf * gh * gw
    per_token = torch.is_tensor(t)
    # time, per token: sinusoid [L, freq] -> e [L, D] -> e0 [L, 6, D]
    tt = t.to(F64)[:L] if per_token else torch.full((L,), float(t), dtype=F64)
    half = cfg["freq_dim"] // 2
    ang = tt.view(L, 1) * torch.pow(torch.tensor(10000.0, dtype=F64),
                                    -torch.arange(half, dtype=F64) / half).view(1, half)
    sinus = torch.cat([torch.cos(ang), torch.sin(ang)], dim=1).to(torch.float32).to(F64)
    e = lin("time_embedding.2", silu(lin("time_embedding.0", sinus)))
    e0 = lin("time_projection.1", silu(e)).view(L, 6, D)
    if per_token:
        inter.update({"t_sinusoid": sinus.unsqueeze(0), "e": e.unsqueeze(0), "e0": e0.unsqueeze(0)})
    else:
        inter.update({"t_sinusoid": sinus[:1], "e": e[:1], "e0": e0[:1]})
    # text (+ image) context
    ctx = torch.zeros(cfg["text_len"], cfg["text_dim"], dtype=F64)
    ctx[:context.shape[0]] = context
    ctx = lin("text_embedding.2", gelu_tanh(lin("text_embedding.0", ctx)))
    inter["context_emb"] = ctx.unsqueeze(0)
    if y is not None:
        ci = layernorm(clip, 1e-5, w["img_emb.proj.0.weight"], w["img_emb.proj.0.bias"])
        ci = lin("img_emb.proj.3", gelu_erf(lin("img_emb.proj.1", ci)))
        ci = layernorm(ci, 1e-5, w["img_emb.proj.4.weight"], w["img_emb.proj.4.bias"])
        inter["clip_context"] = ci.unsqueeze(0)
        x = torch.cat([x, y], dim=0)
    # patches: token (f,h,w) = Conv3d over x[:, f, 2h:2h+2, 2w:2w+2]
    C, F, Hh, W = x.shape
    pt = x.view(C, gf, gh, 2, gw, 2).permute(1, 2, 4, 0, 3, 5).reshape(gf * gh * gw, C * 4)
    h = pt @ w["patch_embedding.weight"].reshape(D, -1).T + w["patch_embedding.bias"]
    inter["patch_tokens"] = h.unsqueeze(0)
    ra = rope_angles(gf, gh, gw, D // H)
    wn = w.get  # optional norms: None when the constructor turned them off
    for i in range(cfg["num_layers"]):
        b = "blocks.%d." % i
        m = (w[b + "modulation"].view(1, 6, D) + e0).transpose(0, 1)  # [6, L, D], per token
        u = layernorm(h, eps) * (1 + m[1]) + m[0]
        q = rope(rmsnorm(lin(b + "self_attn.q", u), wn(b + "self_attn.norm_q.weight")), ra, H)
        k = rope(rmsnorm(lin(b + "self_attn.k", u), wn(b + "self_attn.norm_k.weight")), ra, H)
        h = h + lin(b + "self_attn.o", attend(q, k, lin(b + "self_attn.v", u), H)) * m[2]
        u = layernorm(h, eps, w[b + "norm3.weight"], w[b + "norm3.bias"]) if wn(b + "norm3.weight") is not None else h
        q = rmsnorm(lin(b + "cross_attn.q", u), wn(b + "cross_attn.norm_q.weight"))
        k = rmsnorm(lin(b + "cross_attn.k", ctx), wn(b + "cross_attn.norm_k.weight"))
        a = attend(q, k, lin(b + "cross_attn.v", ctx), H)
        if y is not None:
            ki = rmsnorm(lin(b + "cross_attn.k_img", ci), wn(b + "cross_attn.norm_k_img.weight"))
            a = a + attend(q, ki, lin(b + "cross_attn.v_img", ci), H)
        h = h + lin(b + "cross_attn.o", a)
        u = layernorm(h, eps) * (1 + m[4]) + m[3]
        h = h + lin(b + "ffn.2", gelu_tanh(lin(b + "ffn.0", u))) * m[5]
        inter["block%d_out" % i] = h.unsqueeze(0)
    m = (w["head.modulation"].view(1, 2, D) + e.view(L, 1, D)).transpose(0, 1)  # [2, L, D]
    o = lin("head.head", layernorm(h, eps) * (1 + m[1]) + m[0])
    inter["head_out"] = o.unsqueeze(0)
    co = cfg["out_dim"]
    out = o.view(gf, gh, gw, 1, 2, 2, co).permute(6, 0, 3, 1, 4, 2, 5).reshape(co, F, Hh, W)
    return out, inter


def make_case(name, out_dir):
    cfg = dict(CASES[name])
    g = torch.Generator().manual_seed(cfg["seed"])
    w, st_t = make_weights(cfg, g)
    gi = torch.Generator().manual_seed(cfg["seed"] + 1)
    x = torch.randn(*cfg["x"], generator=gi, dtype=torch.float32).to(F64)
    context = torch.randn(cfg["n_ctx"], cfg["text_dim"], generator=gi, dtype=torch.float32).to(F64)
    t = torch.tensor([cfg["t"]], dtype=torch.float32)
    io = {"x": x, "t": t, "context": context}
    if cfg.get("t_tok"):
        C, F, Hh, W = cfg["x"]
        per_frame, L = (Hh // 2) * (W // 2), F * (Hh // 2) * (W // 2)
        if cfg["t_tok"] == "i2v":  # textimage2video.i2v: frame 0 clean, padding at t
            tok = torch.full((L + cfg.get("seq_pad", 0),), cfg["t_i2v"], dtype=torch.float32)
            tok[:per_frame] = 0
        else:  # scattered: mostly one-token runs, the values in no order
            v = cfg["t_vals"]
            tok = torch.tensor([v[(l * 3 + l // 4) % len(v)] for l in range(L)], dtype=torch.float32)
        io["t"] = tok.view(1, -1)
        io["t2v/t"] = t
    y = clip = None
    if cfg.get("model_type") == "i2v":
        C, F, Hh, W = cfg["x"]
        y = torch.randn(cfg["in_dim"] - C, F, Hh, W, generator=gi, dtype=torch.float32).to(F64)
        y[:4] = 0
        y[:4, 0] = 1  # mask channels as image2video builds them
        clip = torch.randn(cfg["n_clip"], cfg["clip_dim"], generator=gi, dtype=torch.float32).to(F64)
        io.update({"y": y, "clip_fea": clip.unsqueeze(0)})
    if "t2v/t" in io:
        out, inter = reference(cfg, w, x, io["t"][0], context)
        io["t2v/out"], _ = reference(cfg, w, x, float(t[0]), context)
    else:
        out, inter = reference(cfg, w, x, float(t[0]), context, y, clip)
    io["out"] = out
    io.update({"inter/" + k: v for k, v in inter.items()})
    os.makedirs(out_dir, exist_ok=True)
    st.save(os.path.join(out_dir, "weights.safetensors"), {k: v.to(st_t) for k, v in w.items()})
    st.save(os.path.join(out_dir, "io.safetensors"), {k: v.to(torch.float32) for k, v in io.items()})
    ctor = {k: cfg[k] for k in ("text_len", "in_dim", "dim", "ffn_dim", "freq_dim", "text_dim",
                                "out_dim", "num_heads", "num_layers")}
    ctor.update({"model_type": cfg.get("model_type", "t2v"), "patch_size": [1, 2, 2],
                 "window_size": [-1, -1], "qk_norm": cfg.get("qk_norm", True),
                 "cross_attn_norm": cfg.get("cross_attn_norm", True), "eps": 1e-6})
    conf = {"vector": name, "reference": "wan.modules.model.WanModel",
            "generator": "tests/dit/gen_dit_vectors.py (float64 re-statement of the README)",
            "constructor": ctor, "weights": {"dtype": cfg["wdtype"]},
            "call": ({"t": "per token, io.t [1, seq_len]", "seq_len": int(io["t"].shape[1]),
                      "t2v": {"t": cfg["t"]}} if "t2v/t" in io else {"t": cfg["t"]}),
            "io": {k: {"shape": list(v.shape)} for k, v in io.items()}}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(conf, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder to write the case folders into")
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="only these cases")
    ap.add_argument("--vdit", help="run `VDIT conform --verbose` on every folder made")
    a = ap.parse_args()
    torch.set_num_threads(1)
    names = a.case or sorted(CASES)
    dirs = []
    for n in names:
        d = os.path.join(a.out, n)
        make_case(n, d)
        dirs.append(d)
    if a.vdit:
        r = subprocess.run([a.vdit, "conform", "--threads", "2", "--verbose"] + dirs)
        return r.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
