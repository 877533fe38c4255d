"""Train the bundled DiT (+ umT5) and fine-tune the VAE decoder on one CUDA GPU
within a wall-clock budget, from an existing tokenizer and VAE.

usage: python3 models/train_gpu.py --work W --budget SECONDS [--set NAME=VALUE ...]

W holds tokenizer/spiece.model and vae_final_dec.pt (train.py's outputs; the
VAE encoder stays frozen, so the latent space is the one the C engine's VAE
encodes into); with --vae FOLDER the VAE comes from an exported model
instead (e.g. models/default: a fresh DiT on the shipped latent space). The
script

1. draws a clip pool with the generator on every CPU core: general clips
   (1, 9 or 17 frames, the DiT sizes), focus clips (one object moving in
   one of the 8 directions on a solid background; held-out triples excluded
   as in train.py) and, with HP n_periodic, periodic clips (two periods of
   8, 12 or 16 frames; objects cross the frame once per period and wrap
   around its edges);
2. encodes them once on the GPU (latents stay on the GPU, captions are
   tokenised once; with HP back_enc, also each clip's last latent frame as
   the engine encodes a held chunk when it extends backward, after copies
   of the chunk's first frame);
3. trains a fresh DiT + umT5 by flow matching exactly as train.py's dit
   phase (same noise schedule, CFG drop, EMA), with a cosine learning rate
   over the wall-clock budget rather than a step count, and fine-tunes the
   decoder (conv2 + decoder) on the same clips' latents plus latent noise,
   one decoder step every HP dec_every DiT steps. With HP ctx_p, some
   batches have latent frames given clean (context_frames; with back_enc a
   single given last frame is the backward-encoded one); with HP
   periodic_p, some batches are windows of periodic clips exactly as the
   engine's circular loop sampler shows them to the DiT;
4. writes ckpt_dit.pt (train.py's format, so export.py reads it) and
   vae_final_dec.pt into W every HP save_every seconds and at the end.

Bit-exact reproduction is not a goal here (GPU kernels, time-based schedule);
the seeds still fix the data.
"""
import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train  # noqa: E402
from data import gen  # noqa: E402
from wan import st  # noqa: E402
from wan.vae import WanVAE_, latent_scale  # noqa: E402
import tokenizer as tok  # noqa: E402

G = {
    "n_general": 80000, "n_focus": 30000, "p_t1": 0.12, "p_17": 0.3, "solid": 0.4,
    "dim": 256, "layers": 8, "ffn": 768, "heads": 4,
    "batch": 256, "lr": 6e-4, "warmup": 500, "ema": 0.999, "focus_p": 0.3,
    "dec_batch": 32, "dec_lr": 3e-4, "dec_noise": 0.1, "dec_every": 2,
    "save_every": 120.0, "procs": 0, "ctx_p": 0.0,
    "n_periodic": 0, "periodic_p": 0.0, "back_enc": 0,
    "n_loopb": 0, "loopb_p": 0.0,
}
MOVING = [m for m in gen.MOTIONS if m.startswith("moves ")]


def loop_bridge_times(n):
    """Times of the engine's closing window for a loop made from an n-frame
    clip (vdit_generate: the loop is frames 1 .. n-1, the last 4 made again
    as a bridge): [frame n-5 | 4 frames going back evenly to frame 1 |
    frames 1 .. 8], 13 frames, so the bridge's steps are the clip's own."""
    a = n - 5
    return [a] + [a - (a - 1) * k / 5.0 for k in range(1, 5)] + list(range(1, 9))


