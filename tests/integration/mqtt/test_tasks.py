"""Black-box tests of the remote-task path (docs/protocol.md, Tasks): the real `cpn-agent run`
against a real mosquitto, a submitter (harness.TaskClient, MQTT 5 or 3.1.1 request/response)
and a brain that records the node's event topics. Every task_state / task_progress message seen
on a reply or event topic is validated against docs/schemas on arrival, and every submit the
tests send validates against task-submit.schema.json unless it is bad on purpose.

Consumers de-duplicate by (task_id, version), as the contract says; the tests do the same and
then assert on what is left (one terminal state per task, versions that only increase).

Tasks are pinned to the CPU device (requirements.device_id "cpu"); the node has one CPU device
(its OpenCL runtime, PoCL, is merged into it), so tasks.slots.cpu is the whole concurrency.
"""

import base64
import hashlib
import json
import os
import pathlib
import signal
import time

import pytest

import harness
from harness import retained, wait_until

START_TIMEOUT = 15.0
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELED", "REJECTED"}
PIN = {"device_id": "cpu"}


# --------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture
def make_client():
    clients = []

    def make(broker, nodes, **kw):
        c = harness.TaskClient(broker, nodes, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
    for c in clients:
        c.check()


def b64(data):
    return base64.b64encode(data).decode()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def echo(task_id, data=None, sleep_ms=None, steps=None, pin=True, params=None, **fields):
    doc = {"schema_version": 1, "id": task_id, "kind": "echo"}
    p = dict(params or {})
    if sleep_ms is not None:
        p["sleep_ms"] = sleep_ms
    if steps is not None:
        p["progress_steps"] = steps
    if p:
        doc["params"] = p
    if data is not None:
        doc["input"] = {"base64": b64(data)}
    if pin:
        doc["requirements"] = dict(PIN)
    doc.update(fields)
    return doc


def is_state(task_id=None, state=None, corr=None):
    def pred(d):
        return (d.get("type") == "task_state" and (task_id is None or d.get("task_id") == task_id)
                and (state is None or d.get("state") == state)
                and (corr is None or d.get("correlation") == corr))
    return pred


def distinct(msgs):
    """De-duplicated by (node, task_id, version), first arrival kept, in arrival order."""
    seen, out = set(), []
    for m in msgs:
        d = m.doc
        if d.get("type") != "task_state":
            continue
        k = (d.get("node_id"), d["task_id"], d["version"])
        if k not in seen:
            seen.add(k)
            out.append(d)
    return out


def timeline(msgs, task_id):
    return [(d["version"], d["state"]) for d in distinct(msgs) if d["task_id"] == task_id]


def assert_versions_increase(msgs, task_id):
    """In arrival order, after de-duplication: each new version is above every earlier one, and
    one version always means one state."""
    by_version = {}
    last = 0
    for m in msgs:
        d = m.doc
        if d.get("type") != "task_state" or d["task_id"] != task_id:
            continue
        v = d["version"]
        if v in by_version:
            assert by_version[v] == d["state"], f"{task_id}: version {v} was {by_version[v]} and {d['state']}"
            continue
        assert v > last, f"{task_id}: version {v} ({d['state']}) arrived after version {last}: " \
                         f"{[(x.doc['version'], x.doc['state']) for x in msgs if x.doc.get('task_id') == task_id]}"
        by_version[v] = d["state"]
        last = v


def terminals(msgs, task_id):
    return [d for d in distinct(msgs) if d["task_id"] == task_id and d["state"] in TERMINAL]


def wait_ready(client, node=None, timeout=START_TIMEOUT):
    """The node answers on its task topics (its subscriptions are in place and it is online):
    a status query for an id it does not hold is answered UNKNOWN, version 0."""
    deadline = time.monotonic() + timeout
    while True:
        mark = client.mark()
        corr = client.status("ready-probe", node=node)
        try:
            m = client.wait(lambda d: d.get("correlation") == corr, since=mark, timeout=0.5,
                            what="an answer to the readiness probe")
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            continue
        assert (m.doc["state"], m.doc["version"]) == ("UNKNOWN", 0), m.doc
        return


def start_agent(agent, brain, client, timeout=START_TIMEOUT):
    mark = brain.mark()
    agent.start()
    try:
        brain.wait_birth(since=mark, timeout=timeout)
    except AssertionError as e:
        state = "alive" if agent.alive() else f"exit status {agent.proc.returncode}"
        raise AssertionError(f"no birth within {timeout} s of starting the agent ({state}): {e}") from None
    wait_ready(client, agent.node)


def assert_alive(agent):
    if not agent.alive():
        raise AssertionError(f"the agent exited ({agent.proc.returncode}); it must stay alive")


def wait_state(client, task_id, state, since=0, timeout=10.0):
    return client.wait(is_state(task_id, state), since=since, timeout=timeout, what=f"{task_id} {state}")


def check_output(d, data):
    out = d["result"]["output"]
    assert out["size"] == len(data), (out, len(data))
    assert out["sha256"] == sha(data), out
    assert base64.b64decode(out["base64"]) == data, "the output bytes differ from the input"


def setup_node(make_agent, make_brain, make_client, broker, node_id, protocol="5", **overrides):
    brain = make_brain(broker, node_id)
    client = make_client(broker, node_id, protocol=protocol)
    agent = make_agent(node_id, broker, **overrides)
    start_agent(agent, brain, client)
    return agent, brain, client


# --------------------------------------------------------------------------------------------
# request/response


def test_task_echo_round_trip_mqtt5(broker, make_agent, make_brain, make_client, node_id):
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id)
    data = bytes(range(256)) * 3 + b"\x00\xff tail"
    mark, bmark = client.mark(), brain.mark()
    # One that runs inline (no sleep) and one on a worker thread with progress.
    c1 = client.submit(echo("rt-1", data))
    c2 = client.submit(echo("rt-2", data[::-1], sleep_ms=600, steps=3))
    # One commit publishes each task's latest version only (protocol.md): rt-1 is admitted, run
    # and ended in one commit; rt-2 is admitted and started in one, and ends in a later one.
    expect = {"rt-1": [(3, "SUCCEEDED")], "rt-2": [(2, "RUNNING"), (3, "SUCCEEDED")]}
    for tid, corr, payload in (("rt-1", c1, data), ("rt-2", c2, data[::-1])):
        done = client.wait(is_state(tid, "SUCCEEDED"), since=mark, timeout=10, what=f"{tid} SUCCEEDED")
        replies = [m for m in client.select(mark) if m.doc.get("task_id") == tid]
        states = [m for m in replies if m.doc["type"] == "task_state"]
        assert [(m.doc["version"], m.doc["state"]) for m in states] == expect[tid], [m.doc for m in states]
        for m in replies:
            assert m.topic == client.reply_topic, m
            assert m.correlation == corr, f"Correlation Data {m.correlation!r}, sent {corr!r}"
            assert m.doc["correlation"] == corr, m.doc
            assert m.qos == (1 if m.doc["type"] == "task_state" else 0), m
        d = done.doc
        check_output(d, payload)
        assert d["kind"] == "echo" and d["attempts"] == 1 and d["device_id"] == "cpu", d
        assert d["accepted_ms"] <= d["started_ms"] <= d["finished_ms"], d
        met = d["result"]["metrics"]
        assert met["attempts"] == 1 and met["device_id"] == "cpu" and met["backend"] == "cpu", met
        # The event topic got the same changes.
        brain.wait_task(is_state(tid, "SUCCEEDED"), since=bmark, timeout=5)
        ev = brain.task_events(bmark, tid)
        assert timeline(ev, tid) == expect[tid], timeline(ev, tid)
    d2 = client.select(mark, is_state("rt-2", "SUCCEEDED"))[0].doc
    assert d2["result"]["data"] == {"sleep_ms": 600, "progress_steps": 3}, d2["result"]
    assert d2["result"]["metrics"]["run_ms"] >= 590, d2["result"]["metrics"]
    assert d2["finished_ms"] - d2["started_ms"] >= 590, d2
    # Progress: QoS 0, of the RUNNING version, non-decreasing, between the states.
    prog = [m for m in client.select(mark) if m.doc["type"] == "task_progress"]
    assert 1 <= len(prog) <= 3, prog
    assert all(m.doc["task_id"] == "rt-2" and m.doc["version"] == 2 for m in prog), prog
    vals = [m.doc["progress"] for m in prog]
    assert vals == sorted(vals) and vals[-1] <= 1.0, vals
    running = client.select(mark, is_state("rt-2", "RUNNING"))[0]
    succeeded = client.select(mark, is_state("rt-2", "SUCCEEDED"))[0]
    assert all(running.index < m.index < succeeded.index for m in prog), (running, prog, succeeded)
    assert brain.task_events(bmark, "rt-2", lambda d: d["type"] == "task_progress"), "no progress on the event topic"
    # Status queries: the current state; UNKNOWN (version 0) for an id the node does not hold.
    m2 = client.mark()
    cs = client.status("rt-1")
    s = client.wait(lambda d: d.get("correlation") == cs, since=m2, timeout=5, what="status answer")
    assert (s.doc["state"], s.doc["version"]) == ("SUCCEEDED", 3), s.doc
    check_output(s.doc, data)
    cu = client.status("never-submitted")
    u = client.wait(lambda d: d.get("correlation") == cu, since=m2, timeout=5, what="status answer")
    assert (u.doc["task_id"], u.doc["state"], u.doc["version"]) == ("never-submitted", "UNKNOWN", 0), u.doc
    assert_alive(agent)


