#!/usr/bin/python3
"""Makes Wan-VAE conformance folders (config.json, weights.safetensors,
io.safetensors: the layout of tests/conformance/wan2.1/vae_tiny and
wan2.2/vae22_tiny) with other dims, level counts, frame counts and frame
sizes than the shared ones, for the Wan2.1 VAE and the Wan2.2 VAE, and checks
`vdit conform` on them.

The reference is the project's PyTorch statement of the README semantics
(models/wan/vae.py, models/wan/vae22.py), evaluated in float64 along the
official chunked path; each case also checks that its independent
full-sequence path agrees, so the two formulations vouch for each other.
Before anything, the Wan2.2 port is checked against the vendored official
vectors (tests/conformance/wan2.2/vae22_tiny). Inputs/outputs are stored as
float32.

    gen_vae_vectors.py --vdit build/core/cli/vdit --out DIR   # all cases, then conform
    gen_vae_vectors.py --out DIR --case d4_t13                # one folder
"""
import argparse
import json
import math
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
from wan import st  # noqa: E402
from wan.vae import WanVAE_, WAN_LATENT_MEAN, WAN_LATENT_STD  # noqa: E402
from wan.vae22 import WanVAE22_, WAN22_LATENT_MEAN, WAN22_LATENT_STD, patchify  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OFFICIAL22 = os.path.join(HERE, "..", "conformance", "wan2.2", "vae22_tiny")

F64 = torch.float64

CASES = {
    # the Wan2.1 structure with another dim, 13 frames (1 + 4*3), 40x24 (W != H, not 32/48)
    "d4_t13": dict(dim=4, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                   temperal_downsample=[False, True, True], t=13, h=24, w=40, zt=4, zh=3, zw=5,
                   seed=8101, wdtype="F32"),
    # 3 levels (4x spatial, 2x temporal), 1 res block, attention blocks outside the
    # middle, F16 weights, 9 frames, 16x32
    "d8_attn_f16": dict(dim=8, z_dim=16, dim_mult=[1, 2, 2], num_res_blocks=1,
                        attn_scales=[0.5], temperal_downsample=[True, False], t=9, h=16, w=32,
                        zt=3, zh=2, zw=5, seed=8102, wdtype="F16"),
    # Wan2.2: another encoder/decoder width, 13 frames, 32x64 (latent 2x4)
    "v22_d4_dd8_t13": dict(model=22, dim=4, dec_dim=8, z_dim=48, dim_mult=[1, 2, 4, 4],
                           num_res_blocks=2, temperal_downsample=[False, True, True], t=13,
                           h=32, w=64, zt=4, zh=2, zw=4, seed=8201, wdtype="F32"),
    # Wan2.2 structure with 3 levels (8x spatial with the patch, 2x temporal, the
    # temporal level first), 1 res block, z_dim 16, F16 weights, 9 frames, 24x40
    "v22_3lvl_z16_f16": dict(model=22, dim=6, dec_dim=4, z_dim=16, dim_mult=[1, 2, 2],
                             num_res_blocks=1, temperal_downsample=[True, False], t=9, h=24,
                             w=40, zt=3, zh=3, zw=5, seed=8202, wdtype="F16"),
    # Wan2.2, odd dim 3, dec_dim 4, 5 frames, a tall narrow frame 48x16 (latent 3x1)
    "v22_d3_t5_tall": dict(model=22, dim=3, dec_dim=4, z_dim=48, dim_mult=[1, 2, 4, 4],
                           num_res_blocks=2, temperal_downsample=[False, True, True], t=5,
                           h=48, w=16, zt=2, zh=3, zw=1, seed=8203, wdtype="F32"),
}


