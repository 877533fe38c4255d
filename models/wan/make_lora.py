#!/usr/bin/python3
"""Writes LoRA files for a Wan DiT checkpoint in the layouts users download,
and the weights merged from them in Python, for vdit's LoRA tests
(tests/lora) and docs/lora.md.

    make_lora.py --dit DIT.safetensors --out DIR [--seed N]

DIR receives (random values, fixed by the seed):
  kohya.safetensors           lora_unet_blocks_0_self_attn_q.lora_down/up.weight
                              (BF16) + .alpha, every block linear
  comfy.safetensors           diffusion_model.<original>.lora_down/up.weight +
                              .alpha, .diff_b (biases), .diff (norm weights,
                              text_embedding.0, head.modulation), blocks.N.diff_m
                              (modulation), a conv pair on patch_embedding: the
                              lightx2v / CausVid distillation LoRAs' layout
  peft_diffusers.safetensors  transformer.<diffusers>.lora_A/lora_B.weight, no alpha
  peft_original.safetensors   diffusion_model.<original>.lora_A/lora_B.weight (F16)
  longlive.pth                (with torch) {"generator_lora": {base_model.model.
                              <original>.lora_A/B.weight}, "critic_lora": {...}},
                              as LongLive's lora.pt (BF16)
  bad_nomatch.safetensors     another architecture's names (Flux-like)
  bad_shape.safetensors       original names, shapes of a model twice as wide
  bad_half.safetensors        a lora_down without its lora_up
  dit_bf16.safetensors        the DiT rounded to BF16
  dit_fp8.safetensors         its linears as F8_E4M3 with per-row scale_weight
  ref_<case>.safetensors      the weights each case changes, merged here
                              (cases: see CASES below)

Merge, as vdit does it (so the two agree bit for bit): W' = W + c * (up @ down),
c = scale * (alpha / rank) (alpha = rank when absent), where up @ down is
summed in float64 over the rank in order (each product of two float32 is
exact in float64), c * (...) is rounded to float64, added to W in float64 and
the sum rounded to float32; a delta: W' = W + scale * diff in float64, then
float32. Several LoRAs apply one after the other, each rounding to float32;
BF16 weights are widened, merged so, and rounded back to BF16 once (nearest
even); fp8 weights are first widened as the loader does (value * scale in
float32, rounded to BF16) and end as BF16.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from wan import st  # noqa: E402  (the project's safetensors reader)

# case name -> (base weights file, [(LoRA file, scale), ...])
CASES = {
    "kohya": ("dit", [("kohya.safetensors", 1.0)]),
    "comfy": ("dit", [("comfy.safetensors", 0.8)]),
    "peft_diffusers": ("dit", [("peft_diffusers.safetensors", 1.0)]),
    "peft_original": ("dit", [("peft_original.safetensors", -0.5)]),
    "longlive": ("dit", [("longlive.pth", 1.0)]),
    "two": ("dit", [("kohya.safetensors", 0.5), ("comfy.safetensors", -1.25)]),
    "comfy_bf16": ("dit_bf16.safetensors", [("comfy.safetensors", 1.0)]),
    "kohya_fp8": ("dit_fp8.safetensors", [("kohya.safetensors", 1.0)]),
}

# original name -> diffusers name, for the module names the LoRAs use
DIFFUSERS = [
    ("self_attn.q", "attn1.to_q"), ("self_attn.k", "attn1.to_k"), ("self_attn.v", "attn1.to_v"),
    ("self_attn.o", "attn1.to_out.0"), ("cross_attn.q", "attn2.to_q"),
    ("cross_attn.k", "attn2.to_k"), ("cross_attn.v", "attn2.to_v"),
    ("cross_attn.o", "attn2.to_out.0"), ("ffn.0", "ffn.net.0.proj"), ("ffn.2", "ffn.net.2"),
]
TOP_DIFFUSERS = {
    "head.head": "proj_out",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
}
LINEARS = [o for o, _ in DIFFUSERS]


bf16_round = st.bf16_round


def save(path, tensors):
    """{name: (array, dtype)} with dtype F32, F16, BF16 (values already
    representable) or F8_E4M3 (the codes) -> safetensors (st.save)."""
    plain = {"F32": np.float32, "F16": np.float16}
    st.save(path, {n: np.ascontiguousarray(a, dtype=plain[dt]) if dt in plain else (a, dt)
                   for n, (a, dt) in tensors.items()})


# float8_e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits; 0x7f NaN
E4M3 = np.array([(-1.0 if c & 0x80 else 1.0) *
                 ((c & 7) / 8.0 * 2.0 ** -6 if not (c >> 3) & 15 else
                  (1 + (c & 7) / 8.0) * 2.0 ** (((c >> 3) & 15) - 7))
                 for c in range(256)], np.float64)
E4M3[0x7F] = E4M3[0xFF] = np.inf


def e4m3_codes(x):
    """Nearest float8_e4m3fn codes of x (float64 array)."""
    return np.abs(x.reshape(-1, 1) - E4M3.reshape(1, -1)).argmin(axis=1).astype(np.uint8).reshape(x.shape)


def stored(a, dt):
    """The values a tensor of type dt holds."""
    if dt == "BF16":
        return bf16_round(a)
    if dt == "F16":
        return a.astype(np.float16).astype(np.float32)
    return a.astype(np.float32)


def merge_pair(w, up, down, alpha, scale):
    out, r = w.shape[0], down.shape[0]
    u = up.reshape(out, r).astype(np.float64)
    d = down.reshape(r, -1).astype(np.float64)
    acc = np.zeros((out, d.shape[1]), np.float64)
    for k in range(r):
        acc += np.outer(u[:, k], d[k])
    c = float(np.float32(scale)) * (float(alpha) / r)
    merged = w.reshape(out, -1).astype(np.float64) + c * acc
    return merged.astype(np.float32).reshape(w.shape)


def merge_diff(w, diff, scale):
    merged = w.astype(np.float64) + float(np.float32(scale)) * diff.reshape(w.shape).astype(np.float64)
    return merged.astype(np.float32)


class Lora:
    """One LoRA's content in original names: pairs {module: (up, down, alpha
    or None)}, deltas {tensor name: diff}."""

    def __init__(self):
        self.pairs = {}
        self.diffs = {}

    def apply(self, w, scale):
        for m, (up, down, alpha) in self.pairs.items():
            name = m + ".weight"
            w[name] = merge_pair(w[name], up, down, down.shape[0] if alpha is None else alpha, scale)
        for name, d in self.diffs.items():
            w[name] = merge_diff(w[name], d, scale)
        return {m + ".weight" for m in self.pairs} | set(self.diffs)


def canonical(sd):
    """Strips the prefix before patch_embedding.weight."""
    k = [n for n in sd if n.endswith("patch_embedding.weight")][0]
    p = k[: -len("patch_embedding.weight")]
    return {n[len(p):]: v for n, v in sd.items() if n.startswith(p)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dit", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=29)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    w = {k: v.astype(np.float32) for k, v in canonical(st.load(a.dit)).items()}
    n_layers = len({k.split(".")[1] for k in w if k.startswith("blocks.")})
    blocks = [f"blocks.{i}" for i in range(n_layers)]

    def pair(module, r, dt, scale=0.5):
        shape = w[module + ".weight"].shape
        down = stored(rng.standard_normal((r,) + shape[1:]) * scale / np.sqrt(np.prod(shape[1:])), dt)
        up_shape = (shape[0], r) + (1,) * (len(shape) - 2)
        up = stored(rng.standard_normal(up_shape) * scale / np.sqrt(r), dt)
        return up, down

    def delta(name, dt, scale=0.02):
        return stored(rng.standard_normal(w[name].shape) * scale, dt)

    loras = {}
    # kohya / musubi-tuner: lora_unet_ + underscores, BF16, alpha 8 on rank 4
    L, t = Lora(), {}
    for b in blocks:
        for o in LINEARS:
            m = f"{b}.{o}"
            up, down = pair(m, 4, "BF16")
            L.pairs[m] = (up, down, 8.0)
            k = "lora_unet_" + m.replace(".", "_")
            t[k + ".lora_down.weight"] = (down, "BF16")
            t[k + ".lora_up.weight"] = (up, "BF16")
            t[k + ".alpha"] = (np.array(8.0, np.float32), "F32")
    save(os.path.join(a.out, "kohya.safetensors"), t)
    loras["kohya.safetensors"] = L

    # ComfyUI / lightx2v / CausVid: diffusion_model. + original names,
    # lora_down/up + alpha, diff_b, diff, diff_m
    L, t = Lora(), {}
    P = "diffusion_model."
    mods = [f"{b}.{o}" for b in blocks for o in ("self_attn.q", "self_attn.o", "cross_attn.k", "ffn.2")]
    mods += ["head.head", "time_projection.1", "patch_embedding"]
    for m in mods:
        up, down = pair(m, 3, "F32")
        L.pairs[m] = (up, down, 1.5)
        t[P + m + ".lora_down.weight"] = (down, "F32")
        t[P + m + ".lora_up.weight"] = (up, "F32")
        t[P + m + ".alpha"] = (np.array(1.5, np.float32), "F32")
        d = delta(m + ".bias", "F32")
        L.diffs[m + ".bias"] = d
        t[P + m + ".diff_b"] = (d, "F32")
    for b in blocks:
        for n in ("self_attn.norm_q", "cross_attn.norm_k", "norm3"):
            if b + "." + n + ".weight" in w:
                d = delta(b + "." + n + ".weight", "F32")
                L.diffs[b + "." + n + ".weight"] = d
                t[P + b + "." + n + ".diff"] = (d, "F32")
        d = delta(b + ".modulation", "F32")
        L.diffs[b + ".modulation"] = d
        t[P + b + ".diff_m"] = (d, "F32")
    for n in ("text_embedding.0.weight", "head.modulation"):
        d = delta(n, "F32")
        L.diffs[n] = d
        t[P + n[: -len(".weight")] + ".diff" if n.endswith(".weight") else P + n + ".diff"] = (d, "F32")
    save(os.path.join(a.out, "comfy.safetensors"), t)
    loras["comfy.safetensors"] = L

    # diffusers / PEFT under diffusers names, no alpha
    L, t = Lora(), {}
    mods = [(f"{b}.{o}", f"{b}.{d}") for b in blocks for o, d in DIFFUSERS if o in ("self_attn.q", "cross_attn.o", "ffn.0")]
    mods += [(o, d) for o, d in TOP_DIFFUSERS.items() if o in ("head.head", "time_embedding.0")]
    for m, dm in mods:
        up, down = pair(m, 2, "F32")
        L.pairs[m] = (up, down, None)
        t["transformer." + dm + ".lora_A.weight"] = (down, "F32")
        t["transformer." + dm + ".lora_B.weight"] = (up, "F32")
    save(os.path.join(a.out, "peft_diffusers.safetensors"), t)
    loras["peft_diffusers.safetensors"] = L

    # PEFT under original names (F16)
    L, t = Lora(), {}
    for b in blocks:
        for o in ("self_attn.k", "self_attn.v", "cross_attn.q", "ffn.0"):
            m = f"{b}.{o}"
            up, down = pair(m, 5, "F16")
            L.pairs[m] = (up, down, None)
            t[P + m + ".lora_A.weight"] = (down, "F16")
            t[P + m + ".lora_B.weight"] = (up, "F16")
    save(os.path.join(a.out, "peft_original.safetensors"), t)
    loras["peft_original.safetensors"] = L

    # LongLive's lora.pt: PEFT state dicts of the generator and the critic
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        from collections import OrderedDict
        L, gen, crit = Lora(), OrderedDict(), {}  # as model.state_dict() / a PEFT dict
        for b in blocks:
            for o in LINEARS:
                m = f"{b}.{o}"
                up, down = pair(m, 4, "BF16")
                L.pairs[m] = (up, down, None)
                gen["base_model.model." + m + ".lora_A.weight"] = torch.from_numpy(down).bfloat16()
                gen["base_model.model." + m + ".lora_B.weight"] = torch.from_numpy(up).bfloat16()
                cu, cd = pair(m, 4, "BF16")
                crit["base_model.model." + m + ".lora_A.weight"] = torch.from_numpy(cd).bfloat16()
                crit["base_model.model." + m + ".lora_B.weight"] = torch.from_numpy(cu).bfloat16()
        torch.save({"generator_lora": gen, "critic_lora": crit}, os.path.join(a.out, "longlive.pth"))
        loras["longlive.pth"] = L

    # refused ones
    save(os.path.join(a.out, "bad_nomatch.safetensors"), {
        "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": (np.zeros((4, 64), np.float32), "F32"),
        "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": (np.zeros((192, 4), np.float32), "F32"),
        "lora_unet_double_blocks_0_img_attn_qkv.alpha": (np.array(4.0, np.float32), "F32"),
    })
    m = "blocks.0.self_attn.q"
    o_, i_ = w[m + ".weight"].shape
    save(os.path.join(a.out, "bad_shape.safetensors"), {
        P + m + ".lora_down.weight": (np.zeros((4, 2 * i_), np.float32), "F32"),
        P + m + ".lora_up.weight": (np.zeros((2 * o_, 4), np.float32), "F32"),
    })
    save(os.path.join(a.out, "bad_half.safetensors"), {
        P + m + ".lora_down.weight": (np.zeros((4, i_), np.float32), "F32"),
    })

    # the DiT in BF16, and in fp8 as the "fp8_scaled" repackagings: block
    # linears and the head as F8_E4M3 with a per-row scale_weight; what the
    # loader makes of them: fp8 value * scale in float32, rounded to BF16
    save(os.path.join(a.out, "dit_bf16.safetensors"), {k: (v, "BF16") for k, v in w.items()})
    f8, w8 = {}, {}
    for k, v in w.items():
        if k.endswith(".weight") and v.ndim == 2 and (k.startswith("blocks.") or k.startswith("head.")):
            sc = (np.abs(v).max(axis=1) / 448.0).astype(np.float32)
            codes = e4m3_codes(v.astype(np.float64) / sc.astype(np.float64).reshape(-1, 1))
            f8[k] = (codes, "F8_E4M3")
            f8[k[: -len(".weight")] + ".scale_weight"] = (sc, "F32")
            w8[k] = bf16_round(E4M3[codes].astype(np.float32) * sc.reshape(-1, 1))
        else:
            f8[k] = (v, "F32")
            w8[k] = v.copy()
    save(os.path.join(a.out, "dit_fp8.safetensors"), f8)
    for case, (base, files) in CASES.items():
        if any(f not in loras for f, _ in files):
            continue
        if base == "dit_fp8.safetensors":
            cur = {k: v.copy() for k, v in w8.items()}
        else:
            cur = {k: (bf16_round(v) if base != "dit" else v.copy()) for k, v in w.items()}
        touched = set()
        for f, scale in files:
            touched |= loras[f].apply(cur, scale)
        dt = "BF16" if base != "dit" else "F32"  # fp8 weights become BF16
        save(os.path.join(a.out, f"ref_{case}.safetensors"), {k: (cur[k], dt) for k in sorted(touched)})
    print(f"make_lora: {a.out}: {len(loras)} LoRAs, {len(CASES)} cases")


if __name__ == "__main__":
    main()