def test_task_echo_mqtt311_reply_to(broker, make_agent, make_brain, make_client, node_id):
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id, protocol="3.1.1",
                                 broker__protocol="3.1.1")
    assert brain.births()[-1].doc["protocol"] == "3.1.1"
    data = bytes(range(255, -1, -1))
    mark = client.mark()
    corr = client.submit(echo("v311-1", data, sleep_ms=200))
    done = wait_state(client, "v311-1", "SUCCEEDED", since=mark)
    replies = [m for m in client.select(mark) if m.doc.get("task_id") == "v311-1"]
    assert [(m.doc["version"], m.doc["state"]) for m in replies] == \
        [(2, "RUNNING"), (3, "SUCCEEDED")], [m.doc for m in replies]
    assert all(m.doc["correlation"] == corr and m.topic == client.reply_topic for m in replies), replies
    assert all(m.correlation is None for m in replies)  # 3.1.1: no properties
    check_output(done.doc, data)
    # cancel and status take reply_to / correlation in the payload too.
    m2 = client.mark()
    cs = client.status("v311-1", correlation="st-1")
    s = client.wait(lambda d: d.get("correlation") == "st-1", since=m2, timeout=5, what="status answer")
    assert cs == "st-1" and (s.doc["state"], s.doc["version"]) == ("SUCCEEDED", 3), s.doc
    client.cancel("v311-1", correlation="cx-1")
    c = client.wait(lambda d: d.get("correlation") == "cx-1", since=m2, timeout=5, what="cancel answer")
    assert (c.doc["state"], c.doc["version"]) == ("SUCCEEDED", 3), f"cancel of an ended task: {c.doc}"
    assert_alive(agent)


# --------------------------------------------------------------------------------------------
# idempotency, cancel, timeout


def test_task_resubmit_is_idempotent_across_restart(broker, make_agent, make_brain, make_client, node_id):
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id)
    data = b"once only"
    doc = echo("idem-1", data, sleep_ms=1200)
    mark, bmark = client.mark(), brain.mark()
    client.submit(doc, correlation="first")
    wait_state(client, "idem-1", "RUNNING", since=mark)
    # Re-sent while running: answered with the current state, nothing new starts.
    m2 = client.mark()
    client.submit(doc, correlation="second")
    a = client.wait(lambda d: d.get("correlation") == "second", since=m2, timeout=5, what="answer to the re-send")
    assert (a.doc["state"], a.doc["version"], a.doc["attempts"]) == ("RUNNING", 2, 1), a.doc
    done = client.wait(is_state("idem-1", "SUCCEEDED", "first"), since=mark, timeout=10, what="SUCCEEDED")
    # A re-send with other content (same id) changes nothing either.
    m3 = client.mark()
    client.submit(echo("idem-1", b"other bytes"), correlation="third")
    a3 = client.wait(lambda d: d.get("correlation") == "third", since=m3, timeout=5, what="answer to the re-send")
    assert (a3.doc["state"], a3.doc["version"]) == ("SUCCEEDED", 3), a3.doc
    check_output(a3.doc, data)
    time.sleep(0.5)
    ev = brain.task_events(bmark, "idem-1")
    # Admitted and started in one commit (RUNNING v2 is its first state), ended in a later one.
    assert timeline(ev, "idem-1") == [(2, "RUNNING"), (3, "SUCCEEDED")], timeline(ev, "idem-1")
    assert len([m for m in ev if m.doc.get("state") == "RUNNING"]) == 1, "started more than once"
    assert done.doc["attempts"] == 1

    # Clean restart: the id is still known, the task is not run again.
    agent.signal(signal.SIGTERM)
    assert agent.wait_exit(5) == 0
    start_agent(agent, brain, client)
    bmark = brain.mark()
    m4 = client.mark()
    client.submit(doc, correlation="after-restart")
    a4 = client.wait(lambda d: d.get("correlation") == "after-restart", since=m4, timeout=5,
                     what="answer to the re-send after the restart")
    d4 = a4.doc
    assert (d4["state"], d4["version"], d4["attempts"]) == ("SUCCEEDED", 3, 1), d4
    assert d4["result"]["metrics"]["attempts"] == 1
    check_output(d4, data)
    time.sleep(1.0)
    again = [m.doc for m in client.select(m4) + brain.task_events(bmark, "idem-1")
             if m.doc.get("type") == "task_state" and m.doc["state"] in ("QUEUED", "RUNNING")]
    assert not again, f"the task ran again after the restart: {again}"
    assert_alive(agent)


def test_task_damaged_result_in_journal_is_left_out(broker, make_agent, make_brain, make_client, node_id):
    """The agent splices the journal's result document into its answers rather than parsing and
    dumping it again; a row whose result is not JSON (a damaged file) is answered without it,
    still a valid task_state, and the agent keeps serving."""
    import sqlite3
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id)
    data = b"kept whole"
    mark = client.mark()
    client.submit(echo("dmg-ok", data))
    client.submit(echo("dmg-bad", data))
    wait_state(client, "dmg-ok", "SUCCEEDED", since=mark)
    wait_state(client, "dmg-bad", "SUCCEEDED", since=mark)
    agent.signal(signal.SIGTERM)
    assert agent.wait_exit(5) == 0
    db = sqlite3.connect(agent.state_dir / "tasks.db")
    with db:
        n = db.execute("UPDATE tasks SET result = ? WHERE id = 'dmg-bad'", (b'{"output": {"size": 10, "sha',)).rowcount
    db.close()
    assert n == 1, "the ended task is not in the tasks table after a clean stop"
    start_agent(agent, brain, client)
    m2 = client.mark()
    ok, bad = client.status("dmg-ok"), client.status("dmg-bad")
    a = client.wait(lambda d: d.get("correlation") == ok, since=m2, timeout=5, what="status answer")
    b = client.wait(lambda d: d.get("correlation") == bad, since=m2, timeout=5, what="status answer")
    assert (a.doc["state"], a.doc["version"]) == ("SUCCEEDED", 3), a.doc
    check_output(a.doc, data)
    assert (b.doc["state"], b.doc["version"]) == ("SUCCEEDED", 3), b.doc
    assert "result" not in b.doc, b.doc
    assert_alive(agent)