def check_port22():
    """models/wan/vae22.py in float64 against the official fp32 vectors."""
    if not os.path.isdir(OFFICIAL22):
        return
    cfg = json.load(open(os.path.join(OFFICIAL22, "config.json")))["constructor"]
    ctor = {k: cfg[k] for k in ("dim", "dec_dim", "z_dim", "dim_mult", "num_res_blocks",
                                "temperal_downsample")}
    m = WanVAE22_(**ctor).eval()
    ld = lambda f: {k: torch.from_numpy(v).to(F64) for k, v in st.load(os.path.join(OFFICIAL22, f)).items()}
    m.load_state_dict(ld("weights.safetensors"))
    m = m.double()
    io = ld("io.safetensors")
    scale = [io["latent_mean"], (1.0 / io["latent_std"].float()).to(F64)]
    with torch.no_grad():
        zu = io["z"] / scale[1].view(1, -1, 1, 1, 1) + scale[0].view(1, -1, 1, 1, 1)
        for chunked in (True, False):
            mu_raw, log_var = m.encode_raw(io["video"], chunked)
            got = {"mu": m.normalize(mu_raw, scale), "mu_raw": mu_raw, "log_var": log_var,
                   "inter/encoder_out": m.encoder_out(io["video"], chunked),
                   "inter/decoder_out": m.decoder_out(zu, chunked),
                   "decoded": m.decode_raw(zu, chunked), "inter/patchified": patchify(io["video"])}
            for k, v in got.items():
                d = (v - io[k]).abs().max().item()
                assert d < 2e-5, "models/wan/vae22.py (%s) differs from the official %s by %g" % (
                    "chunked" if chunked else "full sequence", k, d)


def init_weights(model, seed):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, p in sorted(model.state_dict().items()):
        if name.endswith("gamma"):
            v = 1.0 + 0.1 * torch.randn(p.shape, generator=g, dtype=F64)
        elif name.endswith("bias"):
            v = 0.03 * torch.randn(p.shape, generator=g, dtype=F64)
        else:
            fan_in = p[0].numel()
            v = torch.randn(p.shape, generator=g, dtype=F64) / math.sqrt(fan_in)
        sd[name] = v
    return sd


def setup(cfg, model_cls, ctor, mean, std):
    """The model with seeded weights (stored dtype, run in float64), the
    input video and latent, and the wrapper's scale (1/std in float32)."""
    model = model_cls(**ctor, dropout=0.0).eval()
    sd = init_weights(model, cfg["seed"])
    st_t = torch.float16 if cfg["wdtype"] == "F16" else torch.float32
    sd = {k: v.to(st_t).to(F64) for k, v in sd.items()}  # exactly the stored values
    model.load_state_dict(sd)
    model = model.double()
    gi = torch.Generator().manual_seed(cfg["seed"] + 1)
    video = (torch.rand(1, 3, cfg["t"], cfg["h"], cfg["w"], generator=gi) * 2 - 1).to(F64)
    z = torch.randn(1, cfg["z_dim"], cfg["zt"], cfg["zh"], cfg["zw"], generator=gi).to(F64)
    mean32 = torch.tensor(mean[:cfg["z_dim"]], dtype=torch.float32)
    std32 = torch.tensor(std[:cfg["z_dim"]], dtype=torch.float32)
    scale = [mean32.to(F64), (1.0 / std32).to(F64)]
    return model, sd, st_t, video, z, mean32, std32, scale


def encode_checked(model, video, scale):
    """mu_raw, log_var, mu; the chunked and full-sequence encodes agree."""
    mu_raw, log_var = model.encode_raw(video, chunked=True)
    mu_full, _ = model.encode_raw(video, chunked=False)
    assert (mu_raw - mu_full).abs().max() < 1e-9, "chunked and full-sequence encode disagree"
    return mu_raw, log_var, model.normalize(mu_raw, scale)


def save_case(out_dir, name, reference, generator, ctor, cfg, sd, st_t, io, extra=None):
    os.makedirs(out_dir, exist_ok=True)
    st.save(os.path.join(out_dir, "weights.safetensors"), {k: v.to(st_t) for k, v in sd.items()})
    st.save(os.path.join(out_dir, "io.safetensors"), {k: v.to(torch.float32) for k, v in io.items()})
    conf = {"vector": name, "reference": reference, **(extra or {}), "generator": generator,
            "constructor": ctor, "weights": {"dtype": cfg["wdtype"]},
            "io": {k: {"shape": list(v.shape)} for k, v in io.items()}}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(conf, f, indent=1)


