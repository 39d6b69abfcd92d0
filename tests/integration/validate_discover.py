#!/usr/bin/env python3
"""Runs `cpn-agent discover --json` (and the same against every recorded sysfs fixture) and
validates each document against docs/schemas/inventory.schema.json. Also checks, for this
machine, what the foundation issue promises: the CPU is listed, and when the OpenCL plugin is
built, the PoCL device is reached through it."""
import json
import os
import subprocess
import sys
import tempfile

import jsonschema


EMPTY_CONFIG = None


def run(agent, *args):
    # An explicit, empty configuration: built-in defaults, whatever /etc holds on this machine.
    global EMPTY_CONFIG
    if EMPTY_CONFIG is None:
        fd, EMPTY_CONFIG = tempfile.mkstemp(suffix=".yaml")
        os.close(fd)
    p = subprocess.run([agent, "--config", EMPTY_CONFIG, "discover", "--json", *args],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        sys.exit(f"cpn-agent discover {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return json.loads(p.stdout)


def main():
    agent, schema_path = sys.argv[1], sys.argv[2]
    with open(schema_path) as f:
        schema = json.load(f)
    validator = jsonschema.Draft202012Validator(schema)
    jsonschema.Draft202012Validator.check_schema(schema)

    docs = {"this machine": run(agent)}
    fixtures = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "sysfs")
    for name in sorted(os.listdir(fixtures)):
        if os.path.isdir(os.path.join(fixtures, name)):
            docs[f"fixture {name}"] = run(agent, "--sysfs-root", os.path.join(fixtures, name))

    failed = 0
    for what, doc in docs.items():
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        for e in errors:
            print(f"{what}: {'/'.join(map(str, e.path))}: {e.message}")
        failed += len(errors)
        print(f"{what}: {len(doc['devices'])} devices, {len(doc['plugins'])} plugins, "
              f"{'valid' if not errors else str(len(errors)) + ' schema errors'}")

    mine = docs["this machine"]
    cpu = [d for d in mine["devices"] if d["class"] == "cpu"]
    if len(cpu) != 1 or cpu[0]["cpu"]["threads"] != os.cpu_count():
        print(f"expected one CPU device with {os.cpu_count()} threads, got {cpu}")
        failed += 1
    ocl = [p for p in mine["plugins"] if p["name"] == "opencl"]
    if ocl:
        paths = [(d["id"], r["native_name"]) for d in mine["devices"] for r in d["runtimes"] if r["backend"] == "opencl"]
        if ocl[0]["status"] != "ok" or not paths:
            print(f"OpenCL plugin present but no device reached through it: {ocl[0]}")
            failed += 1
        else:
            print(f"OpenCL (PoCL) device(s): {paths}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
