"""PyTorch reference sampler for the bundled model (what the C pipeline runs).

    m = load_bundle("models/default")
    out = generate(m, "a red circle moves left on a blue background", seed=1)

Loads the exported fp16 files, upcasts to fp32, runs T5 -> DiT with CFG and
the flow UniPC (or Euler) sampler -> VAE decode, like WanT2V.generate.
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from wan import st, sched  # noqa: E402
from wan.dit import WanModel  # noqa: E402
from wan.t5 import T5Encoder  # noqa: E402
from wan.vae import WanVAE_, latent_scale  # noqa: E402
import tokenizer as tok  # noqa: E402


def load_bundle(path):
    cfg = json.load(open(os.path.join(path, "vdit.json")))
    arch = cfg["x_arch"]
    m = {"cfg": cfg}
    sd = {k: v.float() for k, v in st.load_torch(os.path.join(path, "diffusion_pytorch_model.safetensors")).items()}
    dit = WanModel(**arch["dit"]).eval()
    dit.load_state_dict(sd)
    vae = WanVAE_(**arch["vae"]).eval()
    vae.load_state_dict({k: v.float() for k, v in st.load_torch(os.path.join(path, "Wan2.1_VAE.safetensors")).items()})
    t5 = T5Encoder(**arch["t5"]).eval()
    t5.load_state_dict({k: v.float() for k, v in st.load_torch(os.path.join(path, "models_t5_umt5-xxl-enc.safetensors")).items()})
    m.update(dit=dit, vae=vae, t5=t5, tk=tok.Tokenizer(os.path.join(path, "tokenizer", "spiece.model"), cfg["text_len"]))
    return m


@torch.no_grad()
def encode_prompt(m, text):
    """-> (ids [1,text_len], context [n_real, dim]) (rows past n_real dropped, as the pipeline does)."""
    ids, mask = m["tk"]([text])
    h = m["t5"](ids, mask)
    n = int(mask.sum())
    return ids, mask, h[0, :n]


@torch.no_grad()
def generate(m, prompt, seed=0, width=None, height=None, frames=None, steps=None, guidance=None,
             shift=None, sampler=None, noise=None, negative=None, record=None):
    cfg = m["cfg"]
    W, H = width or cfg["width"], height or cfg["height"]
    T = frames or cfg["frames"]
    steps, g = steps or cfg["steps"], guidance if guidance is not None else cfg["guidance"]
    shift, sampler = shift or cfg["shift"], sampler or cfg["sampler"]
    neg = cfg["negative_prompt"] if negative is None else negative
    ids_c, mask_c, ctx_c = encode_prompt(m, prompt)
    ids_u, mask_u, ctx_u = encode_prompt(m, neg)
    shape = (16, (T - 1) // 4 + 1, H // 8, W // 8)
    if noise is None:
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    x = noise.clone()
    if sampler == "unipc":
        ts, sig = sched.unipc_schedule(steps, shift)
        solver = sched.FlowUniPC(sig)
    else:
        ts, sig = sched.euler_schedule(steps, shift)
        solver = None
    lat = [x]
    dit = m["dit"]
    for i in range(steps):
        t = ts[i:i + 1].float()
        vc = dit([x], t, [ctx_c])[0]
        vu = dit([x], t, [ctx_u])[0]
        v = vu + g * (vc - vu)
        x = solver.step(v, x) if solver else sched.euler_step(v, i, x, sig)
        lat.append(x)
    video = m["vae"].decode(x.unsqueeze(0), latent_scale(), chunked=True)[0].clamp(-1, 1)
    if record is not None:
        record.update(ids_cond=ids_c, mask_cond=mask_c, context_cond=ctx_c, ids_uncond=ids_u, mask_uncond=mask_u,
                      context_uncond=ctx_u, noise=noise, timesteps=ts, sigmas=sig, latents=torch.stack(lat),
                      final=x, decoded=video)
    return video  # [3,T,H,W] in [-1,1]


def to_uint8(video):
    """[3,T,H,W] in [-1,1] -> uint8 [T,H,W,3]."""
    return ((video.permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
