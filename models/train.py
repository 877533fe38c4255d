"""Train the bundled vdit model: VAE, then DiT + umT5 jointly (flow matching).

usage: /usr/bin/python3 models/train.py [--phase all|tok|vae|latents|dit] [--work models/work]
Fixed seeds, resumable (checkpoints in WORK/ckpt_*.pt), CPU or CUDA.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from data import gen  # noqa: E402
from wan.dit import WanModel  # noqa: E402
from wan.t5 import T5Encoder  # noqa: E402
from wan.vae import WanVAE_, latent_scale  # noqa: E402
import tokenizer as tok  # noqa: E402

# ---- model configuration (what export.py writes into vdit.json too) ----
CFG = {
    "vae": dict(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                temperal_downsample=[False, True, True], dropout=0.0),
    "t5": dict(vocab=None, dim=64, dim_attn=64, dim_ffn=128, num_heads=4, num_layers=2,
               num_buckets=32, shared_pos=False, dropout=0.0),
    "dit": dict(model_type="t2v", patch_size=[1, 2, 2], text_len=32, in_dim=16, dim=96, ffn_dim=256,
                freq_dim=64, text_dim=64, out_dim=16, num_heads=2, num_layers=4, window_size=[-1, -1],
                qk_norm=True, cross_attn_norm=True, eps=1e-6),
    "train_shift": 3.0,
    "cfg_drop": 0.1,
}
HP = {
    "vae_steps": 500, "vae_batch": 4, "vae_lr": 1e-3, "vae_noise": 0.0, "vae_stat": 0.0, "vae_crop": 32, "vae_stop": 0,
    "vae_T": 5, "solid": 0.2,
    "n_latents": 480, "dec_steps": 300, "dec_lr": 5e-4, "dec_stop": 0, "dec_noise": 0.0,
    "dit_steps": 1200, "dit_batch": 8, "dit_lr": 1e-3, "ema": 0.995, "warmup": 50, "dit_stop": 0,
    "dit_dim": 96, "dit_layers": 4, "dit_ffn": 256, "n_focus": 0, "focus_p": 0.0,
}


def log(work, msg):
    line = "%s %s" % (time.strftime("%H:%M:%S"), msg)
    print(line, flush=True)
    with open(os.path.join(work, "train.log"), "a") as f:
        f.write(line + "\n")


def to_tensor(videos, device):
    """list of uint8 [T,H,W,3] -> float [B,3,T,H,W] in [-1,1]."""
    v = torch.from_numpy(np.stack(videos)).to(device).float()
    return v.permute(0, 4, 1, 2, 3).contiguous() / 127.5 - 1.0


# DiT training buckets: smaller than the generator's defaults (CPU budget)
DIT_SIZES_WH = [(64, 64), (64, 48), (48, 64)]
DIT_FRAMES = 9


def bg_weights():
    """Background mix: HP["solid"] of the clips on solid colours, the other
    four kinds sharing the rest (0.2 = the generator's uniform default)."""
    if abs(HP["solid"] - 0.2) < 1e-9:
        return None
    r = (1.0 - HP["solid"]) / 4
    return [HP["solid"], r, r, r, r]


def batch_clips(rng, n, frames=None, size_wh=None, allow_t1=False, sizes=None):
    """n clips sharing one native size and length (a bucket)."""
    sizes = sizes or gen.SIZES_WH
    wh = size_wh or sizes[rng.integers(len(sizes))]
    T = frames or gen.LENGTHS[rng.integers(len(gen.LENGTHS))]
    if allow_t1 and rng.random() < 0.1:
        T = 1
    clips = [gen.make_clip(int(rng.integers(1 << 31)), size_wh=wh, frames=T, bg_weights=bg_weights()) for _ in range(n)]
    return clips


def random_crops(rng, clips, cs, T):
    """One random cs x cs crop of T frames from each clip's video."""
    vids = []
    for c in clips:
        v = c["video"]
        t0, y0, x0 = (int(rng.integers(v.shape[0] - T + 1)), int(rng.integers(v.shape[1] - cs + 1)),
                      int(rng.integers(v.shape[2] - cs + 1)))
        vids.append(v[t0:t0 + T, y0:y0 + cs, x0:x0 + cs])
    return vids


def save_ckpt(path, obj):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def flow_noising(x0, shift):
    """Wan's flow-matching training sample: logit-normal u, then the
    sampler's shift s = shift*u / (1 + (shift-1) u); x_s = (1-s) x0 + s noise.
    Returns (s [B], noise, x_s); the target is noise - x0."""
    B = x0.shape[0]
    u = torch.sigmoid(torch.randn(B, device=x0.device))
    s = shift * u / (1 + (shift - 1) * u)
    noise = torch.randn_like(x0)
    sv = s.view(B, 1, 1, 1, 1)
    return s, noise, (1 - sv) * x0 + sv * noise


@torch.no_grad()
def ema_update(ema, params, step, cap):
    """EMA with the warm-up decay min(cap, (1 + step) / (10 + step))."""
    dec = min(cap, (1 + step) / (10 + step))
    if hasattr(torch, "_foreach_lerp_"):
        torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - dec)
    else:
        for e, p in zip(ema, params):
            e.mul_(dec).add_(p.detach(), alpha=1 - dec)