def test_task_cancel_queued_and_running(broker, make_agent, make_brain, make_client, node_id):
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id, tasks__slots__cpu=1)
    mark = client.mark()
    client.submit(echo("long-run", sleep_ms=20000))
    wait_state(client, "long-run", "RUNNING", since=mark)
    client.submit(echo("long-wait", sleep_ms=20000))
    wait_state(client, "long-wait", "QUEUED", since=mark)
    time.sleep(0.3)
    assert not client.select(mark, is_state("long-wait", "RUNNING")), "ran with the only slot taken"

    t0 = time.monotonic()
    c1 = client.cancel("long-wait")
    a1 = client.wait(lambda d: d.get("correlation") == c1, since=mark, timeout=5, what="cancel answer (queued)")
    assert (a1.doc["state"], a1.doc["version"], a1.doc["code"]) == ("CANCELED", 2, "canceled"), a1.doc
    assert a1.doc["reason"], a1.doc
    assert time.monotonic() - t0 < 2.0

    t0 = time.monotonic()
    c2 = client.cancel("long-run")
    a2 = client.wait(lambda d: d.get("correlation") == c2, since=mark, timeout=5, what="cancel answer (running)")
    assert (a2.doc["state"], a2.doc["version"], a2.doc.get("cancel_requested")) == ("RUNNING", 2, True), a2.doc
    end = wait_state(client, "long-run", "CANCELED", since=mark, timeout=5)
    assert time.monotonic() - t0 < 1.5, f"canceled {time.monotonic() - t0:.2f} s after the request"
    assert (end.doc["version"], end.doc["code"]) == (3, "canceled"), end.doc
    assert end.doc["finished_ms"] - end.doc["started_ms"] < 5000, end.doc
    for tid in ("long-run", "long-wait"):
        assert len(terminals(client.select(mark), tid)) == 1, timeline(client.select(mark), tid)
    assert not [d for d in distinct(client.select(mark)) if d["task_id"] == "long-wait" and d["state"] == "RUNNING"]
    # A cancel of an ended task is answered with its final state; the slot is free again.
    c3 = client.cancel("long-wait")
    a3 = client.wait(lambda d: d.get("correlation") == c3, since=mark, timeout=5, what="cancel answer (ended)")
    assert (a3.doc["state"], a3.doc["version"]) == ("CANCELED", 2), a3.doc
    client.submit(echo("after-cancel", b"x", sleep_ms=50))
    wait_state(client, "after-cancel", "SUCCEEDED", since=mark, timeout=5)
    assert_alive(agent)


def test_task_timeout(broker, make_agent, make_brain, make_client, node_id):
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id, tasks__slots__cpu=1)
    mark = client.mark()
    client.submit(echo("slow", sleep_ms=5000, timeout_s=1))
    run = wait_state(client, "slow", "RUNNING", since=mark, timeout=5)
    end = client.wait(lambda d: d.get("task_id") == "slow" and d.get("state") in TERMINAL, since=mark,
                      timeout=4, what="slow ends")
    d = end.doc
    assert (d["state"], d["code"], d["version"]) == ("TIMED_OUT", "timed_out", 3), d
    assert "timeout_s" in d["reason"], d
    assert 1000 <= d["finished_ms"] - d["started_ms"] <= 2000, d
    assert end.t - run.t <= 2.5, f"TIMED_OUT {end.t - run.t:.2f} s after RUNNING"
    # The device stays usable: the next task runs on it.
    client.submit(echo("next", b"fine", sleep_ms=100))
    ok = wait_state(client, "next", "SUCCEEDED", since=mark, timeout=5)
    check_output(ok.doc, b"fine")
    assert ok.doc["device_id"] == "cpu"
    assert_alive(agent)


# --------------------------------------------------------------------------------------------
# scheduling


def test_task_priority_order(broker, make_agent, make_brain, make_client, node_id):
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id, tasks__slots__cpu=1)
    mark = client.mark()
    client.submit(echo("block", sleep_ms=1500))
    wait_state(client, "block", "RUNNING", since=mark)
    order = [("low-1", -5), ("high-1", 50), ("mid-1", 0), ("mid-2", 0), ("high-2", 50), ("mid-3", 0), ("low-2", -5)]
    for tid, prio in order:
        client.submit(echo(tid, sleep_ms=30, priority=prio), wait=False)
    ends = client.wait(lambda d: d.get("type") == "task_state" and d.get("state") == "SUCCEEDED",
                       since=mark, timeout=15, count=len(order) + 1, what="all SUCCEEDED")
    block_end = [e.doc for e in ends if e.doc["task_id"] == "block"][0]
    queued = {d["task_id"]: d for d in distinct(client.select(mark)) if d["state"] == "QUEUED"}
    late = [t for t, _ in order if queued[t]["accepted_ms"] > block_end["finished_ms"]]
    assert not late, f"test precondition: {late} admitted after the blocker ended"
    started = [d["task_id"] for d in distinct(client.select(mark)) if d["state"] == "RUNNING" and d["task_id"] != "block"]
    expected = ["high-1", "high-2", "mid-1", "mid-2", "mid-3", "low-1", "low-2"]
    assert started == expected, f"RUNNING order {started}, expected {expected}"
    done = {e.doc["task_id"]: e.doc for e in ends}
    by_start = sorted(expected, key=lambda t: done[t]["started_ms"])
    assert by_start == expected, f"started_ms order {by_start}: {[(t, done[t]['started_ms']) for t in by_start]}"
    assert all(done[t]["priority"] == p for t, p in order)
    assert_alive(agent)


def test_task_concurrency_slots_honoured(broker, make_agent, make_brain, make_client, node_id):
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id, tasks__slots__cpu=2)
    r = retained(broker, node_id, topics=("inventory",))
    devs = r["inventory"].doc["inventory"]["devices"]
    assert [d["id"] for d in devs if d["class"] == "cpu"] == ["cpu"], devs
    mark = client.mark()
    ids = [f"par-{i}" for i in range(6)]
    for tid in ids:
        client.submit(echo(tid, tid.encode(), sleep_ms=300), wait=False)
    ends = client.wait(lambda d: d.get("type") == "task_state" and d.get("state") in TERMINAL,
                       since=mark, timeout=15, count=6, what="6 ends")
    docs = {e.doc["task_id"]: e.doc for e in ends}
    assert sorted(docs) == ids and all(d["state"] == "SUCCEEDED" for d in docs.values()), docs
    for tid in ids:
        check_output(docs[tid], tid.encode())
    iv = sorted((d["started_ms"], d["finished_ms"]) for d in docs.values())
    events = sorted([(s, 1) for s, _ in iv] + [(f, -1) for _, f in iv])  # an end before a start at the same ms
    peak = cur = 0
    for _, delta in events:
        cur += delta
        peak = max(peak, cur)
    assert peak <= 2, f"{peak} tasks ran at once with tasks.slots.cpu 2: {iv}"
    assert peak == 2, f"never 2 at once with 2 slots: {iv}"
    span = max(f for _, f in iv) - min(s for s, _ in iv)
    assert span >= 3 * 300 - 20, f"6 x 300 ms on 2 slots took {span} ms"
    # RUNNING messages in arrival order: never a third start before an end.
    running = 0
    for d in distinct(client.select(mark)):
        if d["state"] == "RUNNING":
            running += 1
        elif d["state"] in TERMINAL:
            running -= 1
        assert running <= 2, f"a third RUNNING before an end: {timeline(client.select(mark), d['task_id'])}"
    assert_alive(agent)


# --------------------------------------------------------------------------------------------
# admission