def _make(job):
    seed, wh, T, focus, bgw = job
    if focus == 3:
        # a loop's closing window: T is the length of the clip the loop is
        # cut from (the loop's frame count + 1); 13 frames come out
        c = gen.make_clip(seed, size_wh=wh, frames=T, bg_weights=bgw, times=loop_bridge_times(T))
        return (wh, 13, focus), c["video"], c["caption"]
    if focus == 2:
        # two periods (and one frame) of a periodic clip: windows of it
        # starting at any of its first-period latent frames are what the
        # engine's circular loop sampler shows the DiT
        c = gen.make_clip(seed, size_wh=wh, frames=T, bg_weights=bgw, motions=MOVING, period=(T - 1) // 2)
    elif focus:
        c = gen.make_clip(seed, size_wh=wh, frames=T, n_objects=1, bg_weights=[1, 0, 0, 0, 0], motions=MOVING)
    else:
        c = gen.make_clip(seed, size_wh=wh, frames=T, bg_weights=bgw)
    return (wh, T, focus), c["video"], c["caption"]


def jobs(rng, n, focus, bgw):
    out = []
    for _ in range(n):
        wh = train.DIT_SIZES_WH[rng.integers(len(train.DIT_SIZES_WH))]
        T = 9
        if focus == 3:
            T = 1 + int(rng.choice([8, 9, 12, 16]))  # loops of 8, 9, 12, 16 frames
        elif focus == 2:
            T = 1 + 8 * int(rng.integers(2, 5))  # periods of 8, 12, 16 frames
        elif not focus:
            r = rng.random()
            T = 1 if r < G["p_t1"] else 17 if r < G["p_t1"] + G["p_17"] else 9
        out.append((int(rng.integers(1 << 31)), wh, T, focus, bgw))
    return out


def make_pool(work):
    """Clips grouped in buckets of one (size, length, focus): uint8 videos."""
    HPs = train.HP
    HPs["solid"] = G["solid"]
    bgw = train.bg_weights()
    js = jobs(np.random.default_rng(7000), G["n_general"], False, bgw) + \
        jobs(np.random.default_rng(7500), G["n_focus"], True, bgw) + \
        jobs(np.random.default_rng(7700), G["n_periodic"], 2, bgw) + \
        jobs(np.random.default_rng(7900), G["n_loopb"], 3, bgw)
    procs = G["procs"] or os.cpu_count()
    t0 = time.time()
    buckets = {}
    with mp.get_context("fork").Pool(procs) as pool:
        for key, v, cap in pool.imap(_make, js, chunksize=64):
            b = buckets.setdefault(key, {"v": [], "cap": []})
            b["v"].append(v)
            b["cap"].append(cap)
    out = []
    for key in sorted(buckets):
        b = buckets[key]
        out.append({"key": key, "v": torch.from_numpy(np.stack(b["v"])), "cap": b["cap"]})
    train.log(work, "pool: %d clips in %d buckets, %d processes, %.1fs" % (
        len(js), len(out), procs, time.time() - t0))
    return out


@torch.no_grad()
def encode_pool(pool, vae, scale, tk, dev, work):
    t0 = time.time()
    for b in pool:
        zs, zb = [], []
        T = b["v"].shape[1]
        for i in range(0, b["v"].shape[0], 256):
            x = b["v"][i:i + 256].to(dev).float().permute(0, 4, 1, 2, 3) / 127.5 - 1.0
            zs.append(vae.encode(x, scale, chunked=False))
            if G["back_enc"] and T >= 5 and b["key"][2] not in (2, 3):
                # the last latent frame as the engine encodes a held chunk
                # when it extends backward: the frames before the chunk are
                # copies of its first frame (the past is what is made)
                xb = torch.cat([x[:, :, T - 4:T - 3].expand(-1, -1, T - 4, -1, -1), x[:, :, T - 4:]], 2)
                zb.append(vae.encode(xb, scale, chunked=False)[:, :, -1:])
        b["z"] = torch.cat(zs)
        if zb:
            b["zb"] = torch.cat(zb)
        ids, mask = tk(b["cap"])
        b["ids"], b["mask"] = ids.to(dev), mask.to(dev)
        b["v"] = b["v"].to(dev)  # uint8 [N,T,H,W,3], for the decoder
    allz = torch.cat([b["z"].transpose(0, 1).flatten(1) for b in pool], 1)
    train.log(work, "latents: %.1fs, per-channel mean %s std %s" % (
        time.time() - t0, [round(float(x), 2) for x in allz.mean(1)],
        [round(float(x), 2) for x in allz.std(1)]))


def context_frames(rng, lt):
    """With probability ctx_p, which latent frames of a batch are given
    (bool [lt]): the first k (extend forward, image to video), the last k
    (extend backward) or the first and the last (bridge, loop); None: none."""
    if lt < 2 or rng.random() >= G["ctx_p"]:
        return None
    keep = np.zeros(lt, bool)
    r = rng.random()
    k = int(rng.integers(1, lt))
    if r < 0.4:
        keep[:k] = True
    elif r < 0.8:
        keep[lt - k:] = True
    else:
        keep[0] = keep[-1] = True
        if lt == 2:
            keep[-1] = False
    return keep


def save(work, dit, t5, ema, step, vocab, arch, vae):
    train.save_ckpt(os.path.join(work, "ckpt_dit.pt"), {
        "dit": dit.state_dict(), "t5": t5.state_dict(), "opt": None, "ema": [e.detach().clone() for e in ema],
        "step": step, "vocab": vocab, "arch": arch, "clean_context": G["ctx_p"] > 0,
        "circular_loop": G["periodic_p"] > 0})
    train.save_ckpt(os.path.join(work, "vae_final_dec.pt"), {"model": vae.state_dict(), "step": step})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", required=True)
    p.add_argument("--budget", type=float, required=True, help="seconds of training (after the pool)")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--init", help="continue from an exported model folder (its fp16 EMA weights and VAE)")
    p.add_argument("--vae", help="take the (frozen-encoder) VAE from an exported model folder instead of "
                   "W/vae_final_dec.pt, e.g. models/default: a fresh DiT on the shipped latent space")
    p.add_argument("--prog0", type=float, default=0.0, help="schedule position to continue from (0..1)")
    a = p.parse_args()
    for kv in a.set:
        k, v = kv.split("=")
        G[k] = type(G[k])(v) if not isinstance(G[k], float) else float(v)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    train.log(a.work, "train_gpu on %s, torch %s, G %s" % (dev, torch.__version__, json.dumps(G)))
    pool = make_pool(a.work)  # forks: before CUDA is initialised
    if dev.type == "cuda":
        train.log(a.work, "GPU: %s" % torch.cuda.get_device_name(0))
    vae = WanVAE_(**train.CFG["vae"]).to(dev)
    if a.init or a.vae:
        vae.load_state_dict({k: v.float() for k, v in st.load_torch(
            os.path.join(a.vae or a.init, "Wan2.1_VAE.safetensors")).items()})
    else:
        vae.load_state_dict(torch.load(os.path.join(a.work, "vae_final_dec.pt"), map_location=dev)["model"])
    vae.eval()
    scale = [x.to(dev) for x in latent_scale()]
    tk = tok.Tokenizer(os.path.join(a.work, "tokenizer", "spiece.model"), train.CFG["dit"]["text_len"])
    vocab = tk.sp.get_piece_size()
    encode_pool(pool, vae, scale, tk, dev, a.work)
    e_ids, e_mask = [x.to(dev) for x in tk([""])]

    general = [b for b in pool if not b["key"][2]]
    focus = [b for b in pool if b["key"][2] == 1]
    periodic = [b for b in pool if b["key"][2] == 2]
    loopb = [b for b in pool if b["key"][2] == 3]
    wl = np.array([b["z"].shape[0] for b in loopb], np.float64)
    wp = np.array([b["z"].shape[0] for b in periodic], np.float64)
    wg = np.array([b["z"].shape[0] for b in general], np.float64)
    wf = np.array([b["z"].shape[0] for b in focus], np.float64)

    torch.manual_seed(3)
    arch = dict(train.CFG["dit"], dim=G["dim"], num_layers=G["layers"], ffn_dim=G["ffn"], num_heads=G["heads"])
    t5, dit = train.build_text_dit(vocab, dev, arch)
    train.init_dit(dit)
    if a.init:
        dit.load_state_dict({k: v.float() for k, v in st.load_torch(
            os.path.join(a.init, "diffusion_pytorch_model.safetensors")).items()})
        t5.load_state_dict({k: v.float() for k, v in st.load_torch(
            os.path.join(a.init, "models_t5_umt5-xxl-enc.safetensors")).items()})
    for blk in dit.blocks:
        blk.self_attn.fast_rope = True
    params = list(dit.parameters()) + list(t5.parameters())
    kw = {"fused": True} if dev.type == "cuda" else {}
    opt = torch.optim.AdamW(params, lr=G["lr"], weight_decay=0.01, betas=(0.9, 0.99), **kw)
    ema = [p_.detach().clone() for p_ in params]
    dparams = list(vae.conv2.parameters()) + list(vae.decoder.parameters())
    dopt = torch.optim.AdamW(dparams, lr=G["dec_lr"], weight_decay=0.0, betas=(0.9, 0.99), **kw)
    std, mean = 1.0 / scale[1], scale[0]

    rng = np.random.default_rng(3000)
    shift = train.CFG["train_shift"]
    t_start = time.time()
    t_save = t_start
    t_log = t_start
    step = 0
    acc, dacc = [], []
    while True:
        prog = a.prog0 + (1.0 - a.prog0) * (time.time() - t_start) / a.budget
        if prog >= 1.0:
            break
        cosf = 0.5 * (1 + math.cos(math.pi * prog))
        lr = G["lr"] * min(1.0, (step + 1) / G["warmup"]) * (0.05 + 0.95 * cosf)
        for g in opt.param_groups:
            g["lr"] = lr
        ring = 0
        closing = False
        if loopb and rng.random() < G["loopb_p"]:
            b = loopb[rng.choice(len(loopb), p=wl / wl.sum())]
            closing = True
        elif periodic and rng.random() < G["periodic_p"]:
            b = periodic[rng.choice(len(periodic), p=wp / wp.sum())]
            ring = (b["key"][1] - 1) // 8  # latent frames per period
        elif rng.random() < G["focus_p"]:
            b = focus[rng.choice(len(focus), p=wf / wf.sum())]
        else:
            b = general[rng.choice(len(general), p=wg / wg.sum())]
        N = b["z"].shape[0]
        idx = torch.from_numpy(rng.integers(N, size=G["batch"])).to(dev)
        x0 = b["z"][idx]
        zb = b["zb"][idx] if "zb" in b else None
        if ring:
            # the circular sampler's input: [z_(r-1), z_r .. z_(r+L-1)], a
            # period of L latent frames behind the latent frame before it
            # (a 4-frame one in the single-frame slot); that first slot is
            # the last one's same noisy latent, and its velocity is dropped
            j = int(rng.integers(1, ring + 1))
            x0 = x0[:, :, j:j + ring + 1]
        ids, mask = b["ids"][idx], b["mask"][idx]
        drop = torch.from_numpy(rng.random(G["batch"]) < train.CFG["cfg_drop"]).to(dev).view(-1, 1)
        ids = torch.where(drop, e_ids, ids)
        mask = torch.where(drop, e_mask, mask)
        s, noise, xt = train.flow_noising(x0, shift)
        if closing:
            # the loop's closing bridge: the frame before it and the loop's
            # first 8 frames held, the bridge's latent frame learnt
            keep = np.array([True, False, True, True])
        else:
            keep = None if ring else context_frames(rng, x0.shape[2])
        if ring:
            xt = torch.cat([xt[:, :, ring:ring + 1], xt[:, :, 1:]], 2)
            keep = np.zeros(x0.shape[2], bool)
            keep[0] = True
        if keep is not None:
            # clean context: those latent frames enter clean (as the engine
            # holds given frames when the model says "clean_context") and
            # are left out of the loss (a ring's first slot: only the latter)
            kt = torch.from_numpy(keep).to(dev).view(1, 1, -1, 1, 1)
            if not ring:
                xt = torch.where(kt, x0, xt)
            if zb is not None and keep[-1] and keep.sum() == 1:
                # one held latent frame at the end: as the engine encodes it
                xt = torch.cat([xt[:, :, :-1], zb], 2)
        ctx = train.text_context(t5, ids, mask)
        v = dit(xt, s * 1000.0, ctx)
        if keep is None:
            loss = F.mse_loss(v, noise - x0)
        else:
            w = (~kt).to(v.dtype).expand_as(v)
            loss = ((v - (noise - x0)).pow(2) * w).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        train.ema_update(ema, params, step, G["ema"])
        acc.append(torch.stack([loss.detach(), gn.detach()]))

        if G["dec_every"] and step % G["dec_every"] == 0:
            for g in dopt.param_groups:
                g["lr"] = G["dec_lr"] * min(1.0, step / 200) * (0.1 + 0.9 * cosf)
            vb = pool[rng.integers(len(pool))]
            j = torch.from_numpy(rng.integers(vb["z"].shape[0], size=G["dec_batch"])).to(dev)
            x = vb["v"][j].float().permute(0, 4, 1, 2, 3) / 127.5 - 1.0
            mu = vb["z"][j] * std.view(1, -1, 1, 1, 1) + mean.view(1, -1, 1, 1, 1)
            mu = mu + torch.randn_like(mu) * G["dec_noise"] * std.view(1, -1, 1, 1, 1)
            dacc.append(train.decoder_step(vae, dopt, dparams, mu, x).detach())

        now = time.time()
        if now - t_log >= 20 or step == 1:
            m = torch.stack(acc).mean(0).tolist()
            dm = torch.stack(dacc).mean().item() if dacc else float("nan")
            train.log(a.work, "step %d  %.0fs  loss %.4f gnorm %.2f lr %.2e  dec l1 %.4f  %.1f it/s" % (
                step, now - t_start, m[0], m[1], lr, dm, len(acc) / max(now - t_log, 1e-9)))
            acc, dacc = [], []
            t_log = now
        if now - t_save >= G["save_every"]:
            save(a.work, dit, t5, ema, step, vocab, arch, vae)
            t_save = now
    save(a.work, dit, t5, ema, step, vocab, arch, vae)
    train.log(a.work, "done: %d DiT steps, %d decoder steps in %.0fs" % (step, step // G["dec_every"] if G["dec_every"] else 0, time.time() - t_start))


if __name__ == "__main__":
    main()