def decoder_step(vae, opt, params, mu, x, skip=0):
    """One decoder training step (L1 + MSE on the pixels of raw latent mu,
    the first `skip` decoded frames left out of the loss); returns the L1
    term."""
    rec = vae.decode_raw(mu, chunked=False)[:, :, skip:]
    l1 = (rec - x).abs().mean()
    loss = l1 + (rec - x).pow(2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return l1


# ------------------------------------------------------------------ VAE
def train_vae(a, dev):
    torch.manual_seed(1)
    vae = WanVAE_(**CFG["vae"]).to(dev)
    opt = torch.optim.AdamW(vae.parameters(), lr=HP["vae_lr"], weight_decay=0.0, betas=(0.9, 0.99))
    ck = os.path.join(a.work, "ckpt_vae.pt")
    step = 0
    rng = np.random.default_rng(1000)
    if os.path.exists(ck):
        s = torch.load(ck, map_location=dev)
        vae.load_state_dict(s["model"])
        opt.load_state_dict(s["opt"])
        step = s["step"]
        rng = np.random.default_rng(1000 + step)
        torch.manual_seed(1 + step)
    mean, inv = [x.to(dev) for x in latent_scale()]
    std = 1.0 / inv
    n = HP["vae_steps"]
    t0 = time.time()
    acc = []
    while step < min(n, HP["vae_stop"] or n):
        lr = HP["vae_lr"] * min(1.0, (step + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / n)))
        for g in opt.param_groups:
            g["lr"] = lr
        # random 32x32 crops of 5 frames: the VAE is convolutional and causal,
        # so small crops teach it the same thing at a fraction of the CPU cost
        clips = batch_clips(rng, HP["vae_batch"], frames=17)
        x = to_tensor(random_crops(rng, clips, HP["vae_crop"], HP["vae_T"]), dev)
        mu, _ = vae.encode_raw(x, chunked=False)
        # the normalised latent the DiT sees: (mu - mean) / std (published constants)
        mu_n = (mu - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1)
        # fixed small latent noise (instead of a learned variance + KL, which
        # collapsed here) so the decoder tolerates the DiT's imperfect latents
        z = mu + torch.randn_like(mu) * HP["vae_noise"] * std.view(1, -1, 1, 1, 1)
        rec = vae.decode_raw(z, chunked=False)
        l1 = (rec - x).abs().mean()
        mse = (rec - x).pow(2).mean()
        # keep the normalised latent near zero mean / unit std per channel, the
        # scale the DiT's flow matching assumes (the KL weight alone is too weak)
        cm = mu_n.transpose(0, 1).flatten(1)
        stat = (cm.mean(1).pow(2) + (cm.std(1) - 1).pow(2)).mean()
        loss = l1 + mse + HP["vae_stat"] * stat
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        acc.append([l1.item(), mse.item(), stat.item(), mu_n.std().item()])
        if step % 10 == 0 or step == n:
            m = np.mean(acc, 0)
            acc = []
            log(a.work, "vae step %d l1 %.4f mse %.5f stat %.3f zstd %.3f lr %.2e %.2fs/it" % (
                step, m[0], m[1], m[2], m[3], lr, (time.time() - t0) / 10))
            t0 = time.time()
        if step % 20 == 0 or step == n or step == HP["vae_stop"]:
            save_ckpt(ck, {"model": vae.state_dict(), "opt": opt.state_dict(), "step": step})
    return vae


