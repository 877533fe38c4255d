#!/usr/bin/env python3
"""Long-stream soak of the FFmpeg `vdit` filter (issue 26).

    scripts/soak.py --ffmpeg build/ffmpeg-7.1/prefix/bin/ffmpeg [--frames 10000]

Streams FRAMES frames of testsrc2 at an odd size (67x45, 8 fps) through
`vdit` on the bundled model (or --model), the prompt changed every 500
frames through sendcmd, and checks what a server needs from a filter that
runs for days:

- frames in = frames out, timestamps strictly increasing and exactly the
  input's (framecrc of the output: one line per frame with its pts), so no
  frame was dropped, duplicated or reordered;
- peak RSS (VmHWM of the ffmpeg process, sampled while it runs) once 1,000
  frames are out, and at the end: the end must be within 2% of it (memory
  flat in the stream's length).

Prints one line per check and a summary line with the figures; exits 1 when a
check fails. Only the Python standard library.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time


def hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ffmpeg", required=True)
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--model", default="")
    ap.add_argument("--size", default="67x45")
    ap.add_argument("--rate", type=int, default=8)
    ap.add_argument("--every", type=int, default=500, help="frames between prompt changes")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    n, rate = args.frames, args.rate
    work = tempfile.mkdtemp(prefix="vdit-soak.")
    cmds = os.path.join(work, "cmds.txt")
    prompts = ["a red ball bounces on a wooden floor", "a watercolor painting of a city",
               "snow falls on a quiet street at night", "a bright cartoon of a cat"]
    with open(cmds, "w") as f:
        for i, k in enumerate(range(args.every, n, args.every)):
            # at frame k: a new prompt, from the next window on
            f.write(f"{k / rate:.6f} vdit prompt '{prompts[i % len(prompts)]}';\n")
    opts = ["prompt='a red ball'", "strength=0.5", "seed=1"]
    if args.model:
        opts.append(f"model={args.model}")
    vf = f"sendcmd=f={cmds},vdit=" + ":".join(opts)
    crc = os.path.join(work, "out.crc")
    cmd = [args.ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y",
           "-f", "lavfi", "-i", f"testsrc2=s={args.size}:r={rate}",
           "-frames:v", str(n), "-vf", vf]
    if args.threads:
        cmd += ["-filter_threads", "1"]
    cmd += ["-f", "framecrc", crc, "-progress", "pipe:1", "-stats_period", "0.5"]
    print("#", " ".join(cmd), flush=True)

    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = []
    threading.Thread(target=lambda: err.extend(p.stderr), daemon=True).start()
    hwm_1k = last_hwm = 0
    got_1k = False
    frames_seen = 0
    for line in p.stdout:
        if line.startswith("frame="):
            frames_seen = int(line.split("=")[1])
            h = hwm_kb(p.pid)
            if not got_1k:
                hwm_1k = h  # the peak reached by the time 1,000 frames are out
                got_1k = frames_seen >= min(1000, n)
            last_hwm = h
            if frames_seen and frames_seen % 1000 < 20:
                print(f"# {frames_seen} frames, {time.time() - t0:.0f} s, peak RSS {h} kB",
                      flush=True)
    hwm_end = hwm_kb(p.pid) or last_hwm
    rc = p.wait()
    secs = time.time() - t0
    fails = 0

    def check(ok, what):
        nonlocal fails
        print(("ok: " if ok else "FAILED: ") + what, flush=True)
        fails += not ok

    check(rc == 0, f"ffmpeg exit status {rc}" + ("" if rc == 0 else ": " + "".join(err)[-500:]))
    pts = []
    if os.path.exists(crc):
        for line in open(crc):
            if line.startswith("#") or not line.strip():
                continue
            pts.append(int(line.split(",")[2]))
    check(len(pts) == n, f"frames in {n} = frames out {len(pts)}")
    check(all(b > a for a, b in zip(pts, pts[1:])), "timestamps strictly increasing")
    check(pts == list(range(n)), "every output pts is its input's (none dropped or duplicated)")
    growth = (hwm_end - hwm_1k) / hwm_1k * 100 if hwm_1k else 0
    check(hwm_1k > 0 and growth <= 2.0,
          f"peak RSS {hwm_1k} kB at frame {min(1000, n)}, {hwm_end} kB at frame {n} "
          f"({growth:+.2f}%)")
    print(f"soak ffmpeg: {n} frames in {secs:.0f} s ({n / secs:.1f} fps), peak RSS "
          f"{hwm_1k} kB at frame {min(1000, n)} -> {hwm_end} kB at the end ({growth:+.2f}%), "
          f"{len(range(args.every, n, args.every))} prompt changes, {fails} failed", flush=True)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
