#!/usr/bin/python3
"""Echo-task round trip through a loopback mosquitto, against a bare MQTT 5 request/response
(issue: remote tasks; goal: p50 <= 1 ms, p99 <= 5 ms, >= 5,000 tasks/s, agent/bare <= 1.5x).

  1. starts its own mosquitto on a free loopback port (set_tcp_nodelay true,
     max_inflight_messages 0, no persistence);
  2. runs `cpn-bench-task-roundtrip --mode bare` (twice: with TCP_NODELAY on the bench's sockets,
     the reference, and a short run of stock Paho C, which never sets it, for information);
  3. starts `cpn-agent --config CFG run` (node.id bench-node, capacity.mode off, a temp
     state_dir), once per tasks.journal_sync value (full, normal) when config/agent.yaml has that
     key, waits for its birth (retained, "state":"online"), runs `--mode agent`, stops it;
  4. in the agent run, the closed-loop phase alternates blocks of --interleave (250) bare
     requests and echo tasks in the same process (--interleave-bare), so the two latency sets
     share the machine's every moment (on a shared VM the bare p50 alone moved 228 -> 347 us
     within minutes; --interleave 0: agent only). This is the reference of the latency goal
     (agent/bare p50 <= 1.5x). The agent's work after an answer (the broker's
     acknowledgements, the journal log's apply every ~1,000 tasks) also slows the first bare
     requests of the next block: a few percent of the bare samples, a bias of a few us at p50;
  5. runs the bare request/response again after each agent, so each agent run is also bracketed
     by two bare runs of the same minutes: the reference for throughput, and a second latency
     ratio, shown in brackets, which the drift of a shared machine moves by tens of percent;
  6. prints a markdown table with every run, the ratios agent/bare and the machine.
--agent-nodelay (diagnostic) sets TCP_NODELAY on the agent's broker socket from outside
(pidfd_getfd) before measuring: Paho C never sets it, and without it every answer the agent
publishes right after acknowledging a submit waits ~40 ms (Nagle + the broker's delayed ACK).

Usage: /usr/bin/python3 bench/task_roundtrip.py BUILD_DIR [--out bench/results/task-roundtrip-DATE-HOST.md]
       [--latency-n 2000] [--throughput-n 20000] [--window 64] [--payload-bytes 64] [--no-stock]
       [--interleave 250] [--agent-nodelay]
Needs the standard library, mosquitto and mosquitto_sub; nothing is mocked.
"""
import argparse
import datetime
import json
import os
import pathlib
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
NODE = "bench-node"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def stop(proc, grace=10):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def tail(path, n=30):
    try:
        return "\n".join(pathlib.Path(path).read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return ""


class Broker:
    def __init__(self, directory):
        self.dir = pathlib.Path(directory)
        self.port = free_port()
        self.log = self.dir / "mosquitto.log"
        self.conf = self.dir / "mosquitto.conf"
        self.conf_lines = [
            "per_listener_settings false",
            "persistence false",
            "allow_anonymous true",
            f"listener {self.port} 127.0.0.1",
            # Nagle + delayed ACK cost ~40 ms per leg of a request/response without it.
            "set_tcp_nodelay true",
            # No broker-side cap on QoS 1 messages in flight to a client (default 20).
            "max_inflight_messages 0",
        ]
        self.conf.write_text("\n".join(self.conf_lines + [
            f"user {pwd.getpwuid(os.getuid()).pw_name}", "log_dest stderr", "log_type error",
            "log_type warning", "log_type notice", "log_type information"]) + "\n")
        self.proc = None

    @property
    def uri(self):
        return f"tcp://127.0.0.1:{self.port}"

    def start(self):
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not (" running" in self.log.read_text(errors="replace") and port_open(self.port)):
            if self.proc.poll() is not None:
                sys.exit(f"mosquitto exited with {self.proc.returncode}:\n{tail(self.log)}")
            if time.monotonic() > deadline:
                stop(self.proc)
                sys.exit(f"mosquitto did not start listening on {self.port} within 10 s:\n{tail(self.log)}")
            time.sleep(0.05)

    def stop(self):
        stop(self.proc)


def run_bench(bench, mode, uri, opts, extra=()):
    cmd = [str(bench), "--broker", uri, "--mode", mode, "--json",
           "--latency-n", str(opts.latency_n), "--throughput-n", str(opts.throughput_n),
           "--window", str(opts.window), "--payload-bytes", str(opts.payload_bytes)]
    if mode == "agent":
        cmd += ["--node", NODE]
        if getattr(opts, "interleave", 0):
            cmd += ["--interleave-bare", str(opts.interleave)]
    cmd += list(extra)
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800)
    sys.stderr.write(p.stderr)
    doc = None
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
    if doc is None:
        msg = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
        return {"mode": mode, "failed": f"exit {p.returncode}: {msg}"}
    doc["exit"] = p.returncode
    return doc


