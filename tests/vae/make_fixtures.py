#!/usr/bin/python3
"""Writes the committed VAE checkpoint fixtures (run once; output is in git):
tests/vae/data/vae_d2.pth          torch.save(state_dict) of a dim-2 WanVAE_ in F16,
                                   original key names (the Wan2.1_VAE.pth layout)
tests/vae/data/vae_d2.safetensors  the same tensors, for comparison
"""
import math
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "models"))
from wan import st  # noqa: E402
from wan.vae import WanVAE_  # noqa: E402

m = WanVAE_(dim=2, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
            temperal_downsample=[False, True, True])
g = torch.Generator().manual_seed(9001)
sd = {}
for k, p in sorted(m.state_dict().items()):
    if k.endswith("gamma"):
        v = 1 + 0.1 * torch.randn(p.shape, generator=g)
    elif k.endswith("bias"):
        v = 0.03 * torch.randn(p.shape, generator=g)
    else:
        v = torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel())
    sd[k] = v.half()
os.makedirs(os.path.join(here, "data"), exist_ok=True)
torch.save(sd, os.path.join(here, "data", "vae_d2.pth"))
st.save(os.path.join(here, "data", "vae_d2.safetensors"), sd)