# ------------------------------------------------------------------ decoder fine-tune
def train_vae_decoder(a, dev):
    """Fine-tune conv2 + decoder on 9-frame clips with the encoder frozen.

    The first VAE phase saw 5-frame crops (2 latent frames); a third latent
    frame (no zero padding left in its receptive field) then decoded badly.
    The encoder (and so the DiT's latent space) stays fixed, so this can run
    after or beside the DiT phase."""
    src = os.path.join(a.work, "vae_final.pt")
    out = os.path.join(a.work, "vae_final_dec.pt")
    vae = WanVAE_(**CFG["vae"]).to(dev)
    vae.load_state_dict(torch.load(out if os.path.exists(out) else src, map_location=dev)["model"])
    step = torch.load(out, map_location=dev).get("step", 0) if os.path.exists(out) else 0
    std = 1.0 / latent_scale()[1].to(dev)
    params = list(vae.conv2.parameters()) + list(vae.decoder.parameters())
    opt = torch.optim.AdamW(params, lr=HP["dec_lr"], weight_decay=0.0, betas=(0.9, 0.99))
    rng = np.random.default_rng(5000 + step)
    torch.manual_seed(5 + step)
    t0 = time.time()
    acc = []
    n = HP["dec_steps"]
    while step < min(n, HP["dec_stop"] or n):
        clips = batch_clips(rng, HP["vae_batch"], frames=17)
        x = to_tensor(random_crops(rng, clips, HP["vae_crop"], 9), dev)
        with torch.no_grad():
            mu, _ = vae.encode_raw(x, chunked=False)
            # latent noise (in units of the normalised latent the DiT sees): the
            # DiT's latents are never exact, and frame 0 decoded alone was the
            # most sensitive part of the decoder
            mu = mu + torch.randn_like(mu) * HP["dec_noise"] * std.view(1, -1, 1, 1, 1)
        l1 = decoder_step(vae, opt, params, mu, x)
        step += 1
        acc.append(l1.item())
        if step % 10 == 0 or step == n:
            log(a.work, "vae-dec step %d l1 %.4f %.2fs/it" % (step, np.mean(acc), (time.time() - t0) / 10))
            acc = []
            t0 = time.time()
        if step % 20 == 0 or step == n:
            save_ckpt(out, {"model": vae.state_dict(), "step": step})