def test_task_rejections_each_with_own_reason(broker, make_agent, make_brain, make_client, node_id, workdir):
    allowed = workdir / "inputs"
    allowed.mkdir()
    (allowed / "ok.bin").write_bytes(b"ok")
    (workdir / "x").write_bytes(b"outside")
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id,
                                 tasks__max_submit_bytes=2048, tasks__slots__cpu=1, tasks__max_queued=1,
                                 tasks__allowed_input_dirs=[str(allowed)])
    evil = make_client(broker, node_id, extra_subscriptions=("cpn/v1/evil/#",))
    sch = harness.schemas()

    def refused(doc=None, raw=None, code=None, words=(), tid=None, valid=False):
        mark, bmark = client.mark(), brain.mark()
        corr = f"rej-{time.monotonic_ns()}"
        client.submit(doc, raw=raw, correlation=corr, valid=valid)
        a = client.wait(lambda d: d.get("correlation") == corr, since=mark, timeout=5,
                        what=f"the answer to {raw or doc}")
        d = a.doc
        assert (d["state"], d["code"]) == ("REJECTED", code), f"{raw or doc}: {d}"
        assert d["task_id"] == (tid or ""), d
        assert d["version"] == (1 if tid else d["version"]), d
        for w in words:
            assert w in d["reason"], f"reason {d['reason']!r} does not name {w!r}"
        if tid:
            assert d["version"] == 1
            brain.wait_task(is_state(tid, "REJECTED"), since=bmark, timeout=5)
        time.sleep(0.1)
        assert len(client.select(mark, lambda x: x.get("correlation") == corr)) == 1, "more than one answer"
        assert_alive(agent)
        return d

    # The bad fixtures are bad by the schema as well (those the schema can tell).
    refused(raw="{not json", code="malformed", words=("JSON",))
    refused(raw="[1, 2]", code="malformed", words=("object",))
    refused(doc={"schema_version": 1, "kind": "echo"}, code="malformed", words=("id",))
    big = echo("too-big", os.urandom(2100))
    assert len(json.dumps(big)) > 2048
    refused(doc=big, code="oversize", words=("2048",), valid=True)
    bad = [
        (echo("v2", schema_version=2), "unsupported_schema_version", ("schema_version",)),
        (echo("unk-field", colour="red"), "invalid_field", ("colour",)),
        (echo("prio", priority=101), "invalid_field", ("priority",)),
        (echo("tmo", timeout_s=0), "invalid_field", ("timeout_s",)),
        (dict(echo("both"), input={"base64": "eA==", "path": str(allowed / "ok.bin")}), "invalid_field", ("input",)),
        (echo("bad id!"), "invalid_field", ("id",)),
    ]
    for doc, code, words in bad:
        assert sch.errors("task-submit.schema.json", doc), f"bad fixture validates: {doc}"
        refused(doc=doc, code=code, words=words, tid=None if doc["id"] == "bad id!" else doc["id"])
    good_by_schema = [
        ({"schema_version": 1, "id": "kind-x", "kind": "transcode"}, "unknown_kind", ("transcode", "echo")),
        (dict(echo("outside"), input={"path": "/etc/hostname"}), "path_not_allowed", ("input.path", "/etc/hostname")),
        (dict(echo("dotdot"), input={"path": str(allowed / ".." / "x")}), "path_not_allowed", ("input.path",)),
        (echo("fpga", pin=False, requirements={"device_class": "fpga"}), "unsatisfiable", ("device_class=fpga", "cpu")),
        (echo("neg-sleep", sleep_ms=-1), "invalid_field", ("params.sleep_ms",)),
        (dict(echo("b64"), input={"base64": "abc"}), "invalid_field", ("base64",)),
        (echo("unk-param", params={"speed": 3}), "invalid_field", ("speed",)),
    ]
    for doc, code, words in good_by_schema:
        assert not sch.errors("task-submit.schema.json", doc), doc
        d = refused(doc=doc, code=code, words=words, tid=doc["id"], valid=True)
        assert d["kind"] == doc["kind"], d

    # A reply topic outside tasks.reply_prefix: refused, and nothing published there.
    bmark = brain.mark()
    client.submit(echo("evil-5"), reply="cpn/v1/evil/x", correlation="e5")
    r5 = brain.wait_task(is_state("evil-5", "REJECTED"), since=bmark, timeout=5).doc
    assert r5["code"] == "invalid_field" and "cpn/v1/replies/" in r5["reason"], r5
    p311 = echo("evil-311", reply_to="cpn/v1/evil/y", correlation="e311")
    assert not sch.errors("task-submit.schema.json", p311)
    client.submit(p311, reply=None)
    r3 = brain.wait_task(is_state("evil-311", "REJECTED"), since=bmark, timeout=5).doc
    assert r3["code"] == "invalid_field" and "reply_to" in r3["reason"], r3
    time.sleep(0.3)
    assert not evil.select(), f"published outside the reply prefix: {evil.select()}"

    # queue_full: the only slot busy, one waiting (tasks.max_queued 1), the next refused.
    mark = client.mark()
    client.submit(echo("qf-block", sleep_ms=10000))
    wait_state(client, "qf-block", "RUNNING", since=mark)
    client.submit(echo("qf-wait", b"w"))
    wait_state(client, "qf-wait", "QUEUED", since=mark)
    d = refused(doc=echo("qf-over", b"o"), code="queue_full", words=("tasks.max_queued",), tid="qf-over", valid=True)
    client.cancel("qf-block")
    wait_state(client, "qf-block", "CANCELED", since=mark, timeout=5)
    check_output(wait_state(client, "qf-wait", "SUCCEEDED", since=mark, timeout=5).doc, b"w")
    # A rejected id is known: re-sending it is answered REJECTED again, it does not run.
    m = client.mark()
    client.submit(echo("qf-over", b"o"), correlation="again")
    a = client.wait(lambda x: x.get("correlation") == "again", since=m, timeout=5, what="answer")
    assert (a.doc["state"], a.doc["version"]) == ("REJECTED", 1), a.doc
    # The agent keeps serving.
    client.submit(echo("after-all", b"still here"))
    check_output(wait_state(client, "after-all", "SUCCEEDED", since=mark, timeout=5).doc, b"still here")
    assert_alive(agent)


def test_task_input_by_path(broker, make_agent, make_brain, make_client, node_id, workdir):
    allowed = workdir / "inputs"
    allowed.mkdir()
    small = os.urandom(1000)
    large = os.urandom(200_000)
    (allowed / "small.bin").write_bytes(small)
    (allowed / "large.bin").write_bytes(large)
    (workdir / "secret").write_bytes(b"secret")
    os.symlink(workdir / "secret", allowed / "link")
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id,
                                 tasks__allowed_input_dirs=[str(allowed)], tasks__inline_result_bytes=4096)
    mark = client.mark()
    client.submit(dict(echo("f-small"), input={"path": str(allowed / "small.bin")}))
    client.submit(dict(echo("f-large"), input={"path": str(allowed / "large.bin")}))
    client.submit(dict(echo("f-link"), input={"path": str(allowed / "link")}))
    client.submit(dict(echo("f-missing"), input={"path": str(allowed / "missing")}))
    d = wait_state(client, "f-small", "SUCCEEDED", since=mark).doc
    check_output(d, small)
    d = wait_state(client, "f-large", "SUCCEEDED", since=mark).doc
    out = d["result"]["output"]
    assert "base64" not in out and out["size"] == len(large) and out["sha256"] == sha(large), out
    p = pathlib.Path(out["path"])
    assert p.is_absolute() and p.parent == (agent.state_dir / "results").resolve(), out
    content = p.read_bytes()
    assert content == large and sha(content) == out["sha256"]
    d = wait_state(client, "f-link", "REJECTED", since=mark).doc
    assert d["code"] == "path_not_allowed" and "input.path" in d["reason"], d
    d = wait_state(client, "f-missing", "REJECTED", since=mark).doc
    assert d["code"] == "input_unreadable" and "input.path" in d["reason"], d
    assert_alive(agent)


# --------------------------------------------------------------------------------------------
# crashes and outages


