#!/usr/bin/env python3
"""Idle daemon footprint and start-to-birth latency (issue: MQTT reporting).

Starts a local mosquitto on a free loopback port and measures, in one run:
  1. start -> retained birth + inventory: a subscriber is connected first, then `cpn-agent run`
     is exec'ed; the time is from exec to the arrival of the inventory message (which follows
     the birth). Repeated N times with a fresh agent process each time.
  2. idle footprint: one agent with the default telemetry interval (10 s) runs for DURATION
     seconds; VmRSS is sampled every second from /proc/<pid>/status, and CPU is utime+stime from
     /proc/<pid>/stat over the whole window, as a percentage of one core.
No GPU runtime is initialised in the daemon (discovery runs vendor runtimes in child processes
that exit before the session starts).

Usage: /usr/bin/python3 daemon_footprint.py AGENT_BIN PLUGIN_DIR [DURATION_S=300] [STARTS=20]
(Debian's python3: it needs python3-paho-mqtt.)
"""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    agent, plugin_dir = sys.argv[1], sys.argv[2]
    duration = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    starts = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    tmp = tempfile.mkdtemp(prefix="cpn-bench-daemon-")
    port = free_port()
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    hz = os.sysconf("SC_CLK_TCK")

    def config(node, state, interval=10):
        path = os.path.join(tmp, f"{node}.yaml")
        with open(path, "w") as f:
            f.write(f'node: {{id: "{node}"}}\nbroker: {{uris: ["tcp://127.0.0.1:{port}"]}}\n'
                    f"telemetry: {{interval_s: {interval}}}\nstate_dir: {state}\nlog: {{level: warn}}\n")
        return path

    # "When capacity is cached": one quick benchmark of this node, stored once and copied into
    # every agent's state directory, so no agent benchmarks at start (it would if the cache were
    # missing or stale, in a child process, see docs/capacity.md).
    cache_state = os.path.join(tmp, "cache")
    bench = subprocess.run([agent, "--config", config("cache", cache_state), "bench", "--quick",
                            "--plugin-dir", plugin_dir], capture_output=True, text=True)
    cached = os.path.join(cache_state, "capacity.json")
    if bench.returncode != 0 or not os.path.exists(cached):
        sys.exit(f"could not store a capacity to start from: {bench.stderr}")

    def state_with_cache(name):
        d = os.path.join(tmp, name)
        os.makedirs(d, exist_ok=True)
        shutil.copy(cached, os.path.join(d, "capacity.json"))
        return d

    try:
        # 1. start -> birth + inventory
        lat = []
        for i in range(starts):
            node = f"bench-start-{i}"
            got = threading.Event()
            c = mqtt.Client(client_id=f"brain-{i}", protocol=mqtt.MQTTv5)
            capacity_status = []

            def on_message(cl, ud, m, got=got, capacity_status=capacity_status):
                if m.topic.endswith("/capacity"):
                    capacity_status.append(json.loads(m.payload)["status"])
                if m.topic.endswith("/inventory"):
                    got.set()
            c.on_message = on_message
            c.connect("127.0.0.1", port)
            c.subscribe(f"cpn/v1/nodes/{node}/#", qos=1)
            c.loop_start()
            time.sleep(0.1)
            cfg = config(node, state_with_cache(node))
            t0 = time.perf_counter()
            p = subprocess.Popen([agent, "--config", cfg, "run", "--plugin-dir", plugin_dir],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ok = got.wait(10)
            t1 = time.perf_counter()
            p.terminate()
            p.wait(5)
            c.loop_stop()
            c.disconnect()
            if ok:
                lat.append((t1 - t0) * 1000)
            if capacity_status and capacity_status[0] != "measured":
                sys.exit(f"start {i}: the cached capacity was not used (status {capacity_status[0]})")
        print(f"start -> retained birth + inventory, {len(lat)} of {starts} starts (ms): "
              f"min {min(lat):.1f}  median {statistics.median(lat):.1f}  "
              f"p90 {sorted(lat)[int(0.9 * (len(lat) - 1))]:.1f}  max {max(lat):.1f}")

        # 2. idle footprint
        cfg = config("bench-idle", state_with_cache("idle"))
        p = subprocess.Popen([agent, "--config", cfg, "run", "--plugin-dir", plugin_dir],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3)  # discovery children exit; session up

        def cpu_ticks():
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])

        def rss_kb():
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
            return 0

        c0, w0 = cpu_ticks(), time.monotonic()
        rss = []
        while time.monotonic() - w0 < duration:
            rss.append(rss_kb())
            time.sleep(1)
        c1, w1 = cpu_ticks(), time.monotonic()
        p.terminate()
        p.wait(5)
        cpu_pct = 100.0 * (c1 - c0) / hz / (w1 - w0)
        print(f"idle daemon over {w1 - w0:.0f} s (telemetry every 10 s): CPU {cpu_pct:.3f} % of one core "
              f"({c1 - c0} ticks at {hz} Hz); VmRSS min {min(rss) / 1024:.1f} MiB, "
              f"median {statistics.median(rss) / 1024:.1f} MiB, max {max(rss) / 1024:.1f} MiB")
    finally:
        broker.terminate()
        broker.wait(5)


if __name__ == "__main__":
    main()
