#!/usr/bin/python3
"""Makes the TAEHV decoder conformance folders (tests/conformance/taehv/):
config.json, weights.safetensors, io.safetensors, the layout of the other
conformance folders, checked by `vdit conform` (core/cli/conform_taehv.c).

Reference: madebyollin/taehv, taehv.py at commit
1f14a568f24bf8811e0a0ac601613e04fc1581e8 (MIT licence, Copyright (c) 2025
Ollin Boer Bohan), run UNMODIFIED. It is not part of this repository: pass
its path.

    git clone https://github.com/madebyollin/taehv /tmp/taehv
    git -C /tmp/taehv checkout 1f14a568f24bf8811e0a0ac601613e04fc1581e8
    /usr/bin/python3 tests/vae/gen_taehv_vectors.py --taehv /tmp/taehv/taehv.py \
        --out tests/conformance/taehv [--vdit build/core/cli/vdit]

The published decoder is 256/128/64/64 channels wide (9.9 M parameters, 40 MB
in fp32), too large to commit as a vector, and taehv.py has no width
parameter. So the decoder of TAEHV(checkpoint_path=None, patch_size=p,
latent_channels=z) is rebuilt here with taehv.py's own classes (Clamp, conv,
MemBlock, TGrow) in the same order at widths 16/12/8/8; the script checks
that the layer types and every state-dict key equal those of the TAEHV
class's own decoder (only the widths differ), then runs taehv.py's
decode_video / StreamingTAEHV on it. `--full` makes the same cases at the
published widths (not committed: 40 MB) for a one-off check.

Weights: seeded N(0, 1) * sqrt(2 / fan_in) for convolution weights, biases
N(0, 0.05); the last conv is then rescaled so that the output (before
taehv's clamp to [0, 1]) has mean 0.5 and std 0.3 on the vector's latents,
so that the clamp hides little. The Wan2.2 case stores decoder.7 (TGrow,
stride 1) with twice the rows it needs, as a checkpoint trained with more
temporal upscaling would: taehv.py's patch_tgrow_layers keeps the last rows
and so must vdit.

Outputs, evaluated in float64 from the float32 weights and latents, stored
as float32 (io.safetensors): 'latents' [1, T, z, h, w] (NTCHW, taehv's
order), 'decoded' = decode_video(latents) [1, 1 + 4(T-1), 3, H, W] in
[0, 1]; 'decoded_raw' = the decoder's output (taehv.py's
apply_model_with_memblocks), pixel-shuffled and trimmed as decode_video
does, not clamped. Also checked here, in float32: decode_video(parallel=True),
decode_video(parallel=False) and StreamingTAEHV fed one latent frame at a
time agree with the float64 result (max_abs printed, bound 1e-5).
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
from wan import st  # noqa: E402

COMMIT = "1f14a568f24bf8811e0a0ac601613e04fc1581e8"

CASES = {
    # Wan2.1 latents (taew2_1): 16 channels, 3 latent frames of 4x6 -> 9 frames of 32x48
    "taew2_1_tiny": dict(z=16, patch=1, t=3, h=4, w=6, seed=2901, grow_extra=0),
    # Wan2.2 TI2V-5B latents (taew2_2): 48 channels, pixel shuffle 2, 4 latent frames of
    # 3x2 -> 13 frames of 48x32; decoder.7 stored with 2x the rows (patch_tgrow_layers)
    "taew2_2_tiny": dict(z=48, patch=2, t=4, h=3, w=2, seed=2902, grow_extra=1),
}
WIDTHS = [16, 12, 8, 8]
FULL_WIDTHS = [256, 128, 64, 64]


def import_taehv(path):
    """taehv.py as a module. It imports tqdm.auto for its progress bars only;
    where tqdm is not installed a stand-in that iterates is provided."""
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:
        class _Bar:
            def __init__(self, it=None, disable=False, **kw):
                self.it = it

            def __iter__(self):
                return iter(self.it)

            def update(self, n=1):
                pass

            def close(self):
                pass
        mod, auto = types.ModuleType("tqdm"), types.ModuleType("tqdm.auto")
        auto.tqdm = _Bar
        mod.auto = auto
        sys.modules["tqdm"], sys.modules["tqdm.auto"] = mod, auto
    spec = importlib.util.spec_from_file_location("taehv", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def decoder_at(T, z, p, n_f):
    """TAEHV's base decoder (taehv.py, arch_variant None, default time / space
    upscaling), the same layers in the same order, at widths n_f."""
    conv, MemBlock, TGrow, Clamp = T.conv, T.MemBlock, T.TGrow, T.Clamp
    t_up = (False, True, True)
    layers = [Clamp(), conv(z, n_f[0]), nn.ReLU(inplace=True)]
    for i in range(3):
        layers += [MemBlock(n_f[i], n_f[i]), MemBlock(n_f[i], n_f[i]), MemBlock(n_f[i], n_f[i]),
                   nn.Upsample(scale_factor=2), TGrow(n_f[i], 2 if t_up[i] else 1),
                   conv(n_f[i], n_f[i + 1], bias=False)]
    layers += [nn.ReLU(inplace=True), conv(n_f[3], 3 * p * p)]
    return nn.Sequential(*layers)


def make_model(T, z, p, n_f):
    m = T.TAEHV(checkpoint_path=None, patch_size=p, latent_channels=z)
    own = m.decoder
    dec = decoder_at(T, z, p, n_f)
    # only the widths may differ from the class's own decoder
    assert [type(a) for a in own] == [type(b) for b in dec], "layer list differs from taehv.py's"
    assert list(own.state_dict().keys()) == list(dec.state_dict().keys()), "keys differ"
    for a, b in zip(own, dec):
        if isinstance(a, nn.Upsample):
            assert a.scale_factor == b.scale_factor and a.mode == b.mode
        if isinstance(a, T.TGrow):
            assert a.stride == b.stride
    m.decoder = dec
    return m


def init_decoder(m, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, prm in sorted(m.decoder.named_parameters()):
            if name.endswith("weight"):
                fan_in = prm.shape[1] * prm.shape[2] * prm.shape[3]
                std = (2.0 / fan_in) ** 0.5
            else:
                std = 0.05
            prm.copy_(torch.randn(prm.shape, generator=g, dtype=torch.float64).float() * std)


def raw_decode(T, m, x):
    """The decoder's output as decode_video makes it, before the clamp."""
    y = T.apply_model_with_memblocks(m.decoder, x, False, False)
    if m.patch_size > 1:
        y = F.pixel_shuffle(y, m.patch_size)
    return y[:, m.frames_to_trim:]