def test_task_kill9_while_running(broker, make_agent, make_brain, make_client, node_id):
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id)
    data = b"run me twice"
    mark, bmark = client.mark(), brain.mark()
    client.submit(echo("k9", data, sleep_ms=2000))
    run = wait_state(client, "k9", "RUNNING", since=mark)
    assert run.doc["attempts"] == 1
    time.sleep(0.3)
    agent.kill9()
    start_agent(agent, brain, client)
    end = client.wait(lambda d: d.get("task_id") == "k9" and d.get("state") in TERMINAL, since=mark,
                      timeout=10, what="k9 ends")
    time.sleep(0.5)  # re-sends of the same version, if any, arrive now
    for msgs in (client.select(mark), brain.task_events(bmark, "k9")):
        assert_versions_increase(msgs, "k9")
        ends = terminals(msgs, "k9")
        assert [(e["state"], e["attempts"]) for e in ends] == [("SUCCEEDED", 2)], timeline(msgs, "k9")
    d = end.doc
    assert d["result"]["metrics"]["attempts"] == 2, d
    check_output(d, data)
    assert d["version"] == 5, f"QUEUED 1, RUNNING 2, re-QUEUED 3, RUNNING 4, SUCCEEDED 5: {timeline(client.select(mark), 'k9')}"
    assert_alive(agent)


def test_task_that_keeps_killing_the_agent_is_not_run_forever(broker, make_agent, make_brain, make_client, node_id):
    """A task that is running whenever the agent dies (a model that crashes a vendor library, a
    driver fault) is started tasks.max_attempts times, then failed with code agent_restarted,
    instead of taking the node down again at every restart; the next task runs as usual."""
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id, tasks__max_attempts=2)
    mark = client.mark()
    client.submit(echo("poison", b"x", sleep_ms=5000))
    assert wait_state(client, "poison", "RUNNING", since=mark).doc["attempts"] == 1
    agent.kill9()
    start_agent(agent, brain, client)
    client.wait(lambda d: d.get("task_id") == "poison" and d.get("state") == "RUNNING" and d.get("attempts") == 2,
                since=mark, timeout=10, what="poison's second start")
    agent.kill9()
    start_agent(agent, brain, client)
    end = client.wait(lambda d: d.get("task_id") == "poison" and d.get("state") in TERMINAL, since=mark,
                      timeout=10, what="poison ends")
    d = end.doc
    assert (d["state"], d["code"]) == ("FAILED", "agent_restarted"), timeline(client.select(mark), "poison")
    assert "2 time(s) of 2 allowed (tasks.max_attempts); it is not run again" in d["reason"], d
    assert any("for the 2 time(s) allowed (tasks.max_attempts)" in line for line in agent.stderr().splitlines()), \
        "the agent's log names the task it gave up on"
    mark2 = client.mark()
    client.submit(echo("after-poison", b"y"))
    check_output(wait_state(client, "after-poison", "SUCCEEDED", since=mark2).doc, b"y")
    assert_alive(agent)


def test_task_delivered_states_not_published_again_after_kill9(broker, make_agent, make_brain, make_client, node_id):
    """The broker's acknowledgement of a state is journaled with the next commit, or within 100 ms
    when none comes (protocol.md, "Durability"): a node killed a moment after its last delivery
    publishes none of those states again when it restarts."""
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id)
    mark, bmark = client.mark(), brain.mark()
    ids = [f"pub-{i}" for i in range(30)]
    for tid in ids:
        client.submit(echo(tid, tid.encode()))
    for tid in ids:
        wait_state(client, tid, "SUCCEEDED", since=mark)
        brain.wait_task(is_state(tid, "SUCCEEDED"), since=bmark, timeout=5)
    time.sleep(0.6)  # the last deliveries' marks: no further commit carries them, the delay does
    agent.kill9()
    bmark2, mark2 = brain.mark(), client.mark()
    start_agent(agent, brain, client)
    time.sleep(1.5)  # a re-publication from the journal would come right after the birth
    again = [m.doc for m in brain.task_events(bmark2) + client.select(mark2) if m.doc.get("task_id") in ids]
    assert not again, f"{len(again)} delivered state(s) published again after the restart: {again[:3]}"
    # The journal still holds them: a status query answers from it.
    m3 = client.mark()
    cs = client.status(ids[-1])
    s = client.wait(lambda d: d.get("correlation") == cs, since=m3, timeout=5, what="status answer")
    assert (s.doc["state"], s.doc["version"]) == ("SUCCEEDED", 3), s.doc
    assert_alive(agent)


def test_task_burst_every_state_published(broker, make_agent, make_brain, make_client, node_id):
    """A brain pipelines submits (QoS 1, without waiting for each answer): every task's
    terminal state must still reach the reply topic and the event topic. No crash, no outage:
    a state change the agent committed must never stay unpublished."""
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id)
    n = 100
    ids = [f"pipe-{i:03d}" for i in range(n)]
    mark, bmark = client.mark(), brain.mark()
    for tid in ids:
        client.submit(echo(tid, tid.encode()), wait=False)
    ended_r = lambda: {d["task_id"] for d in distinct(client.select(mark)) if d["state"] in TERMINAL}
    ended_e = lambda: {d["task_id"] for d in distinct(brain.task_events(bmark)) if d["state"] in TERMINAL}
    try:
        wait_until(lambda: set(ids) <= ended_r() and set(ids) <= ended_e(), 10,
                   what=f"all {n} pipelined tasks to end on the reply and event topics")
    except AssertionError:
        left = sorted(set(ids) - (ended_r() & ended_e()))
        msgs = client.select(mark)
        m = client.mark()
        corr = client.status(left[0])
        now = client.wait(lambda d: d.get("correlation") == corr, since=m, timeout=5, what="status answer").doc
        raise AssertionError(
            f"{len(left)} of {n} tasks never got a terminal state published (reply: {n - len(set(ids) - ended_r())} "
            f"ended, event topic: {n - len(set(ids) - ended_e())} ended); e.g. {left[0]} seen as "
            f"{timeline(msgs, left[0])} while a status query answers {now['state']} v{now['version']}; "
            f"agent log: {[l for l in agent.stderr().splitlines() if 'warn' in l][:2]}") from None
    for tid in ids:
        ends = terminals(client.select(mark), tid)
        assert len(ends) == 1 and ends[0]["state"] == "SUCCEEDED", timeline(client.select(mark), tid)
        check_output(ends[0], tid.encode())
    assert_alive(agent)


def test_task_kill9_during_publication(broker, make_agent, make_brain, make_client, node_id):
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id, tasks__journal_sync="normal")
    n = 200
    ids = [f"burst-{i:03d}" for i in range(n)]
    payload = {tid: tid.encode() * 3 for tid in ids}
    mark, bmark = client.mark(), brain.mark()
    for tid in ids:
        client.submit(echo(tid, payload[tid]), wait=False)
    accepted = lambda: {d["task_id"] for d in distinct(client.select(mark) + brain.task_events(bmark))
                        if d["version"] >= 1}
    wait_until(lambda: len(accepted()) >= 20, 10, step=0.005, what="20 tasks accepted")
    agent.kill9()
    before_kill = accepted()
    print(f"{len(before_kill)} of {n} accepted before the kill -9")
    start_agent(agent, brain, client)
    every = lambda: client.select(mark) + brain.task_events(bmark)
    ended = lambda: {d["task_id"] for d in distinct(every()) if d["state"] in TERMINAL}
    wait_until(lambda: before_kill <= ended(), 15, what="every task accepted before the kill to end")
    # Never acknowledged: re-sent (safe: the id is the idempotency key), then they must end too.
    missing = [t for t in ids if t not in accepted()]
    print(f"{len(missing)} not acknowledged; re-sent")
    for tid in missing:
        client.submit(echo(tid, payload[tid]), wait=False)
    try:
        wait_until(lambda: set(ids) <= ended(), 15, what="every task to end")
    except AssertionError:
        left = sorted(set(ids) - ended())
        msgs = every()
        raise AssertionError(f"{len(left)} tasks never ended: " + "; ".join(
            f"{t}: {timeline(msgs, t)}" for t in left[:10])) from None
    time.sleep(0.5)
    msgs = every()
    for tid in ids:
        assert_versions_increase(client.select(mark), tid)
        assert_versions_increase(brain.task_events(bmark, tid), tid)
        ends = terminals(msgs, tid)
        assert len(ends) == 1, f"{tid}: terminal states {timeline(msgs, tid)}"
        assert ends[0]["state"] == "SUCCEEDED", ends[0]
        check_output(ends[0], payload[tid])
    assert_alive(agent)


