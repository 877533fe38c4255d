#!/usr/bin/env python3
"""Makes tests/conformance/wan2.1/sampler_fewstep: the few-step samplers of the
distilled Wan2.1 models, run by their own unmodified public code on a toy model.

    python3 tests/tools/gen_fewstep_vectors.py CAUSVID_ROOT LIGHTX2V_ROOT OUT_DIR

CAUSVID_ROOT: a checkout of github.com/tianweiy/CausVid (commit
ca2115039172dfa3a02deee1534408a09680f29f); the files run are
causvid/models/wan/{bidirectional_inference,wan_wrapper,flow_match}.py,
causvid/models/model_interface.py and causvid/scheduler.py.
LIGHTX2V_ROOT: a checkout of github.com/ModelTC/lightx2v (commit
0591c35e7b6f9cbb02dfb12f80acae7a81e6ba3e); the files run are
lightx2v/models/schedulers/{scheduler,wan/scheduler,wan/step_distill/scheduler}.py
and lightx2v/utils/envs.py. Only those files need to be there.

Needs torch (made with Debian's 1.13) and numpy. Nothing in those files is
changed. What is replaced, around them: the modules they import that hold
weights (the Wan DiT, umT5, the VAE, the tokenizer) by stubs, the DiT by the
toy model below, and Tensor.cuda (the warped list is moved to the GPU) by the
identity; torch.randn_like is wrapped to record the fresh noise each step
draws. The lightx2v scheduler is driven as its runner drives it (step_pre,
the model's output into noise_pred, step_post) with its device set to CPU.

Toy model: v = 0.5 x + c, c = float32(0.1 sin(t / 100)), t the timestep the
model receives as a float64, x and v float32, as the UniPC / DPM++ vectors.
"""
import importlib.util
import json
import math
import os
import sys
import types

import numpy as np
import torch

SHAPE = [1, 3, 16, 4, 6]  # CausVid's [B, F, C, H, W]
SEED = 2929


def toy(x, t):
    c = np.float32(0.1 * math.sin(float(t) / 100.0))
    return 0.5 * x + torch.tensor(c, dtype=torch.float32)


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def package(name):
    mod = types.ModuleType(name)
    mod.__path__ = []
    sys.modules[name] = mod
    return mod


class Recorder:
    def __init__(self):
        self.inputs, self.outputs, self.ts, self.noise = [], [], [], []


