"""Fine-tune the VAE decoder for the engine's periodic loop decode.

usage: OMP_WAIT_POLICY=passive /usr/bin/python3 models/train_loop_decoder.py \
           --init models/default --out OUT --budget SECONDS [--threads 2] [--lr 1e-4] \
           [--turns 1] [--history 3]

A loop made by the engine (vdit loop) has its wrap between frames that two
different windows decoded; a model whose vdit.json sets "loop_turns" and
"loop_history" has the loop re-encoded after its last frame and `turns`
turns of itself and its last turn's latent frames decoded after `history`
latent frames of their own cycle (core/src/pipeline/generate.c,
vd_loop_decode_periodic), so that the last frame is decoded before the
first as any two neighbours are. A decoder trained on clips that start at
frame 0 has never decoded a latent frame with other frames' latents as its
history from the start (the zero padding is in its receptive field for the
whole 9 or 13 frames it saw), and gives such a cycle wrong colours.

This script trains conv2 + the decoder, the encoder frozen (the DiT's latent
space does not move), on loops of 8, 12 and 16 frames (ping-pong or cyclic
times of the generator's clips, 32 x 32 crops): each is encoded as the
engine encodes it (its last frame, then one turn), its latent frames decoded
after 2 to 4 latent frames of their cycle, and the loop's frames are the
target at every position after the lone first frame. 40% of the steps are
plain 9- and 13-frame clips, as the decoder was trained, so that the DiT's
windows keep decoding as before. Latent noise 0.1 (as train.py's decoder
phase). OUT is INIT with the new Wan2.1_VAE.safetensors and vdit.json's
loop keys set. Fixed seeds; the step count is whatever fits the budget.
"""
import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "data"))
import gen  # noqa: E402
import train  # noqa: E402
from wan import st  # noqa: E402
from wan.vae import WanVAE_, latent_scale  # noqa: E402


def to_t(v):
    return torch.from_numpy(np.asarray(v)).float().permute(3, 0, 1, 2)[None] / 127.5 - 1


