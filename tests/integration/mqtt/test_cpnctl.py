"""Black-box tests of `cpnctl` (docs/cli.md#cpnctl): the real binary against a real mosquitto
(started by the fixtures on free loopback ports) and a real `cpn-agent run` (harness.Agent).
cpnctl connects to the broker's second listener (`brain_port`), so the agent's listener sees the
agent alone.

Every JSON document cpnctl prints for a task (`--json`) is validated against
docs/schemas/task-state.schema.json, and every `watch --json` line against the schema of its
message. The binary is $CPN_CPNCTL_BIN, else `cpnctl` beside $CPN_AGENT_BIN (both land in the
build's bin/ directory).
"""

import base64
import json
import os
import signal
import subprocess
import threading
import time

import paho.mqtt.client as mqtt

import harness
from harness import wait_until, write_private

CPNCTL_BIN = harness._env_path("CPN_CPNCTL_BIN", harness.AGENT_BIN.parent / "cpnctl")
START_TIMEOUT = 15.0  # discovery (cpu plugin only) + connect + birth
ANSWER_TIMEOUT = "20"  # cpnctl --timeout for answers from a live agent


# --------------------------------------------------------------------------------------------
# helpers


class Run:
    def __init__(self, args, proc):
        self.args, self.rc, self.out, self.err = args, proc.returncode, proc.stdout, proc.stderr

    def __repr__(self):
        return (f"cpnctl {' '.join(self.args)}\n  exit {self.rc}\n  stdout: {self.out[-3000:]!r}\n"
                f"  stderr: {self.err[-3000:]!r}")

    def doc(self):
        try:
            return json.loads(self.out)
        except ValueError:
            raise AssertionError(f"stdout is not one JSON document: {self!r}") from None


def cpnctl(uri, *args, timeout=60):
    assert CPNCTL_BIN.exists(), f"{CPNCTL_BIN} does not exist (build the cpnctl target, or set CPN_CPNCTL_BIN)"
    argv = (["--broker", uri] if uri else []) + [str(a) for a in args]
    p = subprocess.run([str(CPNCTL_BIN)] + argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       errors="replace", timeout=timeout)
    return Run(argv, p)


def uri_of(broker):
    return f"tcp://127.0.0.1:{broker.brain_port}"


def assert_task_state(doc, **expect):
    errs = harness.schemas().errors("task-state.schema.json", doc)
    assert not errs, f"not a valid task_state message: {errs}; {doc}"
    for k, v in expect.items():
        assert doc.get(k) == v, f"{k} is {doc.get(k)!r}, expected {v!r}: {doc}"


def wait_birth(broker, node, agent, timeout=START_TIMEOUT):
    """Waits for the node's birth on its state topic (retained or live)."""
    born = threading.Event()
    c = mqtt.Client(client_id=f"wait-{node}-{os.getpid()}", protocol=mqtt.MQTTv311)

    def on_connect(client, userdata, flags, rc):
        client.subscribe(f"{harness.prefix(node)}/state", qos=1)

    def on_message(client, userdata, msg):
        try:
            if json.loads(msg.payload).get("type") == "birth":
                born.set()
        except (ValueError, AttributeError):
            pass

    c.on_connect, c.on_message = on_connect, on_message
    c.connect("127.0.0.1", broker.brain_port, keepalive=10)
    c.loop_start()
    try:
        if not born.wait(timeout):
            state = "alive" if agent.alive() else f"exit status {agent.proc.returncode}"
            raise AssertionError(f"no birth of {node} within {timeout} s ({state})")
    finally:
        c.disconnect()
        c.loop_stop()


def wait_task_path(broker, node):
    """The agent subscribes to its task topics after its birth: ready once it answers a status
    query (UNKNOWN for an id it does not hold: exit 6)."""
    last = []

    def answered():
        r = cpnctl(uri_of(broker), "--timeout", "1", "status", "--node", node, "readiness-probe")
        last[:] = [r]
        return r.rc == 6

    try:
        wait_until(answered, 20, step=0.1, what=f"{node} to answer task status queries")
    except AssertionError as e:
        raise AssertionError(f"{e}; last try: {last[0]!r}") from None


