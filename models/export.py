"""Export the trained model to vdit's bundled layout (fp16 safetensors).

usage: /usr/bin/python3 models/export.py [--work models/work] [--out models/default]
"""
import argparse
import json
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from wan import st  # noqa: E402
import train  # noqa: E402

DEFAULTS = {"width": 64, "height": 64, "frames": 9, "fps": 8, "steps": 20, "guidance": 2.0,
            "shift": 3.0, "sampler": "unipc", "negative_prompt": ""}


def half(sd):
    return {k: v.detach().cpu().to(torch.float16).contiguous() for k, v in sd.items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", default=os.path.join(HERE, "work"))
    p.add_argument("--out", default=os.path.join(HERE, "default"))
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--context", choices=["noised", "clean"], default=None,
                   help="how the engine holds given frames (default: clean when the DiT was "
                        "trained with clean context frames, train_gpu.py ctx_p > 0)")
    p.add_argument("--loop", choices=["bridge", "circular"], default=None,
                   help="how the engine makes loops (default: circular when the DiT was trained "
                        "on periodic clips as the circular sampler shows them, train_gpu.py "
                        "periodic_p > 0)")
    a = p.parse_args()
    os.makedirs(os.path.join(a.out, "tokenizer"), exist_ok=True)
    # latent stats folded in; decoder fine-tuned on 9-frame clips when that phase ran
    # and the last conv refit in closed form (train.py --phase vaehead)
    for name in ("vae_final_head.pt", "vae_final_dec.pt", "vae_final.pt"):
        vp = os.path.join(a.work, name)
        if os.path.exists(vp):
            break
    vae = torch.load(vp, map_location="cpu")
    print("VAE from", name)
    dck = torch.load(os.path.join(a.work, "ckpt_dit.pt"), map_location="cpu")
    arch = train.dit_arch(dck)
    t5, dit = train.build_text_dit(dck["vocab"], torch.device("cpu"), arch)
    dit.load_state_dict(dck["dit"])
    t5.load_state_dict(dck["t5"])
    if not a.no_ema:
        params = list(dit.parameters()) + list(t5.parameters())
        with torch.no_grad():
            for p_, e in zip(params, dck["ema"]):
                p_.copy_(e)
    meta = {"format": "pt", "source": "vdit models/train.py step %d" % dck["step"]}
    st.save(os.path.join(a.out, "diffusion_pytorch_model.safetensors"), half(dit.state_dict()), meta)
    st.save(os.path.join(a.out, "Wan2.1_VAE.safetensors"), half(vae["model"]), meta)
    st.save(os.path.join(a.out, "models_t5_umt5-xxl-enc.safetensors"), half(t5.state_dict()), meta)
    shutil.copy(os.path.join(a.work, "tokenizer", "spiece.model"), os.path.join(a.out, "tokenizer", "spiece.model"))
    cfg = dict(DEFAULTS)
    cfg["text_len"] = train.CFG["dit"]["text_len"]
    cfg["num_heads"] = arch["num_heads"]
    context = a.context or ("clean" if dck.get("clean_context") else "noised")
    if context == "clean":
        cfg["context"] = "clean"
    if (a.loop or ("circular" if dck.get("circular_loop") else "bridge")) == "circular":
        cfg["loop"] = "circular"
    # constructor arguments for the PyTorch side (models/sample.py); the C side reads shapes from the weights
    cfg["x_arch"] = {"dit": arch, "vae": train.CFG["vae"], "t5": dict(train.CFG["t5"], vocab=dck["vocab"])}
    with open(os.path.join(a.out, "vdit.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    tot = sum(os.path.getsize(os.path.join(r, x)) for r, _, fs in os.walk(a.out) for x in fs)
    print("exported step %d to %s (%.1f MB)" % (dck["step"], a.out, tot / 1e6))


if __name__ == "__main__":
    main()