def to_u8(y):
    return ((y[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().numpy()


def cycle_index(p, hist):
    """Latent frames fed to the decoder: hist of the cycle, then the cycle."""
    return [j % p for j in range(-hist, p)]


def pingpong(n):
    h = n // 2
    return list(range(h + 1)) + list(range(h - 1, 0, -1))


def periodic_round_trip(vae, scale, loop, turns, hist):
    """The engine's periodic loop decode of loop [4p, H, W, 3] (uint8)."""
    p = len(loop) // 4
    seq = np.concatenate([loop[-1:]] + [loop] * turns)
    with torch.no_grad():
        z = vae.encode(to_t(seq), scale, chunked=False)[:, :, -p:]
        y = vae.decode(z[:, :, cycle_index(p, hist)], scale, chunked=False)
    return to_u8(y)[1 + 4 * (hist - 1):]


def seam(frames):
    f = np.asarray(frames, np.float64)
    steps = [np.abs(f[i + 1] - f[i]).mean() for i in range(len(f) - 1)]
    return np.abs(f[-1] - f[0]).mean() / max(float(np.median(steps)), 1e-6)


def evaluate(vae, scale, turns, hist):
    """Periodic decode of true 12-frame loops (seam ratio, error) and the
    plain round trip of 13-frame clips of every kind."""
    vae.eval()
    rs, es, er = [], [], []
    with torch.no_grad():
        for mot in ["moves down", "moves left", "rotates", "stays still", "grows", "bounces"]:
            for s in range(2):
                kw = dict(size_wh=(64, 64), n_objects=1, motions=[mot], bg_weights=[1, 0, 0, 0, 0])
                times = list(range(12)) if mot in ("rotates", "stays still") else pingpong(12)
                loop = gen.make_clip(100 + s, frames=16, times=times, **kw)["video"]
                out = periodic_round_trip(vae, scale, loop, turns, hist)
                rs.append(seam(out))
                es.append(np.abs(out - loop).mean())
        for s in range(12):
            v = gen.make_clip(5000 + s, size_wh=(64, 64), frames=13)["video"]
            d = to_u8(vae.decode(vae.encode(to_t(v), scale, chunked=False), scale, chunked=False))
            er.append(np.abs(d[:13] - v).mean())
    vae.train()
    return "periodic loops: seam / median %.2f (max %.2f), error %.1f | plain 13-frame round trip error %.2f" % (
        np.mean(rs), np.max(rs), np.mean(es), np.mean(er))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--init", default=os.path.join(HERE, "default"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, required=True, help="seconds of training")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--turns", type=int, default=1)
    ap.add_argument("--history", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    vae = WanVAE_(**train.CFG["vae"])
    vae.load_state_dict({k: v.float() for k, v in st.load_torch(os.path.join(a.init, "Wan2.1_VAE.safetensors")).items()})
    scale = latent_scale()
    std = (1.0 / scale[1]).view(1, -1, 1, 1, 1)
    print("before:", evaluate(vae, scale, a.turns, a.history), flush=True)
    params = list(vae.conv2.parameters()) + list(vae.decoder.parameters())
    for q in vae.parameters():
        q.requires_grad_(False)
    for q in params:
        q.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0, betas=(0.9, 0.99))
    rng = np.random.default_rng(21)
    torch.manual_seed(21)
    t0 = time.time()
    step, acc = 0, []
    while time.time() - t0 < a.budget:
        wh = train.DIT_SIZES_WH[rng.integers(3)]
        if rng.random() < 0.6:
            p = int(rng.choice([2, 3, 3, 4]))
            n, hist = 4 * p, int(rng.choice([2, 3, 4]))
            vids = []
            for _ in range(8):
                tt = pingpong(n) if rng.random() < 0.6 else list(range(n))
                k = int(rng.integers(n))
                vids.append(gen.make_clip(int(rng.integers(1 << 30)), size_wh=wh, frames=n, times=tt[k:] + tt[:k])["video"])
            loops = torch.cat([to_t(v) for v in train.random_crops(rng, [{"video": v} for v in vids], 32, n)])
            with torch.no_grad():
                mu, _ = vae.encode_raw(torch.cat([loops[:, :, -1:], loops], 2), chunked=False)
                mu = mu[:, :, 1:] + torch.randn_like(mu[:, :, 1:]) * 0.1 * std
            # every decoded frame after the lone first is a loop frame
            acc.append(train.decoder_step(vae, opt, params, mu[:, :, cycle_index(p, hist)],
                                          loops[:, :, [f % n for f in range(-4 * (hist - 1), n)]],
                                          skip=1).item())
        else:
            t = int(rng.choice([9, 13]))
            vids = [gen.make_clip(int(rng.integers(1 << 30)), size_wh=wh, frames=t)["video"] for _ in range(8)]
            target = torch.cat([to_t(v) for v in train.random_crops(rng, [{"video": v} for v in vids], 32, t)])
            with torch.no_grad():
                mu, _ = vae.encode_raw(target, chunked=False)
                mu = mu + torch.randn_like(mu) * 0.1 * std
            acc.append(train.decoder_step(vae, opt, params, mu, target).item())
        step += 1
        if step % 100 == 0:
            print("step %d %.0f s l1 %.4f" % (step, time.time() - t0, np.mean(acc[-100:])), flush=True)
    print("after %d steps (%.0f s):" % (step, time.time() - t0), evaluate(vae, scale, a.turns, a.history), flush=True)
    if os.path.abspath(a.out) != os.path.abspath(a.init):
        shutil.copytree(a.init, a.out, dirs_exist_ok=True)
    st.save(os.path.join(a.out, "Wan2.1_VAE.safetensors"),
            {k: v.detach().half().contiguous() for k, v in vae.state_dict().items()}, {"format": "pt"})
    cfg_path = os.path.join(a.out, "vdit.json")
    cfg = json.load(open(cfg_path))
    cfg["loop_turns"], cfg["loop_history"] = a.turns, a.history
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