def causvid_case(root, rec, step_list, warp):
    """CausVid's BidirectionalInferencePipeline.inference on the toy model."""
    for p in ["causvid", "causvid.models", "causvid.models.wan", "causvid.models.wan.wan_base",
              "causvid.models.wan.wan_base.modules"]:
        if p not in sys.modules:
            package(p)
    load("causvid.scheduler", os.path.join(root, "causvid/scheduler.py"))
    load("causvid.models.model_interface", os.path.join(root, "causvid/models/model_interface.py"))
    load("causvid.models.wan.flow_match", os.path.join(root, "causvid/models/wan/flow_match.py"))

    class ToyWan(torch.nn.Module):  # stands for WanModel: [B, C, F, H, W] in and out
        @staticmethod
        def from_pretrained(path):
            return ToyWan()

        def forward(self, x, t, context, seq_len, **kw):
            xf = x.permute(0, 2, 1, 3, 4)  # back to the pipeline's [B, F, C, H, W]
            assert t.numel() == 1
            tv = float(t.double().item())
            out = toy(xf, tv)
            rec.inputs.append(xf.clone())
            rec.outputs.append(out.clone())
            rec.ts.append(tv)
            return out.permute(0, 2, 1, 3, 4)

    stubs = {
        "causvid.models.wan.wan_base.modules.tokenizers": {"HuggingfaceTokenizer": object},
        "causvid.models.wan.wan_base.modules.model": {"WanModel": ToyWan},
        "causvid.models.wan.wan_base.modules.vae": {"_video_vae": None},
        "causvid.models.wan.wan_base.modules.t5": {"umt5_xxl": None},
        "causvid.models.wan.causal_model": {"CausalWanModel": ToyWan},
    }
    for name, attrs in stubs.items():
        mod = types.ModuleType(name)
        for k, v in attrs.items():
            setattr(mod, k, v)
        sys.modules[name] = mod
    ww = load("causvid.models.wan.wan_wrapper", os.path.join(root, "causvid/models/wan/wan_wrapper.py"))

    class Text(torch.nn.Module):
        def forward(self, text_prompts):
            return {"prompt_embeds": torch.zeros(1, 4, 8)}

    final = {}

    class Vae(torch.nn.Module):
        def decode_to_pixel(self, latent):
            final["x0"] = latent.clone()
            return latent

    models = sys.modules["causvid.models"]
    models.get_diffusion_wrapper = lambda model_name: ww.WanDiffusionWrapper
    models.get_text_encoder_wrapper = lambda model_name: Text
    models.get_vae_wrapper = lambda model_name: Vae
    bi = load("causvid.models.wan.bidirectional_inference",
              os.path.join(root, "causvid/models/wan/bidirectional_inference.py"))

    class Args:
        model_name = "wan"
        denoising_step_list = step_list
        warp_denoising_step = warp

    cuda, randn_like = torch.Tensor.cuda, torch.randn_like
    torch.Tensor.cuda = lambda self, *a, **k: self

    def randn_rec(*a, **k):
        r = randn_like(*a, **k)
        rec.noise.append(r.clone())
        return r

    torch.randn_like = randn_rec
    try:
        pipe = bi.BidirectionalInferencePipeline(Args(), device="cpu")
        sch = pipe.scheduler
        noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(SEED))
        torch.manual_seed(SEED + 1)
        with torch.no_grad():
            pipe.inference(noise=noise, text_prompts=["toy"])
    finally:
        torch.Tensor.cuda, torch.randn_like = cuda, randn_like
    # the level each listed timestep is looked up at (the wrapper's argmin)
    sig = []
    for t in rec.ts:
        j = int(torch.argmin((sch.timesteps.double() - t).abs()))
        sig.append(float(sch.sigmas[j]))
    return noise, final["x0"], sig + [0.0], float(sch.shift)