def start_agent(make_agent, broker, node, **overrides):
    agent = make_agent(node, broker, **overrides)
    agent.start()
    wait_birth(broker, node, agent)
    wait_task_path(broker, node)
    return agent


# --------------------------------------------------------------------------------------------
# nodes


def test_cpnctl_nodes_shows_running_agent(broker, make_agent, node_id):
    agent = make_agent(node_id, broker)
    agent.start()
    wait_birth(broker, node_id, agent)

    r = cpnctl(uri_of(broker), "nodes")
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert lines[0].split() == ["NODE", "STATE", "SITE", "DEVICES", "L2", "AGE"], r
    row = [ln.split() for ln in lines[1:] if ln.split() and ln.split()[0] == node_id]
    assert row, f"{node_id} missing from the table: {r!r}"
    assert row[0][1] == "online" and row[0][2] == "s1", r
    assert "cpu" in " ".join(row[0][3:-2]), r
    assert row[0][-2] == "-", r  # capacity.mode off: not measured

    r = cpnctl(uri_of(broker), "--json", "nodes")
    assert r.rc == 0, r
    nodes = {n["node"]: n for n in r.doc()}
    n = nodes[node_id]
    assert n["state"] == "online" and n["site"] == "s1", n
    assert n["devices"].get("cpu", 0) >= 1, n
    assert n["capacity_status"] == "not_measured" and n["l2"] is None, n
    assert n["bdseq"] is not None and n["age_s"] is not None and 0 <= n["age_s"] < 120, n

    # A clean shutdown leaves a retained death: the node is listed offline.
    agent.signal(signal.SIGTERM)
    assert agent.wait_exit(5) == 0
    r = cpnctl(uri_of(broker), "--json", "nodes")
    assert r.rc == 0, r
    n = {x["node"]: x for x in r.doc()}[node_id]
    assert n["state"] == "offline" and n.get("reason") == "shutdown", n


# --------------------------------------------------------------------------------------------
# submit


def test_cpnctl_submit_echo_output_roundtrip(broker, make_agent, node_id, workdir):
    start_agent(make_agent, broker, node_id)
    data = bytes(range(256)) * 4 + b"\x00end\n"
    src, out = workdir / "in.bin", workdir / "out.bin"
    src.write_bytes(data)

    r = cpnctl(uri_of(broker), "--json", "--timeout", ANSWER_TIMEOUT, "submit", "--node", node_id,
               "--kind", "echo", "--id", "rt-1", "--input-file", src, "-o", out)
    assert r.rc == 0, r
    doc = r.doc()
    assert_task_state(doc, state="SUCCEEDED", task_id="rt-1", node_id=node_id, kind="echo")
    assert doc["result"]["output"]["size"] == len(data), doc
    assert out.read_bytes() == data, "the output written with -o differs from the input"

    # The human form, from a YAML task file with flags over it.
    task = workdir / "task.yaml"
    task.write_text("kind: echo\nid: rt-2\npriority: 5\nparams:\n  progress_steps: 4\n  sleep_ms: 200\n")
    out2 = workdir / "out2.bin"
    r = cpnctl(uri_of(broker), "--timeout", ANSWER_TIMEOUT, "submit", "--node", node_id, task,
               "--input-file", src, "--param", "sleep_ms=100", "-o", out2)
    assert r.rc == 0, r
    assert "SUCCEEDED" in r.out and node_id in r.out and "rt-2" in r.out, r
    assert "sha256 verified" in r.out, r
    assert "RUNNING" in r.err, r  # the plain state lines (stderr is not a terminal)
    assert out2.read_bytes() == data

    # Status of the finished task: answered with its final state.
    r = cpnctl(uri_of(broker), "--json", "--timeout", ANSWER_TIMEOUT, "status", "--node", node_id, "rt-1")
    assert r.rc == 0, r
    assert_task_state(r.doc(), state="SUCCEEDED", task_id="rt-1")


def test_cpnctl_submit_same_id_is_not_run_twice(broker, make_agent, node_id):
    start_agent(make_agent, broker, node_id)
    first = cpnctl(uri_of(broker), "--json", "--timeout", ANSWER_TIMEOUT, "submit", "--node", node_id,
                   "--kind", "echo", "--id", "idem-1")
    assert first.rc == 0, first
    again = cpnctl(uri_of(broker), "--json", "--timeout", ANSWER_TIMEOUT, "submit", "--node", node_id,
                   "--kind", "echo", "--id", "idem-1")
    assert again.rc == 0, again
    a, b = first.doc(), again.doc()
    assert_task_state(b, state="SUCCEEDED", task_id="idem-1")
    assert b["version"] == a["version"] and b["started_ms"] == a["started_ms"], (a, b)