@torch.no_grad()
def refit_vae_head(a, dev, n_clips=24, frac=0.25, ridge=1e-2):
    """Closed-form refit of the decoder's last conv (decoder.head.2, 8->3,
    3x3x3 causal) by ridge regression of the true pixels on its input
    features: the optimal last layer for the frozen rest of the VAE, which
    removes most of the colour bias SGD had not yet trained away."""
    src = os.path.join(a.work, "vae_final_dec.pt")
    if not os.path.exists(src):
        src = os.path.join(a.work, "vae_final.pt")
    vae = WanVAE_(**CFG["vae"]).to(dev).eval()
    vae.load_state_dict(torch.load(src, map_location=dev)["model"])
    conv = vae.decoder.head[2]
    feats = {}
    hook = conv.register_forward_hook(lambda mod, inp, out: feats.__setitem__("x", inp[0]))
    rng = np.random.default_rng(6000)
    g = torch.Generator().manual_seed(6)
    XtX, XtY = None, None
    for i in range(n_clips // 4):
        clips = batch_clips(rng, 4, frames=DIT_FRAMES, sizes=DIT_SIZES_WH)
        x = to_tensor([c["video"] for c in clips], dev)
        mu, _ = vae.encode_raw(x, chunked=False)
        vae.decode_raw(mu, chunked=False)
        f = F.pad(feats["x"], conv._padding)                      # [B,C,T+2,H+2,W+2]
        B, C = f.shape[:2]
        T, H, W = x.shape[2:]
        cols = f.unfold(2, 3, 1).unfold(3, 3, 1).unfold(4, 3, 1)  # [B,C,T,H,W,3,3,3]
        cols = cols.permute(0, 2, 3, 4, 1, 5, 6, 7).reshape(-1, C * 27)
        y = x.permute(0, 2, 3, 4, 1).reshape(-1, 3)
        keep = torch.rand(cols.shape[0], generator=g) < frac
        X = torch.cat([cols[keep], torch.ones(int(keep.sum()), 1)], 1).double()
        Y = y[keep].double()
        XtX = X.T @ X if XtX is None else XtX + X.T @ X
        XtY = X.T @ Y if XtY is None else XtY + X.T @ Y
    hook.remove()
    k = XtX.shape[0]
    sol = torch.linalg.solve(XtX + ridge * torch.eye(k, dtype=XtX.dtype) * XtX.diagonal().mean(), XtY)  # [k,3]
    conv.weight.copy_(sol[:-1].T.reshape(3, C, 3, 3, 3).float())
    conv.bias.copy_(sol[-1].float())
    save_ckpt(os.path.join(a.work, "vae_final_head.pt"), {"model": vae.state_dict()})
    log(a.work, "vae head refit on %d clips (%s)" % (n_clips, os.path.basename(src)))


# ------------------------------------------------------------------ latents
@torch.no_grad()
def fold_latent_stats(vae, dev, n=48):
    """Make the published Wan latent mean/std normalise this VAE's latent.

    The encoder's conv1 and the decoder's conv2 are 1x1x1 convs (linear), so
    an affine map of the latent folds into them exactly: with m, s this
    VAE's per-channel latent mean/std and M, S the published constants,
    mu' = M + S (mu - m) / s  (conv1, mu half) and conv2 undoes it."""
    rng = np.random.default_rng(4000)
    mus = []
    for _ in range(n // 8):
        clips = batch_clips(rng, 8, frames=DIT_FRAMES, sizes=DIT_SIZES_WH)
        mu, _ = vae.encode_raw(to_tensor([c["video"] for c in clips], dev), chunked=False)
        mus.append(mu.transpose(0, 1).flatten(1))
    mu = torch.cat(mus, 1)
    m, s = mu.mean(1), mu.std(1).clamp_min(1e-3)
    mean, inv = [x.to(dev) for x in latent_scale()]
    M, S = mean, 1.0 / inv
    z = vae.z_dim
    a = S / s                                     # [z]
    w1, b1 = vae.conv1.weight, vae.conv1.bias     # [2z,2z,1,1,1], [2z]
    w1[:z] *= a.view(z, 1, 1, 1, 1)
    b1[:z] = a * (b1[:z] - m) + M
    w2, b2 = vae.conv2.weight, vae.conv2.bias     # [z,z,1,1,1]: input mu' -> mu = m + (mu' - M) / a
    b2 += (w2[:, :, 0, 0, 0] @ (m - M / a))
    w2 *= (1.0 / a).view(1, z, 1, 1, 1)
    return m, s


def make_latents(a, dev):
    out = os.path.join(a.work, "latents.pt")
    if os.path.exists(out):
        return torch.load(out)
    vae = WanVAE_(**CFG["vae"]).to(dev).eval()
    vae.load_state_dict(torch.load(os.path.join(a.work, "ckpt_vae.pt"), map_location=dev)["model"])
    m, s = fold_latent_stats(vae, dev)
    log(a.work, "vae latent stats folded: mean %s std %s" % (np.round(m.cpu().numpy(), 2).tolist(),
                                                             np.round(s.cpu().numpy(), 2).tolist()))
    save_ckpt(os.path.join(a.work, "vae_final.pt"), {"model": vae.state_dict()})
    scale = [x.to(dev) for x in latent_scale()]
    rng = np.random.default_rng(2000)
    buckets = {}
    t0 = time.time()
    n = 0
    with torch.no_grad():
        while n < HP["n_latents"]:
            clips = batch_clips(rng, 8, frames=DIT_FRAMES, allow_t1=True, sizes=DIT_SIZES_WH)
            x = to_tensor([c["video"] for c in clips], dev)
            z = vae.encode(x, scale, chunked=False).cpu().half()
            key = tuple(z.shape[1:])
            b = buckets.setdefault(key, {"z": [], "cap": []})
            b["z"].append(z)
            b["cap"] += [c["caption"] for c in clips]
            n += len(clips)
            if n % 80 == 0:
                log(a.work, "latents %d (%.1fs)" % (n, time.time() - t0))
    data = [{"z": torch.cat(b["z"]), "cap": b["cap"]} for b in buckets.values()]
    allz = torch.cat([d["z"].float().flatten(2).transpose(1, 2).reshape(-1, 16) for d in data])
    log(a.work, "latents done: %d clips, %d buckets, per-channel mean %s std %s" % (
        n, len(data), np.round(allz.mean(0).numpy(), 2).tolist(), np.round(allz.std(0).numpy(), 2).tolist()))
    torch.save(data, out)
    return data


@torch.no_grad()
def make_focus_latents(a, dev):
    """Extra latents of the simplest scenes that carry a direction: one object
    moving in one of the 8 directions on a solid background (held-out triples
    still excluded by the generator). The DiT phase draws from them with
    probability HP["focus_p"]: in the general mix only ~1 clip in 5 is such a
    scene, and the DiT had learnt colours but ignored direction words."""
    out = os.path.join(a.work, "latents_focus.pt")
    if os.path.exists(out):
        return torch.load(out)
    vae = WanVAE_(**CFG["vae"]).to(dev).eval()
    vae.load_state_dict(torch.load(os.path.join(a.work, "vae_final.pt"), map_location=dev)["model"])
    scale = [x.to(dev) for x in latent_scale()]
    moving = [m for m in gen.MOTIONS if m.startswith("moves ")]
    rng = np.random.default_rng(2500)
    buckets = {}
    n = 0
    while n < HP["n_focus"]:
        wh = DIT_SIZES_WH[rng.integers(len(DIT_SIZES_WH))]
        clips = [gen.make_clip(int(rng.integers(1 << 31)), size_wh=wh, frames=DIT_FRAMES, n_objects=1,
                               bg_weights=[1, 0, 0, 0, 0], motions=moving) for _ in range(8)]
        z = vae.encode(to_tensor([c["video"] for c in clips], dev), scale, chunked=False).cpu().half()
        b = buckets.setdefault(tuple(z.shape[1:]), {"z": [], "cap": []})
        b["z"].append(z)
        b["cap"] += [c["caption"] for c in clips]
        n += len(clips)
    data = [{"z": torch.cat(b["z"]), "cap": b["cap"]} for b in buckets.values()]
    log(a.work, "focus latents: %d clips, %d buckets" % (n, len(data)))
    torch.save(data, out)
    return data


# ------------------------------------------------------------------ DiT + T5
def dit_arch(ck=None):
    """The DiT constructor arguments: CFG["dit"] with the HP sizes, or those a
    checkpoint was trained with (stored in it)."""
    if ck is not None and "arch" in ck:
        return dict(ck["arch"])
    return dict(CFG["dit"], dim=HP["dit_dim"], num_layers=HP["dit_layers"], ffn_dim=HP["dit_ffn"])


def build_text_dit(vocab, dev, arch=None):
    c5 = dict(CFG["t5"], vocab=vocab)
    t5 = T5Encoder(**c5).to(dev)
    dit = WanModel(**(arch or dit_arch())).to(dev)
    dit.freqs = dit.freqs.to(dev)
    return t5, dit


SWAP_H = {"left": "right", "right": "left"}
SWAP_V = {"up": "down", "down": "up"}


def flip_caption(cap, swap):
    return " ".join(swap.get(w, w) for w in cap.split(" "))


def augment(x0, caps, rng):
    """Random horizontal / vertical flips of the latent with the caption's
    directions swapped (the VAE is nearly flip-equivariant): 4x the data.
    Pans flip too (a pan left mirrored is a pan right)."""
    if rng.random() < 0.5:
        x0 = x0.flip(-1)
        caps = [flip_caption(c, SWAP_H) for c in caps]
    if rng.random() < 0.5:
        x0 = x0.flip(-2)
        caps = [flip_caption(c, SWAP_V) for c in caps]
    return x0, caps


def init_dit(dit):
    # zero the output head so training starts from v = 0 (stable start)
    torch.nn.init.zeros_(dit.head.head.weight)
    torch.nn.init.zeros_(dit.head.head.bias)


def text_context(t5, ids, mask):
    # the pipeline keeps the first n_real rows and zero-pads to text_len
    h = t5(ids, mask)
    return h * mask.unsqueeze(-1).to(h.dtype)


def encode_text(t5, tk, texts, dev):
    ids, mask = tk(texts)
    return text_context(t5, ids.to(dev), mask.to(dev))


def train_dit(a, dev):
    data = make_latents(a, dev)
    tk = tok.Tokenizer(os.path.join(a.work, "tokenizer", "spiece.model"), CFG["dit"]["text_len"])
    vocab = tk.sp.get_piece_size()
    torch.manual_seed(3)
    ck = os.path.join(a.work, "ckpt_dit.pt")
    arch = dit_arch(torch.load(ck, map_location="cpu") if os.path.exists(ck) else None)
    t5, dit = build_text_dit(vocab, dev, arch)
    init_dit(dit)
    for blk in dit.blocks:
        blk.self_attn.fast_rope = True
    params = list(dit.parameters()) + list(t5.parameters())
    opt = torch.optim.AdamW(params, lr=HP["dit_lr"], weight_decay=0.01, betas=(0.9, 0.99))
    ema = [p.detach().clone() for p in params]
    step = 0
    if os.path.exists(ck):
        s = torch.load(ck, map_location=dev)
        dit.load_state_dict(s["dit"])
        t5.load_state_dict(s["t5"])
        opt.load_state_dict(s["opt"])
        ema = [e.to(dev) for e in s["ema"]]
        step = s["step"]
    rng = np.random.default_rng(3000 + step)
    torch.manual_seed(3 + step)
    focus = make_focus_latents(a, dev) if HP["focus_p"] > 0 else None
    sizes = np.array([d["z"].shape[0] for d in data], np.float64)
    n = HP["dit_steps"]
    shift = CFG["train_shift"]
    t0 = time.time()
    acc = []
    while step < min(n, HP["dit_stop"] or n):
        lr = HP["dit_lr"] * min(1.0, (step + 1) / HP["warmup"]) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / n)))
        for g in opt.param_groups:
            g["lr"] = lr
        if focus is not None and rng.random() < HP["focus_p"]:
            d = focus[rng.integers(len(focus))]
        else:
            d = data[rng.choice(len(data), p=sizes / sizes.sum())]
        idx = rng.choice(d["z"].shape[0], size=HP["dit_batch"], replace=d["z"].shape[0] < HP["dit_batch"])
        # no flips: a spatially flipped latent is not the latent of the
        # flipped video (the encoder's kernels are not symmetric)
        x0, caps = d["z"][idx].float(), [d["cap"][i] for i in idx]
        x0 = x0.to(dev)
        caps = [c if rng.random() >= CFG["cfg_drop"] else "" for c in caps]
        s, noise, xt = flow_noising(x0, shift)
        ctx = encode_text(t5, tk, caps, dev)
        v = dit(xt, s * 1000.0, ctx)
        loss = F.mse_loss(v, noise - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        ema_update(ema, params, step, HP["ema"])
        acc.append([loss.item(), gn.item()])
        if step % 25 == 0 or step == n:
            m = np.mean(acc, 0)
            acc = []
            log(a.work, "dit step %d loss %.4f gnorm %.2f lr %.2e %.2fs/it" % (step, m[0], m[1], lr, (time.time() - t0) / 25))
            t0 = time.time()
        if step % 50 == 0 or step == n or step == HP["dit_stop"]:
            save_ckpt(ck, {"dit": dit.state_dict(), "t5": t5.state_dict(), "opt": opt.state_dict(),
                           "ema": ema, "step": step, "vocab": vocab, "arch": arch})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--phase", default="all", choices=["all", "tok", "vae", "latents", "dit", "vaedec", "vaehead"])
    p.add_argument("--work", default=os.path.join(HERE, "work"))
    p.add_argument("--threads", type=int, default=1)  # >1 thrashes on a shared machine
    p.add_argument("--set", action="append", default=[], help="override HP, e.g. --set dit_steps=100")
    a = p.parse_args()
    for kv in a.set:
        k, v = kv.split("=")
        HP[k] = type(HP[k])(float(v)) if not isinstance(HP[k], int) else int(v)
    os.makedirs(a.work, exist_ok=True)
    torch.set_num_threads(a.threads)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    log(a.work, "device %s HP %s" % (dev, json.dumps(HP)))
    if a.phase in ("all", "tok") and not os.path.exists(os.path.join(a.work, "tokenizer", "spiece.model")):
        tok.train(os.path.join(a.work, "tokenizer"))
    if a.phase in ("all", "vae"):
        train_vae(a, dev)
    if a.phase in ("all", "latents"):
        make_latents(a, dev)
    if a.phase in ("all", "dit"):
        train_dit(a, dev)
    if a.phase in ("all", "vaedec"):
        train_vae_decoder(a, dev)
    if a.phase in ("all", "vaehead"):
        refit_vae_head(a, dev)


if __name__ == "__main__":
    main()
