#!/usr/bin/env python3
"""The first device `cpn-agent discover --json` reaches through a backend (a CPU device only
when there is no other one, as PoCL's for opencl), or why there is none.

Usage: bench/first_device.py AGENT BACKEND [--plugin-dir DIR]
Prints the device id (exit 0), or the reason on stderr (exit 1). Imported by
bench/infer/bench_infer.py; run by scripts/device-check.sh.
"""
import argparse
import json
import subprocess
import sys


def first_device(agent, backend, plugin_dir=None):
    """(device id, None), or (None, why)."""
    cmd = [agent, "discover", "--json"] + (["--plugin-dir", plugin_dir] if plugin_dir else [])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None, f"cpn-agent discover failed ({p.returncode}): {p.stderr.strip()[-500:]}"
    doc = json.loads(p.stdout)
    devs = [d for d in doc.get("devices", []) if any(r.get("backend") == backend for r in d.get("runtimes", []))]
    devs.sort(key=lambda d: d.get("class") == "cpu")
    if devs:
        return devs[0]["id"], None
    why = [f"{q.get('status')}: {q.get('reason', '')}".strip() for q in doc.get("plugins", []) if q.get("name") == backend]
    return None, f"no device is reachable through {backend}" + (f" ({backend} plugin {why[0]})" if why else f" (no {backend} plugin)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("agent")
    ap.add_argument("backend")
    ap.add_argument("--plugin-dir")
    a = ap.parse_args()
    dev, why = first_device(a.agent, a.backend, a.plugin_dir)
    if dev is None:
        print(why, file=sys.stderr)
        return 1
    print(dev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