def test_cpnctl_submit_unknown_kind_exits_4(broker, make_agent, node_id):
    start_agent(make_agent, broker, node_id)
    r = cpnctl(uri_of(broker), "--json", "--timeout", ANSWER_TIMEOUT, "submit", "--node", node_id,
               "--kind", "no-such-kind")
    assert r.rc == 4, r
    doc = r.doc()
    assert_task_state(doc, state="REJECTED", code="unknown_kind", version=1)
    assert "echo" in doc["reason"], doc  # the known kinds are listed
    r = cpnctl(uri_of(broker), "--timeout", ANSWER_TIMEOUT, "submit", "--node", node_id, "--kind", "no-such-kind")
    assert r.rc == 4, r
    assert "unknown_kind" in r.out and "REJECTED" in r.out, r


def test_cpnctl_submit_failed_task_exits_1(broker, make_agent, node_id, workdir):
    start_agent(make_agent, broker, node_id)
    out = workdir / "never.bin"
    r = cpnctl(uri_of(broker), "--json", "--timeout", ANSWER_TIMEOUT, "submit", "--node", node_id,
               "--kind", "echo", "--param", "fail=disk on fire", "-o", out)
    assert r.rc == 1, r
    doc = r.doc()
    assert_task_state(doc, state="FAILED", code="failed")
    assert "disk on fire" in doc["reason"], doc
    assert not out.exists(), "-o wrote a file for a failed task"


def test_cpnctl_submit_no_wait_returns_first_answer(broker, make_agent, node_id):
    start_agent(make_agent, broker, node_id)
    t0 = time.monotonic()
    r = cpnctl(uri_of(broker), "--json", "--timeout", ANSWER_TIMEOUT, "submit", "--node", node_id,
               "--kind", "echo", "--id", "nw-1", "--param", "sleep_ms=3000", "--no-wait")
    assert r.rc == 0, r
    assert time.monotonic() - t0 < 3.0, "--no-wait waited for the task to end"
    # Admitted and started in one commit: the first answer is RUNNING v2 (protocol.md).
    assert_task_state(r.doc(), task_id="nw-1", version=2)
    assert r.doc()["state"] == "RUNNING", r


def test_cpnctl_submit_large_output_by_path(broker, make_agent, node_id, workdir):
    """An output above tasks.inline_result_bytes (64 KiB by default) is a file in the node's
    state_dir/results/; cpnctl runs on the same machine here, so -o copies and verifies it."""
    start_agent(make_agent, broker, node_id)
    data = os.urandom(200_000)
    src, out = workdir / "big.bin", workdir / "big.out"
    src.write_bytes(data)
    r = cpnctl(uri_of(broker), "--json", "--timeout", ANSWER_TIMEOUT, "submit", "--node", node_id,
               "--kind", "echo", "--input-file", src, "-o", out)
    assert r.rc == 0, r
    doc = r.doc()
    assert_task_state(doc, state="SUCCEEDED")
    assert "path" in doc["result"]["output"] and "base64" not in doc["result"]["output"], doc
    assert out.read_bytes() == data


def test_cpnctl_submit_mqtt_3_1_1(broker, make_agent, node_id, workdir):
    """MQTT 3.1.1 has no Response Topic: reply_to and correlation travel in the payload."""
    start_agent(make_agent, broker, node_id)
    src, out = workdir / "in.txt", workdir / "out.txt"
    src.write_bytes(b"over 3.1.1\n")
    r = cpnctl(uri_of(broker), "--mqtt", "3.1.1", "--json", "--timeout", ANSWER_TIMEOUT, "submit",
               "--node", node_id, "--kind", "echo", "--id", "v311-1", "--input-file", src, "-o", out)
    assert r.rc == 0, r
    assert_task_state(r.doc(), state="SUCCEEDED", task_id="v311-1", correlation="v311-1")
    assert out.read_bytes() == b"over 3.1.1\n"


