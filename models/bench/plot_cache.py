#!/usr/bin/env python3
"""Speed against quality of step caching, from `vdit bench cache --csv FILE`.

    python3 models/bench/plot_cache.py cache.csv docs/cache.png

Left: the bundled model, mean PSNR against the uncached clip over the share
of DiT forwards computed; right: the 1.3B DiT on random weights, latent-space
relative error (rows present in the CSV only). Needs matplotlib.
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = list(csv.DictReader(open(sys.argv[1])))
    models = [m for m in ("bundled", "random-1.3B") if any(r["model"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models):
        for mode, marker in (("easy", "o"), ("tea", "s")):
            pts = [r for r in rows if r["model"] == model and r["mode"] == mode]
            if not pts:
                continue
            x = [100 * float(r["forwards_frac"]) for r in pts]
            key = "psnr_mean" if model == "bundled" else "latent_rel_err"
            y = [float(r[key]) for r in pts]
            ax.plot(x, y, marker=marker, label={"easy": "EasyCache", "tea": "TeaCache-style"}[mode])
            for xi, yi, r in zip(x, y, pts):
                ax.annotate(r["threshold"], (xi, yi), textcoords="offset points", xytext=(4, 4),
                            fontsize=8)
        ax.set_xlabel("DiT forwards computed (% of uncached)")
        if model == "bundled":
            ax.set_ylabel("PSNR against uncached (dB, mean)")
            ax.axhline(30, color="grey", lw=0.8, ls="--")
            ax.set_title("bundled model, defaults, 50 steps")
        else:
            ax.set_ylabel("latent relative error (L2)")
            ax.set_title("Wan2.1-1.3B DiT, random weights")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
