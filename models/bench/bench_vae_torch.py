#!/usr/bin/python3
"""PyTorch side of `vdit bench vae`: the Wan2.1 VAE (the project's
models/wan/vae.py WanVAE_, dim 96, z 16, dim_mult [1,2,4,4], 2 res blocks,
temporal [F,T,T]) or with --model wan22 the Wan2.2 VAE (models/wan/vae22.py
WanVAE22_, dim 160, decoder dim 256, z 48, the same lists, 16x spatial) on
the CPU (or a GPU: --device), evaluated along the official chunked path
(frame 0 then 4-frame chunks for encode, one latent frame at a time for
decode, torch.cat of the chunk outputs), random weights, under
torch.inference_mode().

    bench_vae_torch.py --mode encode|decode --width W --height H --frames T --threads N
                       [--dtype fp32|bf16] [--model wan21|wan22] [--device cpu|cuda[:N]]

--dtype bf16: the model and its input in torch.bfloat16 (model.to(torch.bfloat16)),
as a user runs the VAE in bf16. Prints torch_version, torch_dtype, torch_seconds,
torch_frames_out and torch_peak_mib (this process's peak RSS, torch itself
included).
--device cuda[:N]: the model and its input on that GPU (bf16 the same way, through
the model's dtype; fp32 without TF32), a warm-up first, not timed (encode:
frame 0 and the first 4-frame chunk; decode: 2 latent frames), then the run
timed between torch.cuda.synchronize calls (the output stays on the device);
torch_peak_mib is then torch.cuda.max_memory_allocated (weights included), and
torch_device NAME is printed too. Default cpu: as before.
"""
import argparse
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from wan.vae import WanVAE_  # noqa: E402
from wan.vae22 import WanVAE22_  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["encode", "decode"], required=True)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--frames", type=int, required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--model", choices=["wan21", "wan22"], default="wan21")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    a = ap.parse_args()
    cuda = a.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("--device %s: torch sees no CUDA device" % a.device)
    if cuda:  # exact fp32 as vdit's fp32 (no TF32); cuDNN's default otherwise
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def sync():
        if cuda:
            torch.cuda.synchronize(a.device)
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    print("torch_version %s" % torch.__version__)
    print("torch_dtype %s" % a.dtype, flush=True)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.model == "wan22":
        m = WanVAE22_(dim=160, dec_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                      temperal_downsample=[False, True, True]).eval().to(dt)
        z_dim, sf = 48, 16
    else:
        m = WanVAE_(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                    temperal_downsample=[False, True, True]).eval().to(dt)
        z_dim, sf = 16, 8
    if cuda:
        m = m.to(a.device)
    with torch.inference_mode():
        if a.mode == "encode":
            x = (torch.rand(1, 3, a.frames, a.height, a.width) * 2 - 1).to(dt)
            if cuda:
                x = x.to(a.device)
                m.encode_raw(x[:, :, :min(a.frames, 5)], chunked=True)  # warm-up
            sync()
            t0 = time.time()
            mu, _ = m.encode_raw(x, chunked=True)
            sync()
            sec = time.time() - t0
            n_out = mu.shape[2]
        else:
            tl = 1 + (a.frames - 1) // 4
            z = torch.randn(1, z_dim, tl, a.height // sf, a.width // sf).to(dt)
            if cuda:
                z = z.to(a.device)
                m.decode_raw(z[:, :, :min(tl, 2)], chunked=True)  # warm-up
            sync()
            t0 = time.time()
            out = m.decode_raw(z, chunked=True)
            sync()
            sec = time.time() - t0
            n_out = out.shape[2]
    print("torch_seconds %.3f" % sec)
    print("torch_frames_out %d" % n_out)
    if cuda:
        print("torch_device %s" % torch.cuda.get_device_name(a.device))
        print("torch_peak_mib %.1f" % (torch.cuda.max_memory_allocated(a.device) / 1048576.0))
    else:
        print("torch_peak_mib %.1f"
              % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))


if __name__ == "__main__":
    main()
