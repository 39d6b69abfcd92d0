#!/usr/bin/env python3
"""Rays per second of the render kernel on the reference scene (the Cornell box with a
100k-triangle torus knot, 1920x1080), per backend, side by side in one run: primary rays alone
(max_depth 0: camera rays only) and whole paths (max_depth 8: camera, bounce and shadow rays).
The secondary rate is the secondary rays over the extra time the whole paths took. Each figure
is `cpn-agent render --reference --backend B --json` (render_s: the passes only, without
opening the device or compiling its kernel); the median of --reps runs.

Usage: bench/render_devices.py [--agent build/bin/cpn-agent] [--spp 4] [--reps 3]
                               [--backends cpu,opencl,cuda] [--markdown FILE]
A backend this node cannot reach is listed with the reason and skipped.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile


def run(agent, backend, spp, depth, out):
    cmd = [agent, "render", "--reference", "--backend", backend, "--spp", str(spp), "--max-depth", str(depth),
           "--json", "-q", "-o", out]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None, (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
    return json.loads(p.stdout[p.stdout.index("{"):]), None


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin", "cpn-agent"))
    ap.add_argument("--spp", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--backends", default="cpu,opencl,cuda")
    ap.add_argument("--markdown")
    a = ap.parse_args()
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "frame.pfm")
        for b in a.backends.split(","):
            prim, full, err = [], [], None
            for _ in range(a.reps):
                p, err = run(a.agent, b, a.spp, 0, out)
                if p is None:
                    break
                f, err = run(a.agent, b, a.spp, 8, out)
                if f is None:
                    break
                prim.append(p)
                full.append(f)
            if err:
                skipped.append((b, err))
                continue
            p_rate = statistics.median(x["primary_rays"] / x["render_s"] for x in prim)
            t_rate = statistics.median(x["rays_per_s"] for x in full)
            # secondary rays over the time the paths took beyond their camera rays
            s_rate = statistics.median(
                f["secondary_rays"] / max(1e-9, f["render_s"] - f["primary_rays"] / p_rate) for f in full)
            f0 = full[0]
            dev = ", ".join(f'{d["device_id"]} ({d["backend"]})' for d in f0["devices"])
            rows.append((b, dev, p_rate / 1e6, s_rate / 1e6, t_rate / 1e6, f0["secondary_rays"] / f0["primary_rays"],
                         statistics.median(x["render_s"] for x in full), statistics.median(x["prepare_s"] for x in full)))
    head = (f"reference scene, 1920x1080, {a.spp} spp, median of {a.reps}; {cpu_model()}, "
            f"{os.cpu_count()} logical CPUs")
    lines = [head, "",
             "| backend | device | primary Mrays/s | secondary Mrays/s | whole paths Mrays/s | secondary per primary | render s | prepare s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.2f} | {r[7]:.2f} |")
    for b, why in skipped:
        lines.append(f"| {b} | skipped: {why} | | | | | | |")
    text = "\n".join(lines)
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text + "\n")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