def test_task_broker_restart_no_result_lost(make_broker, make_agent, make_brain, make_client, node_id):
    broker = make_broker(persistence=True)
    brain = make_brain(broker, node_id, persistent=True, client_id=f"brain-{node_id}")
    client = make_client(broker, node_id, persistent=True, client_id=f"sub-{node_id}")
    agent = make_agent(node_id, broker)
    start_agent(agent, brain, client)
    mark, bmark = client.mark(), brain.mark()
    during = [f"out-{i}" for i in range(3)]  # end while the broker is down
    for tid in during:
        client.submit(echo(tid, tid.encode(), sleep_ms=1500))
    client.submit(echo("out-late", b"late", sleep_ms=7000))  # ends after the reconnect
    for tid in during + ["out-late"]:
        wait_state(client, tid, "RUNNING", since=mark)
    broker.stop()
    t_stop = time.monotonic()
    time.sleep(3.0)
    assert_alive(agent)
    broker.start()
    for tid in during + ["out-late"]:
        client.wait(is_state(tid, "SUCCEEDED"), since=mark, timeout=12, what=f"{tid} SUCCEEDED on the reply topic")
        brain.wait_task(is_state(tid, "SUCCEEDED"), since=bmark, timeout=5, what=f"{tid} SUCCEEDED on the event topic")
    print(f"all ended {time.monotonic() - t_stop:.1f} s after the broker stopped")
    time.sleep(0.5)
    for tid in during + ["out-late"]:
        for msgs in (client.select(mark), brain.task_events(bmark, tid)):
            assert_versions_increase(msgs, tid)
            ends = terminals(msgs, tid)
            assert len(ends) == 1 and ends[0]["state"] == "SUCCEEDED" and ends[0]["attempts"] == 1, timeline(msgs, tid)
            check_output(ends[0], b"late" if tid == "out-late" else tid.encode())
    assert_alive(agent)


def test_task_two_agents_shared_queue(broker, make_agent, make_brain, make_client, node_id):
    nodes = [f"{node_id[:58]}-a", f"{node_id[:58]}-b"]
    brains = [make_brain(broker, n) for n in nodes]
    client = make_client(broker, nodes)
    agents = [make_agent(n, broker, tasks__queues=["q1"]) for n in nodes]
    for a, b in zip(agents, brains):
        start_agent(a, b, client)
    mark = client.mark()
    ids = [f"shared-{i:02d}" for i in range(40)]
    for tid in ids:
        client.submit(echo(tid, tid.encode(), sleep_ms=20), queue="q1", wait=False)
    wait_until(lambda: {d["task_id"] for d in distinct(client.select(mark)) if d["state"] in TERMINAL} >= set(ids),
               15, what="all 40 queue tasks to end")
    time.sleep(1.0)  # a second run of some task, if any, would show now
    msgs = client.select(mark)
    per_node = {n: 0 for n in nodes}
    for tid in ids:
        ends = terminals(msgs, tid)
        assert len(ends) == 1, f"{tid} ended {len(ends)} times: {[(e['node_id'], e['version'], e['state']) for e in ends]}"
        e = ends[0]
        assert e["state"] == "SUCCEEDED" and e["queue"] == "q1" and e["attempts"] == 1, e
        check_output(e, tid.encode())
        starts = [d for d in distinct(msgs) if d["task_id"] == tid and d["state"] == "RUNNING"]
        assert [d["node_id"] for d in starts] == [e["node_id"]], f"{tid} started on {[d['node_id'] for d in starts]}"
        per_node[e["node_id"]] += 1
    print(f"distribution: {per_node}")
    assert all(v > 0 for v in per_node.values()), f"one node got all the work: {per_node}"
    # Each node's event topics tell the same story.
    for n, b in zip(nodes, brains):
        ran = {m.doc["task_id"] for m in b.task_events(0) if m.doc.get("state") == "SUCCEEDED"}
        assert len(ran) == per_node[n], (n, len(ran), per_node)
    for a in agents:
        assert_alive(a)


def test_task_device_fault_then_reprobe(broker, make_agent, make_brain, make_client, node_id):
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id)
    mark = client.mark()
    client.submit(echo("fault", sleep_ms=50, params={"device_fault": True}))
    f = client.wait(lambda d: d.get("task_id") == "fault" and d.get("state") in TERMINAL, since=mark,
                    timeout=5, what="fault ends")
    assert (f.doc["state"], f.doc["code"]) == ("FAILED", "device_fault"), f.doc
    assert "cpu" in f.doc["reason"], f.doc
    client.submit(echo("after-fault", b"back"))
    q = wait_state(client, "after-fault", "QUEUED", since=mark)
    time.sleep(0.3)
    early = client.select(mark, is_state("after-fault", "RUNNING"))
    assert not early or early[0].t - f.t >= 0.8, "a task started on the faulted device before its re-probe"
    ok = wait_state(client, "after-fault", "SUCCEEDED", since=mark, timeout=10)
    check_output(ok.doc, b"back")
    waited = ok.doc["started_ms"] - f.doc["finished_ms"]
    assert 800 <= waited <= 8000, f"started {waited} ms after the fault (re-probe after 1 s)"
    assert q.index < ok.index
    wait_until(lambda: "answered its re-probe" in agent.stderr(), 5, what="the re-probe in the log")
    assert_alive(agent)


def test_task_bench_kind(broker, make_agent, make_brain, make_client, node_id):
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id)
    bmark = brain.mark()
    mark = client.mark()
    client.submit({"schema_version": 1, "id": "bench-1", "kind": "bench",
                   "params": {"mode": "quick", "devices": ["cpu"]}, "requirements": PIN, "timeout_s": 300})
    end = client.wait(lambda d: d.get("task_id") == "bench-1" and d.get("state") in TERMINAL, since=mark,
                      timeout=150, what="bench ends")
    d = end.doc
    assert d["state"] == "SUCCEEDED", d
    data = d["result"]["data"]
    assert data["mode"] == "quick" and data["seconds"] > 0 and data["l2"] > 0, data
    assert timeline(client.select(mark), "bench-1") == [(2, "RUNNING"), (3, "SUCCEEDED")]
    cap = brain.wait_for("capacity", lambda x: x["status"] == "measured", since=bmark, timeout=10)
    assert abs(cap.doc["capacity"]["l2"]["node"] - data["l2"]) < 1e-9, (cap.doc["capacity"]["l2"], data)
    r = retained(broker, node_id, topics=("capacity",))
    assert r["capacity"].doc["status"] == "measured", r["capacity"].doc
    assert_alive(agent)


# --------------------------------------------------------------------------------------------
# the render kind (docs/render.md)

RENDER_SCENE = """
camera: {position: [278, 278, -800], look_at: [278, 278, 0], fov: 40}
materials:
  white: {type: diffuse, albedo: [0.73, 0.73, 0.73]}
  red: {type: diffuse, albedo: [0.65, 0.05, 0.05]}
  light: {type: emissive, emission: [15, 15, 15]}
objects:
  - {type: quad, corner: [0, 0, 0], u: [0, 555, 0], v: [0, 0, 555], material: red}
  - {type: quad, corner: [213, 554, 227], u: [130, 0, 0], v: [0, 0, 105], material: light}
  - {type: quad, corner: [0, 0, 0], u: [555, 0, 0], v: [0, 0, 555], material: white}
  - {type: quad, corner: [0, 0, 555], u: [555, 0, 0], v: [0, 555, 0], material: white}
"""