def make_case(name, out_dir):
    cfg = CASES[name]
    if cfg.get("model") == 22:
        return make_case22(name, out_dir)
    ctor = {k: cfg[k] for k in ("dim", "z_dim", "dim_mult", "num_res_blocks", "attn_scales",
                                "temperal_downsample")}
    model, sd, st_t, video, z, mean32, std32, scale = setup(cfg, WanVAE_, ctor, WAN_LATENT_MEAN,
                                                            WAN_LATENT_STD)
    with torch.no_grad():
        mu_raw, log_var, mu = encode_checked(model, video, scale)
        # encoder output before conv1: run the encoder like encode_raw does
        from wan.vae import _Cache
        cache, outs, t = _Cache(), [], cfg["t"]
        tf = 4  # the reference's chunk length, whatever the temporal factor
        for i in range(1 + (t - 1) // tf):
            cache.idx = 0
            xi = video[:, :, :1] if i == 0 else video[:, :, 1 + tf * (i - 1):1 + tf * i]
            outs.append(model.encoder(xi, cache))
        enc_out = torch.cat(outs, 2)
        zu = z / scale[1].view(1, -1, 1, 1, 1) + scale[0].view(1, -1, 1, 1, 1)
        dec = model.decode_raw(zu, chunked=True)
        dec_full = model.decode_raw(zu, chunked=False)
        assert (dec - dec_full).abs().max() < 1e-9, "chunked and full-sequence decode disagree"
        dec_in = model.conv2(zu)
    io = {"video": video, "z": z, "latent_mean": mean32, "latent_std": std32, "mu": mu,
          "mu_raw": mu_raw, "log_var": log_var, "inter/encoder_out": enc_out,
          "inter/decoder_in": dec_in, "decoded": dec, "decoded_clamped": dec.clamp(-1, 1)}
    save_case(out_dir, name, "wan.modules.vae.WanVAE_",
              "tests/vae/gen_vae_vectors.py (models/wan/vae.py in float64)",
              dict(ctor, dropout=0.0), cfg, sd, st_t, io)


def make_case22(name, out_dir):
    cfg = CASES[name]
    ctor = {k: cfg[k] for k in ("dim", "dec_dim", "z_dim", "dim_mult", "num_res_blocks",
                                "temperal_downsample")}
    model, sd, st_t, video, z, mean32, std32, scale = setup(cfg, WanVAE22_, ctor,
                                                            WAN22_LATENT_MEAN, WAN22_LATENT_STD)
    with torch.no_grad():
        mu_raw, log_var, mu = encode_checked(model, video, scale)
        enc_out = model.encoder_out(video, chunked=True)
        zu = z / scale[1].view(1, -1, 1, 1, 1) + scale[0].view(1, -1, 1, 1, 1)
        dec_out = model.decoder_out(zu, chunked=True)
        dec_full = model.decoder_out(zu, chunked=False)
        assert (dec_out - dec_full).abs().max() < 1e-9, "chunked and full-sequence decode disagree"
        dec = model.decode_raw(zu, chunked=True)
        dec_in = model.conv2(zu)
    io = {"video": video, "z": z, "latent_mean": mean32, "latent_std": std32, "mu": mu,
          "mu_raw": mu_raw, "log_var": log_var, "inter/patchified": patchify(video),
          "inter/encoder_out": enc_out, "inter/decoder_in": dec_in, "inter/decoder_out": dec_out,
          "decoded": dec, "decoded_clamped": dec.clamp(-1, 1)}
    save_case(out_dir, name, "wan.modules.vae2_2.WanVAE_",
              "tests/vae/gen_vae_vectors.py (models/wan/vae22.py in float64)",
              dict(ctor, attn_scales=[], dropout=0.0), cfg, sd, st_t, io,
              extra={"wan_version": "2.2"})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder to write the case folders into")
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="only these cases")
    ap.add_argument("--vdit", help="run `VDIT conform --verbose` on every folder made")
    a = ap.parse_args()
    torch.set_num_threads(1)
    check_port22()
    dirs = []
    for n in a.case or sorted(CASES):
        d = os.path.join(a.out, n)
        make_case(n, d)
        dirs.append(d)
    if a.vdit:
        return subprocess.run([a.vdit, "conform", "--threads", "1", "--verbose"] + dirs).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