def make_case(T, name, cfg, out_dir, n_f):
    z, p = cfg["z"], cfg["patch"]
    torch.manual_seed(0)  # the construction's own init is overwritten below
    m = make_model(T, z, p, n_f)
    init_decoder(m, cfg["seed"])
    g = torch.Generator().manual_seed(cfg["seed"] + 1000)
    x = (torch.randn(1, cfg["t"], z, cfg["h"], cfg["w"], generator=g, dtype=torch.float64)
         * 1.5).float()
    with torch.no_grad():
        # calibrate the last conv: output mean 0.5, std 0.3
        m64 = m.double()
        y = raw_decode(T, m64, x.double())
        a = 0.3 / float(y.std())
        b = 0.5 - float(y.mean()) * a
        last = m.decoder[-1]
        last.weight.mul_(a)
        last.bias.mul_(a).add_(b)
        m = m.float()
    sd = {k: v.detach().clone().float() for k, v in m.state_dict().items()
          if k.startswith("decoder.")}
    file_sd = dict(sd)
    if cfg["grow_extra"]:
        k7 = "decoder.7.conv.weight"
        extra = torch.randn(sd[k7].shape, generator=g, dtype=torch.float64).float() * 0.1
        file_sd[k7] = torch.cat([extra, sd[k7]], 0)
    # load the file as taehv.py loads a checkpoint (patch_tgrow_layers, then the state dict)
    ref = make_model(T, z, p, n_f)
    patched = ref.patch_tgrow_layers({k: v.clone() for k, v in file_sd.items()})
    missing, unexpected = ref.load_state_dict(patched, strict=False)
    assert not unexpected and all(k.startswith("encoder.") for k in missing), (missing, unexpected)
    ref.eval()
    with torch.no_grad():
        ref64 = make_model(T, z, p, n_f)
        ref64.load_state_dict(ref.state_dict())
        ref64 = ref64.double()
        dec64 = ref64.decode_video(x.double(), parallel=False, show_progress_bar=False)
        raw64 = raw_decode(T, ref64, x.double())
        tv = 1 + 4 * (cfg["t"] - 1)
        assert dec64.shape == (1, tv, 3, cfg["h"] * 8 * p, cfg["w"] * 8 * p), dec64.shape
        outs = {
            "parallel": ref.decode_video(x, parallel=True, show_progress_bar=False),
            "sequential": ref.decode_video(x, parallel=False, show_progress_bar=False),
        }
        s = T.StreamingTAEHV(ref)
        fr = []
        for i in range(cfg["t"]):
            f = s.decode(x[:, i:i + 1])
            while f is not None:
                fr.append(f)
                f = s.decode()
        fr += s.flush_decoder()
        outs["streaming"] = torch.cat(fr, 1)
        for k, v in outs.items():
            d = float((v.double() - dec64).abs().max())
            print(f"{name}: float32 {k} vs float64: max_abs {d:.3e}")
            assert v.shape == dec64.shape and d < 1e-5, (k, d)
        frac = float(((raw64 < 0) | (raw64 > 1)).double().mean())
        print(f"{name}: {frac * 100:.1f}% of the raw output outside [0, 1] (clamped)")
    os.makedirs(out_dir, exist_ok=True)
    st.save(os.path.join(out_dir, "weights.safetensors"), file_sd)
    io = {"latents": x, "decoded": dec64.float(), "decoded_raw": raw64.float()}
    st.save(os.path.join(out_dir, "io.safetensors"), {k: v.float() for k, v in io.items()})
    n_params = sum(v.numel() for v in file_sd.values())
    conf = {
        "vector": name,
        "reference": "taehv.TAEHV.decode_video",
        "reference_source": f"github.com/madebyollin/taehv taehv.py @ {COMMIT} (MIT licence), "
                            "unmodified",
        "generator": "tests/vae/gen_taehv_vectors.py",
        "constructor": {"checkpoint_path": None, "patch_size": p, "latent_channels": z,
                        "decoder_widths": n_f, "decoder_time_upscale": [False, True, True],
                        "decoder_space_upscale": [True, True, True]},
        "call": {
            "decoded": "TAEHV.decode_video(io.latents, parallel=False) in float64 (equal in "
                       "float32 to parallel=True and to StreamingTAEHV.decode frame by frame)",
            "decoded_raw": "apply_model_with_memblocks(decoder, io.latents, parallel=False), "
                           "pixel_shuffle(patch_size), [:, frames_to_trim:], not clamped",
            "frames_to_trim": 3,
        },
        "weights": {"init": f"conv weights N(0,1)*sqrt(2/fan_in), biases N(0,0.05), seed "
                            f"{cfg['seed']}, sorted names; last conv rescaled to output mean "
                            f"0.5 std 0.3", "dtype": "F32", "n_params": n_params,
                    "tgrow_extra_rows": bool(cfg["grow_extra"])},
        "inputs": {"latents": f"N(0,1)*1.5, seed {cfg['seed'] + 1000}"},
        "io": {k: {"shape": list(v.shape)} for k, v in io.items()},
    }
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(conf, f, indent=1)
        f.write("\n")
    return file_sd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--taehv", required=True, help="path to taehv.py (unmodified)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--case", action="append")
    ap.add_argument("--full", action="store_true", help="the published widths (40 MB)")
    ap.add_argument("--pth", help="also save the first case's weights with torch.save here")
    ap.add_argument("--vdit", help="run `vdit conform` on the folders made")
    a = ap.parse_args()
    torch.set_num_threads(1)
    T = import_taehv(a.taehv)
    n_f = FULL_WIDTHS if a.full else WIDTHS
    dirs = []
    for i, name in enumerate(a.case or CASES):
        d = os.path.join(a.out, name)
        sd = make_case(T, name, CASES[name], d, n_f)
        dirs.append(d)
        if a.pth and i == 0:
            torch.save(sd, a.pth)
    if a.vdit:
        return subprocess.call([a.vdit, "conform", "--threads", "1", "--verbose"] + dirs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