def journal_sync_values():
    """full and normal when config/agent.yaml has tasks.journal_sync, else [None] (the default)."""
    text = (REPO / "config" / "agent.yaml").read_text()
    in_tasks = False
    for line in text.splitlines():
        if re.match(r"^tasks:\s*(#.*)?$", line):
            in_tasks = True
        elif re.match(r"^\S", line):
            in_tasks = False
        elif in_tasks and re.match(r"^\s+journal_sync:", line):
            return ["full", "normal"]
    return [None]


def write_agent_config(path, uri, state_dir, journal_sync):
    lines = [
        "node:", f"  id: {NODE}",
        "broker:", f"  uris: [\"{uri}\"]", "  protocol: \"5\"",
        "telemetry:", "  interval_s: 60",
        "capacity:", "  mode: off",
        f"state_dir: \"{state_dir}\"",
        "log:", "  level: warn",
    ]
    if journal_sync:
        lines += ["tasks:", f"  journal_sync: {journal_sync}"]
    pathlib.Path(path).write_text("\n".join(lines) + "\n")


def wait_birth(port, agent, agent_log, timeout=60):
    """Waits for the retained birth ("state":"online") on cpn/v1/nodes/NODE/state."""
    sub = subprocess.Popen([MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5",
                            "-t", f"cpn/v1/nodes/{NODE}/state", "-W", str(timeout)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
    try:
        for line in sub.stdout:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("state") == "online":
                return doc
            if agent.poll() is not None:
                break
    finally:
        stop(sub, grace=2)
    if agent.poll() is not None:
        sys.exit(f"cpn-agent exited with {agent.returncode} before its birth:\n{tail(agent_log)}")
    sys.exit(f"no birth from cpn-agent within {timeout} s:\n{tail(agent_log)}")


def force_nodelay(pid, port):
    """Diagnostic: sets TCP_NODELAY on process `pid`'s TCP sockets to 127.0.0.1:`port`, through
    pidfd_getfd(2) (Linux >= 5.6, needs ptrace rights over it). Paho C never sets it, so this
    shows what the agent would do with it. Returns how many sockets it set."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    n = 0
    pfd = os.pidfd_open(pid)
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = libc.syscall(438, pfd, int(name), 0)  # SYS_pidfd_getfd
            if fd < 0:
                sys.exit(f"pidfd_getfd on pid {pid}: {os.strerror(ctypes.get_errno())}")
            s = socket.socket(fileno=fd)
            try:
                if s.type == socket.SOCK_STREAM and s.family in (socket.AF_INET, socket.AF_INET6) \
                        and s.getpeername()[1] == port:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    n += 1
            except OSError:
                pass
            finally:
                s.close()  # closes the duplicate only
    finally:
        os.close(pfd)
    return n


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def machine():
    model = "?"
    for line in sh(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    nproc = sh(["nproc"]).strip() or "?"
    mosq = "?"
    out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout
    m = re.search(r"mosquitto version (\S+)", out)
    if m:
        mosq = m.group(1)
    return model, nproc, mosq


def fmt_us(v):
    return f"{v:,.0f}" if v < 10000 else f"{v / 1000:,.1f} ms"


def row(label, d):
    if "failed" in d:
        return f"| {label} | failed: {d['failed']} | | | | | | | |"
    lat, thr = d["latency"], d["throughput"]
    err = str(d.get("errors", 0))
    if thr.get("failed"):
        err += f"; throughput phase failed after {thr['n']} answers: {thr['failed']}"
    if d.get("details"):
        err += " (" + json.dumps(d["details"], separators=(",", ":"))[:300] + ")"
    per_s = "failed" if thr.get("failed") else f"{thr['per_s']:,.0f}"
    return (f"| {label} | {fmt_us(lat['p50_us'])} | {fmt_us(lat['p90_us'])} | {fmt_us(lat['p99_us'])} | "
            f"{fmt_us(lat['max_us'])} | {per_s} | {fmt_us(thr['p50_us'])} | {fmt_us(thr['p99_us'])} | {err} |")


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build_dir")
    ap.add_argument("--out", help="also write the markdown here")
    ap.add_argument("--latency-n", type=int, default=2000)
    ap.add_argument("--throughput-n", type=int, default=20000)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--payload-bytes", type=int, default=64)
    ap.add_argument("--no-stock", action="store_true", help="skip the stock-Paho (Nagle) bare run")
    ap.add_argument("--interleave", type=int, default=250,
                    help="alternate blocks of this many bare requests and echo tasks in the agent's closed-loop "
                         "phase (0: agent only)")
    ap.add_argument("--agent-nodelay", action="store_true",
                    help="diagnostic: force TCP_NODELAY on the agent's broker socket (pidfd_getfd) before measuring")
    opts = ap.parse_args()

    build = pathlib.Path(opts.build_dir).resolve()
    bench = build / "bin" / "cpn-bench-task-roundtrip"
    agent_bin = build / "bin" / "cpn-agent"
    for b in (bench, agent_bin):
        if not b.exists():
            sys.exit(f"{b} does not exist (build the cpn-bench-task-roundtrip and cpn-agent targets)")

    started = datetime.datetime.now().astimezone()
    work = pathlib.Path(tempfile.mkdtemp(prefix="cpn-task-rt-"))
    broker = Broker(work)
    broker.start()
    results = []  # (label, doc)
    agent = None
    try:
        bare = run_bench(bench, "bare", broker.uri, opts)
        results.append(("bare MQTT 5 request/response", bare))
        if not opts.no_stock:
            class Short:  # stock Paho C: ~90 ms a round trip, so a short run
                latency_n, throughput_n, window, payload_bytes = 50, 2000, opts.window, opts.payload_bytes
            results.append(("bare, stock Paho C (no TCP_NODELAY on the bench's sockets; 50 + 2,000)",
                            run_bench(bench, "bare", broker.uri, Short, ["--warmup", "5", "--tcp-nodelay", "off"])))
        agent_runs = []
        bare_runs = [bare]
        for sync in journal_sync_values():
            state_dir = work / f"state-{sync or 'default'}"
            state_dir.mkdir()
            cfg = work / f"agent-{sync or 'default'}.yaml"
            write_agent_config(cfg, broker.uri, state_dir, sync)
            log = work / f"agent-{sync or 'default'}.log"
            agent = subprocess.Popen([str(agent_bin), "--config", str(cfg), "run"], stdin=subprocess.DEVNULL,
                                     stdout=open(log, "ab"), stderr=subprocess.STDOUT)
            wait_birth(broker.port, agent, log)
            if opts.agent_nodelay and force_nodelay(agent.pid, broker.port) < 1:
                sys.exit("--agent-nodelay: found no socket of cpn-agent connected to the broker")
            d = run_bench(bench, "agent", broker.uri, opts)
            stop(agent)
            if "failed" in d or d["throughput"].get("failed"):
                print(f"agent log ({log}):\n{tail(log)}", file=sys.stderr)
            if agent.returncode not in (0, None):
                d.setdefault("agent_exit", agent.returncode)
            agent = None
            label = f"agent, echo task, journal_sync {sync}" if sync else "agent, echo task, journal default"
            if opts.agent_nodelay:
                label += " (TCP_NODELAY forced on the agent's socket)"
            results.append((label, d))
            after = run_bench(bench, "bare", broker.uri, opts)
            results.append((f"bare MQTT 5 request/response, again after it", after))
            agent_runs.append((label, d, bare_runs[-1], after))
            bare_runs.append(after)
    finally:
        stop(agent)
        broker.stop()

    model, nproc, mosq = machine()
    rev = sh([str(agent_bin), "--version"]).strip().splitlines()
    host = socket.gethostname()
    out = []
    out.append(f"# Task round trip, {started:%Y-%m-%d}")
    out.append("")
    out.append(f"Machine: {model}, {nproc} CPUs ({host}). Date: {started:%Y-%m-%d %H:%M %Z}. "
               f"mosquitto {mosq} on loopback ({', '.join(broker.conf_lines[4:])}). "
               f"Agent: {rev[0] if rev else '?'}.")
    out.append("")
    args = " ".join(sys.argv[1:])
    out.append(f"Command: `/usr/bin/python3 bench/task_roundtrip.py {args}` — MQTT 5, QoS 1, "
               f"payload {opts.payload_bytes} B, latency: {opts.latency_n} closed-loop requests after 200 "
               f"warm-up; throughput: {opts.throughput_n} requests, window {opts.window}. Times are "
               "from the publish call to the answer's arrival in the requester's message callback; "
               "agent: to the SUCCEEDED task_state on the reply topic.")
    out.append("")
    out.append("| run | p50 µs | p90 µs | p99 µs | max µs | tasks/s | p50 µs under load | p99 µs under load | errors |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for label, d in results:
        out.append(row(label, d))
        bi = d.get("bare_interleaved")
        if bi:
            out.append(f"| bare MQTT 5 request/response, interleaved with it (blocks of {bi['block']}) | "
                       f"{fmt_us(bi['p50_us'])} | {fmt_us(bi['p90_us'])} | {fmt_us(bi['p99_us'])} | "
                       f"{fmt_us(bi['max_us'])} | - | - | - | {bi['errors']} |")
    out.append("")
    out.append("The latency ratio of an agent run is taken against the bare requests interleaved with it (same "
               "process, alternating blocks: the goal's reference) and, in brackets, against the mean of the bare "
               "runs just before and just after it. Throughput is compared with the bare runs around it.")
    out.append("")
    out.append("| agent / bare | p50 | p99 | throughput | goals: p50 <= 1 ms, p99 <= 5 ms, >= 5,000/s, latency ratio <= 1.5x (p50) |")
    out.append("|---|---|---|---|---|")
    for label, d, b0, b1 in agent_runs:
        refs = [b for b in (b0, b1) if "failed" not in b and not b["throughput"].get("failed")]
        if "failed" in d or not refs:
            out.append(f"| {label} | - | - | - | failed |")
            continue
        lat, thr = d["latency"], d["throughput"]
        if thr.get("failed"):
            thr = dict(thr, per_s=0)
        mean = lambda key, q: sum(b[key][q] for b in refs) / len(refs)
        b50 = lat["p50_us"] / mean("latency", "p50_us")
        b99 = lat["p99_us"] / mean("latency", "p99_us")
        bi = d.get("bare_interleaved")
        if bi and bi["p50_us"] and bi["p99_us"]:
            r50, r99 = lat["p50_us"] / bi["p50_us"], lat["p99_us"] / bi["p99_us"]
            c50, c99 = f"{r50:.2f}x ({b50:.2f}x)", f"{r99:.2f}x ({b99:.2f}x)"
        else:
            r50, r99 = b50, b99
            c50, c99 = f"{r50:.2f}x", f"{r99:.2f}x"
        ok = [lat["p50_us"] <= 1000, lat["p99_us"] <= 5000, thr["per_s"] >= 5000, r50 <= 1.5]
        rthr = "failed" if d["throughput"].get("failed") else ratio(thr["per_s"], mean("throughput", "per_s"))
        out.append(f"| {label} | {c50} | {c99} | {rthr} | "
                   + " ".join("met" if x else "MISSED" for x in ok) + " |")
    text = "\n".join(out) + "\n"
    print(text)
    if opts.out:
        pathlib.Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(opts.out).write_text(text)
    ok = all("failed" not in d and not d["throughput"].get("failed") for _, d in results)
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"logs kept in {work}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