def render(task_id, params, scene=RENDER_SCENE, path=None, **fields):
    doc = {"schema_version": 1, "id": task_id, "kind": "render", "params": params, "requirements": dict(PIN)}
    doc["input"] = {"path": str(path)} if path else {"base64": b64(scene.encode())}
    doc.update(fields)
    return doc


def output_bytes(d):
    out = d["result"]["output"]
    data = base64.b64decode(out["base64"]) if "base64" in out else pathlib.Path(out["path"]).read_bytes()
    assert sha(data) == out["sha256"], out
    return data


def pfm_pixels(data):
    head, _, rest = data.partition(b"\n")
    dims, _, rest = rest.partition(b"\n")
    _, _, pixels = rest.partition(b"\n")
    w, h = map(int, dims.split())
    assert head == b"PF" and len(pixels) == w * h * 12, (head, dims, len(pixels))
    row = w * 12
    return w, h, [pixels[(h - 1 - y) * row:(h - y) * row] for y in range(h)]  # top row first


def test_task_render_png_with_metrics_and_progress(broker, make_agent, make_brain, make_client, node_id):
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id)
    mark = client.mark()
    client.submit(render("r-png", {"width": 40, "height": 30, "spp": 40, "seed": 3}))
    d = wait_state(client, "r-png", "SUCCEEDED", since=mark, timeout=60).doc
    png = output_bytes(d)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR", png[:16]
    assert int.from_bytes(png[16:20], "big") == 40 and int.from_bytes(png[20:24], "big") == 30
    data = d["result"]["data"]
    assert data["primary_rays"] == 40 * 30 * 40 and data["secondary_rays"] > 0, data
    assert data["rays_per_s"] > 0 and data["samples_per_s"] > 0 and data["format"] == "png", data
    assert data["devices"][0]["device_id"] == "cpu" and data["devices"][0]["backend"] == "cpu", data
    assert data["triangles"] == 8 and data["tile"] == [0, 0, 40, 30], data
    assert not harness.schemas().errors("render-result.schema.json", data), harness.schemas().errors("render-result.schema.json", data)
    prog = [m.doc for m in client.select(mark) if m.doc["type"] == "task_progress" and m.doc["task_id"] == "r-png"]
    assert prog and "samples per pixel done" in prog[0].get("message", ""), prog
    # Same seed, same image; the render kind is deterministic.
    client.submit(render("r-png-2", {"width": 40, "height": 30, "spp": 40, "seed": 3}))
    d2 = wait_state(client, "r-png-2", "SUCCEEDED", since=mark, timeout=60).doc
    assert output_bytes(d2) == png
    assert_alive(agent)


def test_task_render_tiles_assemble_into_the_frame(broker, make_agent, make_brain, make_client, node_id, workdir):
    scenes = workdir / "scenes"
    scenes.mkdir()
    # A mesh by a path relative to the scene file, inside the allowed directory.
    (scenes / "box.obj").write_text("v 200 0 200\nv 350 0 200\nv 350 150 200\nv 200 150 200\n"
                                    "v 200 0 350\nv 350 0 350\nv 350 150 350\nv 200 150 350\n"
                                    "f 1 2 3 4\nf 5 8 7 6\nf 1 5 6 2\nf 4 3 7 8\nf 1 4 8 5\nf 2 6 7 3\n")
    (scenes / "scene.yaml").write_text(RENDER_SCENE + "  - {type: mesh, file: box.obj, material: white}\n")
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id,
                                      tasks__allowed_input_dirs=[str(scenes)])
    mark = client.mark()
    base = {"width": 36, "height": 28, "spp": 6, "format": "pfm"}
    client.submit(render("frame", base, path=scenes / "scene.yaml"))
    client.submit(render("top", dict(base, tile=[0, 0, 36, 11]), path=scenes / "scene.yaml"))
    client.submit(render("bottom", dict(base, tile=[0, 11, 36, 28]), path=scenes / "scene.yaml"))
    rows = {}
    for tid in ("frame", "top", "bottom"):
        d = wait_state(client, tid, "SUCCEEDED", since=mark, timeout=60).doc
        rows[tid] = pfm_pixels(output_bytes(d))
        assert d["result"]["data"]["triangles"] == 8 + 12, d["result"]["data"]
    w, h, full = rows["frame"]
    assert (w, h) == (36, 28)
    assert rows["top"][:2] == (36, 11) and rows["bottom"][:2] == (36, 17)
    assert rows["top"][2] + rows["bottom"][2] == full, "the tiles differ from the frame"
    assert_alive(agent)


def test_task_render_bad_scenes_fail_with_the_reason(broker, make_agent, make_brain, make_client, node_id, workdir):
    allowed = workdir / "allowed"
    allowed.mkdir()
    (workdir / "outside.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (allowed / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 nan 0\nf 1 2 3\n")
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id,
                                      tasks__allowed_input_dirs=[str(allowed)])
    head = "camera: {position: [0, 0, 5], look_at: [0, 0, 0]}\nmaterials:\n  w: {type: diffuse}\nobjects:\n"
    cases = {
        "bad-material": (head + "  - {type: sphere, center: [0, 0, 0], radius: 1, material: gold}\n",
                         "scene (inline input):5:60: objects[0] (sphere).material: unknown material 'gold'"),
        "bad-outside": (head + f"  - {{type: mesh, file: {workdir / 'outside.obj'}, material: w}}\n",
                        "is outside the allowed directories"),
        "bad-relative": (head + "  - {type: mesh, file: nan.obj, material: w}\n",
                         "is relative, and this scene has no directory"),
        "bad-nan": (head + f"  - {{type: mesh, file: {allowed / 'nan.obj'}, material: w}}\n",
                    "nan.obj:3: vertex coordinate 'nan' is not a finite number"),
        "bad-huge": (head + f"  - {{type: mesh, file: {allowed / 'nan.obj'}, material: w, triangles: 1000000000}}\n",
                     "declares 1000000000 triangles"),
        "bad-yaml": ("camera: [", "not valid YAML or JSON"),
    }
    mark = client.mark()
    for tid, (scene, _) in cases.items():
        client.submit(render(tid, {"width": 8, "height": 8, "spp": 1}, scene=scene))
    for tid, (_, why) in cases.items():
        d = client.wait(lambda x, t=tid: x.get("task_id") == t and x.get("state") in TERMINAL, since=mark,
                        timeout=20, what=f"{tid} ends").doc
        assert d["state"] == "FAILED" and d["code"] == "failed", d
        assert why in d["reason"], (tid, d["reason"])
    # Bad params are refused at admission.
    client.submit(render("bad-params", {"spp": 0}))
    d = wait_state(client, "bad-params", "REJECTED", since=mark).doc
    assert d["code"] == "invalid_field" and "params.spp must be an integer from 1 to 1048576" in d["reason"], d
    client.submit(render("no-scene", {"spp": 1}, scene=""))
    d = client.wait(lambda x: x.get("task_id") == "no-scene" and x.get("state") in TERMINAL, since=mark, timeout=20).doc
    assert d["state"] in ("FAILED", "REJECTED"), d
    assert_alive(agent)
    # The node still renders.
    client.submit(render("after", {"width": 8, "height": 8, "spp": 1}))
    wait_state(client, "after", "SUCCEEDED", since=mark, timeout=30)


def test_task_render_cancel_and_timeout(broker, make_agent, make_brain, make_client, node_id):
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id)
    mark = client.mark()
    client.submit(render("long", {"width": 320, "height": 240, "spp": 100000}))
    wait_state(client, "long", "RUNNING", since=mark, timeout=10)
    time.sleep(0.5)
    t0 = time.monotonic()
    client.cancel("long")
    wait_state(client, "long", "CANCELED", since=mark, timeout=10)
    assert time.monotonic() - t0 < 5, "the render did not stop between bands"
    client.submit(render("slow", {"width": 320, "height": 240, "spp": 100000}, timeout_s=1))
    d = client.wait(lambda x: x.get("task_id") == "slow" and x.get("state") in TERMINAL, since=mark, timeout=15).doc
    assert d["state"] == "TIMED_OUT", d
    assert_alive(agent)


