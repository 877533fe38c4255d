#!/usr/bin/python3
"""PyTorch side of `vdit bench dit`: the same Wan DiT (Wan2.1 T2V, or Wan2.2
TI2V-5B with one timestep per token) on the same weights and inputs, on the
CPU, as one of the Python baselines a user would pick.

    bench_dit_torch.py --weights W.safetensors --io IO.safetensors --out OUT.bin \
                       --threads N --steps S [--dtype fp32|bf16] \
                       [--impl vdit-py|diffusers] [--attn auto|sdpa|matmul] \
                       [--ref-fp32 REF.bin] [--device cpu|cuda[:N]]

--impl vdit-py (default): the project's models/wan/dit.py WanModel.
--impl diffusers: diffusers' WanTransformer3DModel with the same
  configuration; the Wan2.1 checkpoint names are mapped to diffusers' names
  (diffusers_key below; tests/tools/check_diffusers_map.py checks the map).
--dtype fp32 (default): every parameter in fp32, as before.
--dtype bf16: the precision policy of diffusers' from_pretrained(torch_dtype=
  torch.bfloat16): matmul/conv weights in bf16; norms, modulation tables and
  the time embedding kept in fp32. vdit-py runs under torch.autocast(bf16).
--attn: auto (default) is torch.nn.functional.scaled_dot_product_attention
  for bf16 and the fp32 softmax(q k^T) v of models/wan/dit.py for fp32, as
  before; diffusers always uses SDPA (its own attention dispatch).
--ref-fp32: raw fp32 output of an fp32 run to compare with (max_abs_vs_fp32).
--device cuda[:N]: the model and inputs on that GPU (autocast there for
  bf16; the step timed between torch.cuda.synchronize calls); also prints
  `torch_device NAME` and `torch_cuda_peak_bytes N`.

Weights are read with numpy memmaps (fp16 and bf16 files are converted on the
way). The io file's t is [1] (one timestep) or [1, L] (one per token, Wan2.2
TI2V: models/wan/dit.py and diffusers both take that shape).
The configuration comes from the tensor shapes (heads = dim / 128 unless
--heads). Runs S forwards under torch.inference_mode(); prints
`torch_seconds_per_step X` (best of S, wall clock) and
`torch_cpu_seconds_per_step X` (process CPU time of that step),
`torch_blocks_seconds X` (of that step, from the first block's start to the
last block's end: what a run of fewer layers scales by), plus
`torch_version`, `torch_impl`, `torch_dtype`, `torch_attention` lines
(diffusers: `torch_diffusers_version`), and
writes the output as raw fp32. Runs with torch 1.13 (Debian) for the default
fp32/vdit-py row and with torch 2.x (scripts/bench-venv.sh) for all rows.
"""
import argparse
import contextlib
import json
import os
import struct
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import wan.dit as wan_dit  # noqa: E402
from wan.dit import WanModel  # noqa: E402

_MATMUL_ATTENTION = wan_dit.attention  # fp32 softmax(q k^T) v
_NP = {"F32": np.float32, "F16": np.float16, "BF16": np.int16}  # BF16: bits, viewed below
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# diffusers' WanTransformer3DModel._keep_in_fp32_modules, in Wan2.1 names:
# parameters whose name has one of these components stay fp32 in bf16 runs
# (a name component containing "norm": norm1/2/3, norm_q/k, head.norm)
_KEEP_FP32_WAN = ("modulation", "time_embedding")