def test_cpnctl_submit_via_queue(broker, make_agent, node_id):
    queue = f"q-{node_id}"[:60]
    start_agent(make_agent, broker, node_id, tasks__queues=[queue])
    # The queue's shared subscription may come a moment after the node's own task topics; a
    # submit nobody consumed yet is lost, and re-sending the same id is safe.
    for _ in range(4):
        r = cpnctl(uri_of(broker), "--json", "--timeout", "5", "submit", "--queue", queue, "--kind", "echo",
                   "--id", "via-queue-1")
        if r.rc != 5:
            break
    assert r.rc == 0, r
    assert_task_state(r.doc(), state="SUCCEEDED", node_id=node_id, queue=queue)
    r = cpnctl(uri_of(broker), "--json", "--timeout", ANSWER_TIMEOUT, "status", "--queue", queue, "via-queue-1")
    assert r.rc == 0, r
    assert_task_state(r.doc(), state="SUCCEEDED", node_id=node_id)


# --------------------------------------------------------------------------------------------
# status, cancel, watch


def test_cpnctl_status_unknown_id_exits_6(broker, make_agent, node_id):
    start_agent(make_agent, broker, node_id)
    r = cpnctl(uri_of(broker), "--json", "--timeout", ANSWER_TIMEOUT, "status", "--node", node_id, "never-submitted")
    assert r.rc == 6, r
    assert_task_state(r.doc(), state="UNKNOWN", version=0, task_id="never-submitted")
    r = cpnctl(uri_of(broker), "--timeout", ANSWER_TIMEOUT, "status", "--node", node_id, "never-submitted")
    assert r.rc == 6 and "UNKNOWN" in r.out, r


def test_cpnctl_cancel_running_task(broker, make_agent, node_id):
    start_agent(make_agent, broker, node_id)
    uri = uri_of(broker)
    r = cpnctl(uri, "--json", "--timeout", ANSWER_TIMEOUT, "submit", "--node", node_id, "--kind", "echo",
               "--id", "long-1", "--param", "sleep_ms=60000", "--no-wait")
    assert r.rc == 0, r

    def running():
        s = cpnctl(uri, "--json", "--timeout", "5", "status", "--node", node_id, "long-1")
        return s.rc == 0 and s.doc()["state"] == "RUNNING"

    wait_until(running, 15, step=0.2, what="the task to be RUNNING")
    t0 = time.monotonic()
    r = cpnctl(uri, "--json", "--timeout", ANSWER_TIMEOUT, "cancel", "--node", node_id, "long-1", "--wait")
    assert r.rc == 0, r
    assert_task_state(r.doc(), state="CANCELED", code="canceled", task_id="long-1")
    assert time.monotonic() - t0 < 10, "the cancel took effect late (echo checks its token every 10 ms)"
    r = cpnctl(uri, "--json", "--timeout", ANSWER_TIMEOUT, "status", "--node", node_id, "long-1")
    assert r.rc == 0 and r.doc()["state"] == "CANCELED", r
    r = cpnctl(uri, "--json", "--timeout", ANSWER_TIMEOUT, "cancel", "--node", node_id, "no-such-task")
    assert r.rc == 6, r