# --------------------------------------------------------------------------------------------
# infer (docs/inference.md): the digits CNN from tests/fixtures/infer

INFER_FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "infer"
FUZZ_CORPUS = pathlib.Path(__file__).resolve().parents[2] / "fuzz" / "corpus"


def npy_bytes(array):
    import io
    import numpy as np
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array) if array.ndim else array)  # ascontiguousarray makes a scalar [1]
    return buf.getvalue()


def infer(task_id, params, model=None, path=None, **fields):
    doc = {"schema_version": 1, "id": task_id, "kind": "infer", "params": params, "requirements": dict(PIN)}
    if path:
        doc["input"] = {"path": str(path)}
    else:
        doc["input"] = {"base64": b64(model if model is not None else (INFER_FIXTURES / "digits-cnn.onnx").read_bytes())}
    doc.update(fields)
    return doc


def test_task_infer_digits_model_cached_between_tasks(broker, make_agent, make_brain, make_client, node_id, workdir):
    import io
    import numpy as np
    allowed = workdir / "models"
    allowed.mkdir()
    (allowed / "digits.onnx").write_bytes((INFER_FIXTURES / "digits-cnn.onnx").read_bytes())
    x = np.load(INFER_FIXTURES / "digits-test-x.npy")[:8]
    y = np.load(INFER_FIXTURES / "digits-test-y.npy")[:8]
    (allowed / "x.npy").write_bytes(npy_bytes(x))
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id,
                                      tasks__allowed_input_dirs=[str(allowed)])
    mark = client.mark()
    # The model by path, the images inline.
    client.submit(infer("digits-1", {"inputs": {"image": {"base64": b64(npy_bytes(x))}}}, path=allowed / "digits.onnx"))
    d = wait_state(client, "digits-1", "SUCCEEDED", since=mark, timeout=60).doc
    logits = np.load(io.BytesIO(output_bytes(d)))
    assert logits.shape == (8, 10) and logits.dtype == np.float32, logits.shape
    assert (logits.argmax(1) == y).sum() >= 7, (logits.argmax(1), y)
    data = d["result"]["data"]
    assert data["device_id"] == "cpu" and data["backend"] == "cpu" and data["model_cached"] is False, data
    assert data["nodes"] == 6 and data["model_nodes"] == 10 and data["fallback_nodes"] == 0, data
    assert data["run_s"] > 0 and data["flops"] > 0 and data["gflops_per_s"] > 0, data
    assert data["precision"] == "fp32" and "precision_note" not in data, data
    out = data["outputs"][0]
    assert out["name"] == "logits" and out["shape"] == [8, 10] and len(out["values"]) == 80, out
    # The same model again (inline this time, the same bytes), the images by path: neither
    # loaded nor compiled again; the same answer in another format.
    client.submit(infer("digits-2", {"inputs": {"image": {"path": str(allowed / "x.npy")}}, "output_format": "cpnt"}))
    d2 = wait_state(client, "digits-2", "SUCCEEDED", since=mark, timeout=60).doc
    data2 = d2["result"]["data"]
    assert data2["model_cached"] is True and data2["compile_s"] == 0, data2
    cpnt = output_bytes(d2)
    assert cpnt[:4] == b"CPNT"
    assert np.array_equal(np.frombuffer(cpnt[-320:], dtype=np.float32).reshape(8, 10), logits)
    # float16 asked of a node whose device computes float32: the same answer, and the result says so.
    client.submit(infer("digits-fp16", {"inputs": {"image": {"path": str(allowed / "x.npy")}}, "precision": "fp16"}))
    d3 = wait_state(client, "digits-fp16", "SUCCEEDED", since=mark, timeout=60).doc
    data3 = d3["result"]["data"]
    assert data3["precision"] == "fp32", data3
    assert data3["precision_note"] == "cpu computes float32 only: fp16 was asked for", data3
    assert np.array_equal(np.load(io.BytesIO(output_bytes(d3))), logits)
    assert_alive(agent)
    # The convolutions started oneDNN's OpenMP threads and OpenBLAS's: they must have the
    # daemon's blocked signal mask, so SIGTERM still stops the agent cleanly instead of killing it.
    agent.signal(signal.SIGTERM)
    rc = agent.wait_exit(10)
    assert rc == 0, f"exit code {rc} after SIGTERM once inference threads exist"


def test_task_infer_bad_models_and_inputs_fail_with_the_reason(broker, make_agent, make_brain, make_client, node_id, workdir):
    import numpy as np
    allowed = workdir / "allowed"
    allowed.mkdir()
    (workdir / "outside.npy").write_bytes(npy_bytes(np.zeros((1, 1, 8, 8), np.float32)))
    agent, brain, client = setup_node(make_agent, make_brain, make_client, broker, node_id,
                                      tasks__allowed_input_dirs=[str(allowed)])
    good = {"image": {"base64": b64(npy_bytes(np.zeros((2, 1, 8, 8), np.float32)))}}
    nan = np.zeros((1, 1, 8, 8), np.float32)
    nan[0, 0, 3, 4] = np.nan
    model = (INFER_FIXTURES / "digits-cnn.onnx").read_bytes()
    cases = {
        "garbage": (b"\x08\x01garbage garbage garbage", good, "not an ONNX model"),
        "truncated": (model[: len(model) // 2], good, "model (inline input)"),
        "wrong-name": (model, {"pixels": good["image"]}, "input 'image' is missing"),
        "wrong-shape": (model, {"image": {"base64": b64(npy_bytes(np.zeros((2, 8, 8), np.float32)))}},
                        "input 'image': expected shape [batch, 1, 8, 8], got [2, 8, 8]"),
        "wrong-type": (model, {"image": {"base64": b64(npy_bytes(np.zeros((2, 1, 8, 8), np.float64)))}},
                       "input 'image': expected float32, got float64"),
        "nan": (model, {"image": {"base64": b64(npy_bytes(nan))}}, "input 'image': element 28 is NaN"),
        "outside": (model, {"image": {"path": str(workdir / "outside.npy")}}, "is outside the allowed input directories"),
        "not-a-tensor": (model, {"image": {"base64": b64(b"hello, not a tensor")}}, "params.inputs.image"),
        # Slice of a scalar read past a rank-0 shape and crashed the agent (the operator sweep
        # found it; docs/fuzzing.md).
        "slice-of-scalar": ((FUZZ_CORPUS / "onnx_model" / "regress-slice-scalar.onnx").read_bytes(),
                            {"x": {"base64": b64(npy_bytes(np.array(1.5, np.float32)))}},
                            "node 'slice' (Slice): axis 0 is out of range for rank 0"),
    }
    mark = client.mark()
    for tid, (m, inputs, _) in cases.items():
        client.submit(infer(tid, {"inputs": inputs}, model=m))
    for tid, (_, _, why) in cases.items():
        d = client.wait(lambda x, t=tid: x.get("task_id") == t and x.get("state") in TERMINAL, since=mark,
                        timeout=30, what=f"{tid} ends").doc
        assert d["state"] == "FAILED" and d["code"] == "failed", d
        assert why in d["reason"], (tid, d["reason"])
    client.submit(infer("bad-params", {"output_format": "jpg"}))
    d = wait_state(client, "bad-params", "REJECTED", since=mark).doc
    assert d["code"] == "invalid_field" and "params.output_format: expected npy, pb or cpnt" in d["reason"], d
    client.submit(infer("bad-precision", {"inputs": good, "precision": "int4"}))
    d = wait_state(client, "bad-precision", "REJECTED", since=mark).doc
    assert d["code"] == "invalid_field" and "params.precision: expected fp32 or fp16" in d["reason"], d
    assert_alive(agent)
    client.submit(infer("after", {"inputs": good}))
    wait_state(client, "after", "SUCCEEDED", since=mark, timeout=30)