def load_st(path):
    """{name: read-only tensor over a memmap of the file} in the stored dtype."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        hdr = json.loads(f.read(n).decode("utf-8"))
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # read-only memmaps: only ever copied from
        for name, info in hdr.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            dt = np.dtype(_NP[info["dtype"]])
            arr = np.memmap(path, dtype=dt, mode="r", offset=8 + n + a, shape=tuple(info["shape"]))
            t = torch.from_numpy(arr)
            out[name] = t.view(torch.bfloat16) if info["dtype"] == "BF16" else t
    return out


@contextlib.contextmanager
def no_init():
    """Builds modules without their random initialization: every parameter is
    replaced from the checkpoint, and pages never written are never touched."""
    names = [n for n in ("kaiming_uniform_", "uniform_", "normal_", "trunc_normal_", "zeros_",
                         "ones_", "constant_", "xavier_uniform_", "xavier_normal_")
             if hasattr(torch.nn.init, n)]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    try:
        for n in names:
            setattr(torch.nn.init, n, lambda t, *a, **k: t)
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


def wan_config(w, heads=0):
    """WanModel keyword arguments from the checkpoint's tensor shapes."""
    D, in_dim = w["patch_embedding.weight"].shape[:2]
    patch = tuple(w["patch_embedding.weight"].shape[2:])
    n_layers = 0
    while "blocks.%d.modulation" % n_layers in w:
        n_layers += 1
    return dict(in_dim=in_dim, dim=D, ffn_dim=w["blocks.0.ffn.0.weight"].shape[0],
                freq_dim=w["time_embedding.0.weight"].shape[1],
                text_dim=w["text_embedding.0.weight"].shape[1],
                out_dim=w["head.head.weight"].shape[0] // (patch[0] * patch[1] * patch[2]),
                patch_size=patch, num_heads=heads or D // 128, num_layers=n_layers)


def keep_fp32_wan(name):
    parts = name.split(".")
    return any("norm" in p for p in parts) or any(k in parts for k in _KEEP_FP32_WAN)


def _fill(p, src, dt):
    # a fresh tensor (never an alias of the read-only memmap), fp16 widened on the way
    p.data = torch.empty(tuple(p.shape), dtype=dt).copy_(src.reshape(p.shape))


def build_vdit_py(w, cfg, text_len, dtype):
    with no_init():
        m = WanModel(text_len=text_len, **cfg)
    params = dict(m.named_parameters())
    diff = set(params) ^ set(w)
    if diff:
        sys.exit("weights and model disagree on: %s" % sorted(diff)[:5])
    with torch.no_grad():
        for k, p in params.items():
            _fill(p, w[k], torch.float32 if keep_fp32_wan(k) else dtype)
    return m.eval()


# Wan2.1 (official checkpoint) name -> diffusers WanTransformer3DModel name.
# Block-level pieces; note Wan's norm3 (the affine norm before cross-attention)
# is diffusers' norm2, and Wan's norm2 (before the FFN, no parameters) norm3.
_TOP = {
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
    "patch_embedding": "patch_embedding",
}
_BLOCK = {
    "self_attn.q": "attn1.to_q", "self_attn.k": "attn1.to_k", "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0", "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q", "cross_attn.k": "attn2.to_k", "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0", "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2",
    "modulation": "scale_shift_table",
}


def diffusers_key(k):
    """Maps one Wan2.1 checkpoint name; None when it has no counterpart."""
    parts = k.split(".")
    if parts[0] == "blocks":
        head, rest = "blocks.%s." % parts[1], parts[2:]
        table = _BLOCK
    else:
        head, rest = "", parts
        table = _TOP
    # longest prefix of the remaining components found in the table
    for n in range(len(rest), 0, -1):
        pre = ".".join(rest[:n])
        if pre in table:
            return head + ".".join([table[pre]] + rest[n:])
    return None


def build_diffusers(w, cfg, dtype):
    from diffusers import WanTransformer3DModel

    D, heads = cfg["dim"], cfg["num_heads"]
    with no_init():
        m = WanTransformer3DModel(
            patch_size=cfg["patch_size"], num_attention_heads=heads, attention_head_dim=D // heads,
            in_channels=cfg["in_dim"], out_channels=cfg["out_dim"], text_dim=cfg["text_dim"],
            freq_dim=cfg["freq_dim"], ffn_dim=cfg["ffn_dim"], num_layers=cfg["num_layers"],
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)
    params = dict(m.named_parameters())
    src = {}
    for k in w:
        d = diffusers_key(k)
        if d is None or d not in params:
            sys.exit("no diffusers parameter for %s (mapped to %s)" % (k, d))
        src[d] = k
    if set(src) != set(params):
        sys.exit("diffusers parameters without a weight: %s" % sorted(set(params) - set(src))[:5])
    # what from_pretrained(torch_dtype=...) does: buffers (the float64 rope
    # tables) untouched, _keep_in_fp32_modules parameters in fp32
    keep = tuple(getattr(m, "_keep_in_fp32_modules", None) or ())
    with torch.no_grad():
        for name, p in params.items():
            fp32 = any(c in keep for c in name.split("."))
            _fill(p, w[src[name]], torch.float32 if fp32 else dtype)
    return m.eval()


def sdpa_attention(dtype):
    """models/wan/dit.py attention() through scaled_dot_product_attention in dtype."""
    def attention(q, k, v):
        b, lq, n, d = q.shape
        q, k, v = (t.to(dtype).transpose(1, 2) for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, lq, n * d)
    return attention


_BLOCKS = {}


def time_blocks(m):
    """Hooks that note when the first block starts and the last one ends."""
    blocks = m.blocks
    blocks[0].register_forward_pre_hook(lambda *a: _BLOCKS.__setitem__("t0", time.time()))
    blocks[-1].register_forward_hook(lambda *a: _BLOCKS.__setitem__("t1", time.time()))


def make_forward(impl, m, dtype, x, t, ctx, device="cpu"):
    """A closure running one forward, returning [C,F,H,W] fp32."""
    if impl == "diffusers":
        xb, cb = x[None].to(dtype), ctx[None].to(dtype)

        def fwd():
            return m(hidden_states=xb, timestep=t, encoder_hidden_states=cb,
                     return_dict=False)[0][0].float()
        return fwd
    if dtype == torch.float32:
        return lambda: m([x], t, [ctx])[0]

    def fwd():
        with torch.autocast(torch.device(device).type, dtype=dtype):
            return m([x], t, [ctx])[0].float()
    return fwd


def run(impl, w, io, dtype, attn="auto", heads=0, device="cpu"):
    """Builds the model on device; returns (forward closure, attention name)."""
    cfg = wan_config(w, heads)
    x, t, ctx = (io[k].float().clone().to(device) for k in ("x", "t", "context"))
    has_sdpa = hasattr(F, "scaled_dot_product_attention")
    if impl == "diffusers":
        if not has_sdpa:
            sys.exit("diffusers needs torch 2 (scaled_dot_product_attention)")
        m = build_diffusers(w, cfg, dtype)
        attn = "sdpa"
    else:
        if attn == "auto":
            attn = "sdpa" if has_sdpa and dtype != torch.float32 else "matmul"
        if attn == "sdpa" and not has_sdpa:
            sys.exit("--attn sdpa needs torch 2")
        wan_dit.attention = sdpa_attention(dtype) if attn == "sdpa" else _MATMUL_ATTENTION
        m = build_vdit_py(w, cfg, ctx.shape[0], dtype)
    if device != "cpu":
        m = m.to(device)
        if isinstance(getattr(m, "freqs", None), torch.Tensor):  # a plain attribute
            m.freqs = m.freqs.to(device)
    time_blocks(m)
    return make_forward(impl, m, dtype, x, t, ctx, device), attn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--io", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--heads", type=int, default=0)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    ap.add_argument("--impl", choices=("vdit-py", "diffusers"), default="vdit-py")
    ap.add_argument("--attn", choices=("auto", "sdpa", "matmul"), default="auto")
    ap.add_argument("--ref-fp32", default=None)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    a = ap.parse_args()
    cuda = a.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("--device %s: torch sees no CUDA device" % a.device)

    def sync():
        if cuda:
            torch.cuda.synchronize(a.device)
    torch.set_num_threads(a.threads)
    dtype = DTYPES[a.dtype]
    t0 = time.time()
    w = load_st(a.weights)
    io = load_st(a.io)
    fwd, attn = run(a.impl, w, io, dtype, a.attn, a.heads, a.device)
    del w
    extra = dver = ""
    if a.impl == "diffusers":
        import diffusers
        dver = diffusers.__version__
        extra = ", diffusers %s" % dver
    print("torch load %.1f s, %d threads, torch %s%s, %s %s, attention %s"
          % (time.time() - t0, a.threads, torch.__version__, extra, a.impl, a.dtype, attn), flush=True)
    best = best_cpu = best_blk = None
    with torch.inference_mode():
        for s in range(a.steps):
            sync()
            t0, c0 = time.time(), time.process_time()
            out = fwd()
            sync()
            dt, dc = time.time() - t0, time.process_time() - c0
            print("torch step %d: %.3f s (process CPU time %.3f s)" % (s + 1, dt, dc), flush=True)
            blk = _BLOCKS.get("t1", 0) - _BLOCKS.get("t0", 0)
            if best is None or dt < best:
                best, best_cpu, best_blk = dt, dc, blk
    o = out.contiguous().cpu().numpy().astype(np.float32)
    if cuda:
        print("torch_device %s" % torch.cuda.get_device_name(a.device))
        print("torch_cuda_peak_bytes %d" % torch.cuda.max_memory_allocated(a.device))
    o.tofile(a.out)
    print("torch_version %s" % torch.__version__)
    print("torch_impl %s" % a.impl)
    if dver:
        print("torch_diffusers_version %s" % dver)
    print("torch_dtype %s" % a.dtype)
    print("torch_attention %s" % attn)
    if a.ref_fp32:
        ref = np.fromfile(a.ref_fp32, dtype=np.float32)
        if ref.size == o.size:
            m = float(np.abs(ref - o.reshape(-1)).max())
            mb = float(np.abs(ref).max())
            print("max_abs_vs_fp32 %.3e rel %.3e" % (m, m / mb if mb > 0 else m))
    print("torch_cpu_seconds_per_step %.4f" % best_cpu, flush=True)
    print("torch_blocks_seconds %.4f" % best_blk, flush=True)
    print("torch_seconds_per_step %.4f" % best, flush=True)


if __name__ == "__main__":
    main()
