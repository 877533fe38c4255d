"""Write models/golden/: the PyTorch reference run of the bundled model.

usage: /usr/bin/python3 models/make_golden.py [--model models/default] [--out models/golden]
The C test runs the same prompt, stored noise and step count through the
engine and compares with these tensors (see models/README.md).
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from wan import st  # noqa: E402
import sample  # noqa: E402

PROMPT = "a red circle moves right on a blue background"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=os.path.join(HERE, "default"))
    p.add_argument("--out", default=os.path.join(HERE, "golden"))
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    torch.set_num_threads(1)
    m = sample.load_bundle(a.model)
    cfg = m["cfg"]
    rec = {}
    sample.generate(m, PROMPT, seed=a.seed, steps=a.steps, record=rec)
    rec["frames"] = torch.from_numpy(sample.to_uint8(rec["decoded"]))
    os.makedirs(a.out, exist_ok=True)
    st.save(os.path.join(a.out, "golden.safetensors"), {k: v.contiguous() for k, v in rec.items()})
    info = {"prompt": PROMPT, "negative_prompt": cfg["negative_prompt"], "seed_note": "noise is stored; use it",
            "width": cfg["width"], "height": cfg["height"], "frames": cfg["frames"], "steps": a.steps,
            "guidance": cfg["guidance"], "shift": cfg["shift"], "sampler": cfg["sampler"],
            "text_len": cfg["text_len"],
            "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in rec.items()}}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print("wrote", a.out, {k: tuple(v.shape) for k, v in rec.items()})


if __name__ == "__main__":
    main()