def test_cpnctl_watch_prints_task_events(broker, make_agent, node_id):
    start_agent(make_agent, broker, node_id)
    uri = uri_of(broker)
    assert CPNCTL_BIN.exists(), f"{CPNCTL_BIN} does not exist"
    w = subprocess.Popen([str(CPNCTL_BIN), "--broker", uri, "--json", "watch", "--node", node_id],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(w.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        # The retained birth arrives once both subscriptions are in place (events first).
        wait_until(lambda: any('"retained":true' in ln for ln in lines), 10, what="the retained state line")
        r = cpnctl(uri, "--timeout", ANSWER_TIMEOUT, "submit", "--node", node_id, "--kind", "echo", "--id", "w-1",
                   "--param", "progress_steps=3", "--param", "sleep_ms=300")
        assert r.rc == 0, r
        wait_until(lambda: any('"SUCCEEDED"' in ln and '"w-1"' in ln for ln in lines), 10,
                   what="the SUCCEEDED event in watch's output")
    finally:
        if w.poll() is None:
            w.send_signal(signal.SIGINT)
        try:
            rc = w.wait(timeout=5)
        except subprocess.TimeoutExpired:
            w.kill()
            rc = w.wait(timeout=5)
        reader.join(timeout=5)
    assert rc == 0, f"watch exited {rc} on SIGINT: {w.stderr.read()}"

    sch = harness.schemas()
    states = {}
    for ln in lines:
        doc = json.loads(ln)
        assert set(doc) == {"received_ms", "topic", "retained", "message"}, doc
        m = doc["message"]
        if doc["topic"] == f"{harness.prefix(node_id)}/state":
            assert not sch.errors(sch.BY_STATE_TYPE[m["type"]], m), m
            continue
        assert doc["topic"].startswith(f"{harness.prefix(node_id)}/task/event/"), doc
        name = "task-state.schema.json" if m["type"] == "task_state" else "task-progress.schema.json"
        assert not sch.errors(name, m), (sch.errors(name, m), m)
        if m["type"] == "task_state" and m["task_id"] == "w-1":
            states[m["version"]] = m["state"]
    assert states == {2: "RUNNING", 3: "SUCCEEDED"}, states


# --------------------------------------------------------------------------------------------
# errors without an agent


def test_cpnctl_broker_unreachable_exits_3():
    uri = f"tcp://127.0.0.1:{harness.free_port()}"
    for args in (["nodes"], ["submit", "--node", "n1", "--kind", "echo"], ["status", "--node", "n1", "t-1"]):
        r = cpnctl(uri, "--timeout", "5", *args, timeout=30)
        assert r.rc == 3, r
        assert uri in r.err, f"the message does not name the URI: {r!r}"


def test_cpnctl_no_answer_exits_5(broker):
    r = cpnctl(uri_of(broker), "--timeout", "2", "submit", "--node", "nobody-here", "--kind", "echo", timeout=30)
    assert r.rc == 5, r
    assert "no answer within 2 s" in r.err and "cpn/v1/nodes/nobody-here/task/submit" in r.err, r


def test_cpnctl_bad_task_file_exits_2(workdir):
    uri = f"tcp://127.0.0.1:{harness.free_port()}"  # never reached: the file is checked first
    cases = [
        ("bad.yaml", "kind: echo\nparams:\n  a: [1, 2\n", ["not valid YAML"]),
        ("indent.yaml", "kind: echo\n  id: x\n", [":2:", "not valid YAML"]),
        ("typo.yaml", "kind: echo\nprioriti: 3\n", [":2:", "prioriti: unknown field"]),
        ("type.yaml", "kind: echo\npriority: high\n", [":2:11:", "priority: must be an integer"]),
        ("range.json", '{"kind": "echo",\n "timeout_s": 0}', [":2:", "timeout_s: must be between 1 and 86400"]),
        ("bad.json", '{"kind": "echo",,}', [":1:", "not valid JSON"]),
        ("req.yaml", "kind: echo\nrequirements:\n  device_class: tpu\n", [":3:", "requirements.device_class"]),
    ]
    for name, text, needles in cases:
        path = workdir / name
        path.write_text(text)
        r = cpnctl(uri, "submit", "--node", "n1", path, timeout=30)
        assert r.rc == 2, r
        assert str(path) in r.err, f"the message does not name the file: {r!r}"
        for n in needles:
            assert n in r.err, f"{n!r} missing from the message: {r!r}"
    r = cpnctl(uri, "submit", "--node", "n1", workdir / "missing.yaml", timeout=30)
    assert r.rc == 2 and "No such file" in r.err, r
    r = cpnctl(uri, "submit", "--node", "n1", "--kind", "echo", "--param", "novalue", timeout=30)
    assert r.rc == 2 and "--param 'novalue'" in r.err, r
    r = cpnctl(uri, "submit", "--kind", "echo", timeout=30)
    assert r.rc == 2 and "--node" in r.err, r


def test_cpnctl_password_file_readable_by_others_exits_2(broker, workdir):
    pw = write_private(workdir / "pw", "secret\n")
    os.chmod(pw, 0o644)
    r = cpnctl(uri_of(broker), "--username", "u", "--password-file", pw, "nodes", timeout=30)
    assert r.rc == 2, r
    assert f"chmod 600 {pw}" in r.err, r