def lightx2v_case(root, rec, step_list, shift):
    """lightx2v's WanStepDistillScheduler, driven as its runner drives it."""
    for p in ["lightx2v", "lightx2v.utils", "lightx2v.models", "lightx2v.models.schedulers",
              "lightx2v.models.schedulers.wan", "lightx2v.models.schedulers.wan.step_distill"]:
        package(p)
    load("lightx2v.utils.envs", os.path.join(root, "lightx2v/utils/envs.py"))
    load("lightx2v.models.schedulers.scheduler", os.path.join(root, "lightx2v/models/schedulers/scheduler.py"))
    load("lightx2v.models.schedulers.wan.scheduler",
         os.path.join(root, "lightx2v/models/schedulers/wan/scheduler.py"))
    sd = load("lightx2v.models.schedulers.wan.step_distill.scheduler",
              os.path.join(root, "lightx2v/models/schedulers/wan/step_distill/scheduler.py"))

    class Config(dict):
        __getattr__ = dict.__getitem__

    # its t2v config (configs/distill/wan_t2v_distill_4step_cfg.json), a toy shape:
    # target_shape is [C, F, H, W]
    cfg = Config(infer_steps=len(step_list), target_video_length=9, sample_shift=shift,
                 denoising_step_list=step_list, seed=SEED, task="t2v",
                 target_shape=[SHAPE[2], SHAPE[1], SHAPE[3], SHAPE[4]], patch_size=[1, 2, 2])
    sch = sd.WanStepDistillScheduler(cfg)
    sch.device = torch.device("cpu")
    randn_like = torch.randn_like

    def randn_rec(*a, **k):
        r = randn_like(*a, **k)
        rec.noise.append(r.clone())
        return r

    torch.randn_like = randn_rec
    torch.manual_seed(SEED + 1)
    try:
        sch.prepare(None)
        x_t = sch.latents.clone()
        for i in range(sch.infer_steps):
            sch.step_pre(step_index=i)
            t = float(sch.timesteps[i].double())
            out = toy(sch.latents, t)
            rec.inputs.append(sch.latents.clone())
            rec.outputs.append(out.clone())
            rec.ts.append(t)
            sch.noise_pred = out
            sch.step_post()
    finally:
        torch.randn_like = randn_like
    sig = [float(s) for s in sch.sigmas] + [0.0]
    return x_t, sch.latents.clone(), sig, shift


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, (arr, dt) in tensors.items():
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    causvid, lightx2v, out = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    cases = [
        ("causvid_3", "causvid", [1000, 757, 522], False,
         "CausVid configs/wan_bidirectional_dmd.yaml: its bidirectional 3-step recipe "
         "(shift 8 is fixed in WanDiffusionWrapper)"),
        ("causvid_warp4", "causvid", [1000, 750, 500, 250], True,
         "CausVid's pipeline with warp_denoising_step (configs/wan_causal_dmd_warp_4step_cfg2.yaml's "
         "list without its trailing 0), shift 8"),
        ("lightx2v_4", "lightx2v", [1000, 750, 500, 250], True,
         "lightx2v configs/distill/wan_t2v_distill_4step_cfg.json: WanStepDistillScheduler, "
         "sample_shift 5 (always warped)"),
    ]
    tensors, cfg_cases, io = {}, [], {}
    for tag, src, lst, warp, note in cases:
        rec = Recorder()
        if src == "causvid":
            x_t, x0, sig, shift = causvid_case(causvid, rec, lst, warp)
        else:
            x_t, x0, sig, shift = lightx2v_case(lightx2v, rec, lst, 5.0)
        n = len(lst)
        assert len(rec.inputs) == n and len(rec.noise) == n - 1, (tag, len(rec.inputs), len(rec.noise))
        samples = torch.stack(rec.inputs + [x0]).numpy().astype(np.float32)
        t = {
            f"{tag}/x_T": (x_t.numpy().astype(np.float32), "F32"),
            f"{tag}/timesteps": (np.array(rec.ts, dtype=np.float32), "F32"),
            f"{tag}/sigmas": (np.array(sig, dtype=np.float32), "F32"),
            f"{tag}/noise": (torch.stack(rec.noise).numpy().astype(np.float32), "F32"),
            f"{tag}/model_outputs": (torch.stack(rec.outputs).numpy().astype(np.float32), "F32"),
            f"{tag}/samples": (samples, "F32"),
        }
        assert np.array_equal(samples[0], t[f"{tag}/x_T"][0])
        tensors.update(t)
        for k, (a, dt) in t.items():
            io[k] = {"shape": list(a.shape), "dtype": "float32"}
        cfg_cases.append({"tag": tag, "source": src, "timesteps": lst, "warp": warp, "shift": shift,
                          "note": note, "model_timesteps": rec.ts})
    write_safetensors(os.path.join(out, "io.safetensors"), tensors)
    cfg = {
        "vector": "sampler_fewstep",
        "reference": "few-step DMD samplers: CausVid BidirectionalInferencePipeline (FlowMatchScheduler), lightx2v WanStepDistillScheduler",
        "sources": {
            "causvid": "github.com/tianweiy/CausVid ca2115039172dfa3a02deee1534408a09680f29f",
            "lightx2v": "github.com/ModelTC/lightx2v 0591c35e7b6f9cbb02dfb12f80acae7a81e6ba3e",
        },
        "generator": "tests/tools/gen_fewstep_vectors.py",
        "torch": torch.__version__,
        "toy_model": "model_output = 0.5*x + c, c = float32(0.1*sin(t/100)), t the timestep the model receives (float64); tensor math in float32",
        "seeds": {"x_T": SEED, "torch.manual_seed (fresh noise)": SEED + 1},
        "cases": cfg_cases,
        "notes": [
            "samples[i] = the model's input at step i (samples[0] = x_T), samples[N] = the result (the last step's x0).",
            "noise[i] = the fresh noise step i re-noises with (torch.randn_like), N-1 of them: feed them to the stepper.",
            "sigmas[i] = the level of step i (sigmas[N] = 0); timesteps = what the model receives (float: 937.5 when warped).",
            "Layout [B, F, C, H, W] (CausVid's; lightx2v's [C, F, H, W] for its case): the toy is elementwise, any consistent order works.",
        ],
        "io": io,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
