#!/usr/bin/env python3
"""Checks the Wan2.1 -> diffusers parameter map of models/bench/bench_dit_torch.py:
a tiny DiT (2 layers, dim 128, 2 heads, random weights with non-trivial norms
and modulation) through diffusers' WanTransformer3DModel must give the output
of the project's models/wan/dit.py WanModel (fp32, the reference): to fp32
rounding in fp32, within bf16 tolerance in bf16. Also runs the bf16 + SDPA
path of WanModel the bench uses.

Not part of the CI suite (it needs torch 2 and diffusers): run it with the
bench venv,
    PY=$(scripts/bench-venv.sh) && $PY tests/tools/check_diffusers_map.py
Prints one line per variant and "ok" (exit 0) or what failed (exit 1).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models",
                                "bench"))
import bench_dit_torch as B  # noqa: E402

CFG = dict(in_dim=16, dim=128, ffn_dim=256, freq_dim=256, text_dim=64, out_dim=16,
           num_heads=2, num_layers=2)
TEXT_LEN, LATENT = 16, (3, 8, 12)  # 3 x 4 x 6 = 72 tokens


def random_weights(seed=1):
    """Official-name state dict with every parameter random (norm gains near 1)."""
    torch.manual_seed(seed)
    m = B.WanModel(text_len=TEXT_LEN, **CFG)
    w = {}
    for k, p in m.state_dict().items():
        r = torch.randn(p.shape)
        if "norm" in k:
            v = 1 + 0.2 * r if k.endswith("weight") else 0.1 * r
        elif k.endswith("modulation"):
            v = 0.3 * r
        elif k.endswith("bias"):
            v = 0.05 * r
        else:  # weights: 1/sqrt(fan_in)
            v = r / (p[0].numel() ** 0.5)
        w[k] = v.contiguous()
    return w


def main():
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    w = random_weights()
    g = torch.Generator().manual_seed(2)
    io = {"x": torch.randn((CFG["in_dim"],) + LATENT, generator=g),
          "t": torch.tensor([937.0]),
          "context": 0.5 * torch.randn(TEXT_LEN, CFG["text_dim"], generator=g)}
    runs = [  # impl, dtype, attention, max relative error vs the reference
        ("diffusers", torch.float32, "auto", 1e-4),
        ("vdit-py", torch.float32, "sdpa", 1e-4),
        ("diffusers", torch.bfloat16, "auto", 2e-2),
        ("vdit-py", torch.bfloat16, "sdpa", 2e-2),
    ]
    with torch.inference_mode():
        fwd, _ = B.run("vdit-py", w, io, torch.float32, "matmul")
        ref = fwd()
        scale = ref.abs().max().item()
        print("reference: vdit-py fp32 matmul attention, output max |y| %.3f" % scale)
        ok = True
        for impl, dt, attn, tol in runs:
            fwd, used = B.run(impl, w, io, dt, attn)
            y = fwd()
            err = (y - ref).abs().max().item() / scale
            good = y.shape == ref.shape and err <= tol
            ok &= good
            print("%-9s %-8s %-6s rel max err %.2e (limit %.0e) %s"
                  % (impl, str(dt).replace("torch.", ""), used, err, tol, "ok" if good else "FAIL"))
    # a wrong map typically gives errors of order 1; also every name is mapped once
    names = [B.diffusers_key(k) for k in w]
    if len(set(names)) != len(names):
        print("FAIL: two checkpoint names map to the same diffusers name")
        ok = False
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
