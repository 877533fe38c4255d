"""Check models/wan against the official golden vectors.

usage: /usr/bin/python3 models/wan/check_conformance.py [DIR...]
Default: every dit/vae/umt5 folder in tests/conformance/wan2.1 (the vectors
vendored in the repository).  Exit status 1 on any FAIL.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from wan import st  # noqa: E402
from wan.dit import WanModel  # noqa: E402
from wan.vae import WanVAE_  # noqa: E402
from wan.t5 import T5Encoder  # noqa: E402
from wan import sched  # noqa: E402

TOL = 1e-4
failed = []


def cmp(tag, name, got, ref):
    got = got.detach().double()
    ref = torch.as_tensor(ref).double()
    if tuple(got.shape) != tuple(ref.shape):
        print("%-10s %-24s shape %s != %s FAIL" % (tag, name, tuple(got.shape), tuple(ref.shape)))
        failed.append((tag, name))
        return
    m = (got - ref).abs().max().item()
    r = m / max(ref.abs().max().item(), 1e-30)
    ok = m <= TOL
    print("%-10s %-24s max_abs %.3g rel %.3g %s" % (tag, name, m, r, "PASS" if ok else "FAIL"))
    if not ok:
        failed.append((tag, name))


def load_folder(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    io = {k: torch.from_numpy(v) for k, v in st.load(os.path.join(d, "io.safetensors")).items()}
    w = st.load_torch(os.path.join(d, "weights.safetensors"))
    return cfg, io, {k: v.float() for k, v in w.items()}


def check_dit(d, tag):
    cfg, io, w = load_folder(d)
    c = dict(cfg["constructor"])
    if c.get("model_type") != "t2v":
        print("%-10s skipped (model_type %s)" % (tag, c.get("model_type")))
        return
    m = WanModel(**c).eval()
    m.load_state_dict(w, strict=True)
    inter = {}
    with torch.no_grad():
        out = m([io["x"]], io["t"], [io["context"]], seq_len=cfg["call"].get("seq_len"), inter=inter)[0]
    cmp(tag, "out", out, io["out"])
    for k, v in io.items():
        if k.startswith("inter/") and k[6:] in inter:
            cmp(tag, k, inter[k[6:]], v)


def check_vae(d, tag):
    cfg, io, w = load_folder(d)
    m = WanVAE_(**cfg["constructor"]).eval()
    m.load_state_dict(w, strict=True)
    scale = [io["latent_mean"], 1.0 / io["latent_std"]]
    with torch.no_grad():
        mu = m.encode(io["video"], scale)
        dec = m.decode(io["z"], scale)
        mu_f = m.encode(io["video"], scale, chunked=False)
        dec_f = m.decode(io["z"], scale, chunked=False)
    cmp(tag, "mu", mu, io["mu"])
    cmp(tag, "decoded", dec, io["decoded"])
    if "decoded_clamped" in io:
        cmp(tag, "decoded_clamped", dec.clamp(-1, 1), io["decoded_clamped"])
    cmp(tag, "mu (full-seq)", mu_f, io["mu"])
    cmp(tag, "decoded (full-seq)", dec_f, io["decoded"])


def check_umt5(d, tag):
    cfg, io, w = load_folder(d)
    m = T5Encoder(**cfg["constructor"]).eval()
    m.load_state_dict(w, strict=True)
    with torch.no_grad():
        for case in cfg["call"]["cases"]:
            n = case["name"]
            out = m(io[n + "/ids"], io[n + "/mask"])
            cmp(tag, n + "/out", out, io[n + "/out"])
        if "rel_pos_bucket" in io:
            L = (io["rel_pos_bucket"].numel() + 1) // 2
            rel = torch.arange(-(L - 1), L)
            got = m.blocks[0].pos_embedding.bucket(rel)
            ok = torch.equal(got, io["rel_pos_bucket"])
            print("%-10s %-24s %s" % (tag, "rel_pos_bucket", "PASS" if ok else "FAIL"))
            if not ok:
                failed.append((tag, "rel_pos_bucket"))


def check_sampler(d, tag):
    cfg = json.load(open(os.path.join(d, "config.json")))
    io = {k: torch.from_numpy(v) for k, v in st.load(os.path.join(d, "io.safetensors")).items()}
    if "unipc" not in json.dumps(cfg).lower():
        print("%-10s skipped (only the UniPC solver is implemented)" % tag)
        return
    cases = sorted({k.split("/")[0] for k in io if k.endswith("/timesteps")})
    for case in cases:
        sig_ref = io[case + "/sigmas"]
        n = io[case + "/timesteps"].numel()
        # the shift is recovered from the schedule: s1 = shift*s/(1+(shift-1)s) at s = sigma_max
        shift = None
        for c in cfg.get("cases", []) if isinstance(cfg.get("cases"), list) else []:
            if c.get("tag", c.get("name")) == case:
                shift = c.get("shift")
        if shift is None:
            shift = float(case.split("sh")[1])
        ts, sg = sched.unipc_schedule(n, shift)
        ok = torch.equal(ts, io[case + "/timesteps"]) and torch.equal(sg, sig_ref)
        print("%-10s %-24s %s" % (tag, case + "/schedule", "PASS" if ok else "FAIL"))
        if not ok:
            failed.append((tag, case))
        x = io["x_T"].clone()
        u = sched.FlowUniPC(sg)
        got = [x]
        for i in range(n):
            x = u.step(io[case + "/model_outputs"][i], x)
            got.append(x)
        cmp(tag, case + "/samples", torch.stack(got), io[case + "/samples"])


def main():
    torch.set_num_threads(int(os.environ.get("VDIT_THREADS", "2")))
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "conformance", "wan2.1")
    dirs = sys.argv[1:] or [os.path.join(root, x) for x in sorted(os.listdir(root))]
    for d in dirs:
        if not os.path.isfile(os.path.join(d, "config.json")):
            continue
        ref = json.load(open(os.path.join(d, "config.json"))).get("reference", "")
        tag = os.path.basename(os.path.normpath(d))
        if ref.endswith("WanModel"):
            check_dit(d, tag)
        elif ref.endswith("WanVAE_"):
            check_vae(d, tag)
        elif "T5Encoder" in ref:
            check_umt5(d, tag)
        elif "fm_solvers_unipc" in ref or "unipc" in tag:
            check_sampler(d, tag)
    print("%s" % ("ALL PASS" if not failed else "FAILED: %s" % failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
