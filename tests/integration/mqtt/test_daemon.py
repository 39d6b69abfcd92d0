"""Black-box tests of `cpn-agent run`: the real binary against a real mosquitto 2.0 (started by
the fixtures on free loopback ports, generated config), observed by a "brain" client that
validates every message it receives against docs/schemas (harness.Brain).

Each test function is registered as its own CTest test (tests/CMakeLists.txt, mqtt.<name>).
Timing bounds follow the contract: keepalive 5 s, reconnect backoff 200..2000 ms, telemetry
every interval_s, SIGTERM exit within 2 s. The suite takes about 75 s under `ctest -j2`; the
30 s broker outage is the longest test.
"""

import json
import os
import re
import signal
import time

import harness
from harness import retained, wait_until, write_private

START_TIMEOUT = 15.0  # discovery (cpu plugin only) + connect + birth
COMMANDS = {"rebirth", "rebenchmark", "set_telemetry_interval", "set_normalization"}


# --------------------------------------------------------------------------------------------
# helpers


def start_and_wait_birth(agent, brain, timeout=START_TIMEOUT, pred=None):
    mark = brain.mark()
    agent.start()
    try:
        return brain.wait_birth(since=mark, timeout=timeout, pred=pred)
    except AssertionError as e:
        state = "alive" if agent.alive() else f"exit status {agent.proc.returncode}"
        raise AssertionError(f"no birth within {timeout} s of starting the agent ({state}): {e}") from None


def wait_telemetry(brain, since, count, timeout, pred=None, what="telemetry"):
    return brain.wait_for("telemetry", pred, since=since, timeout=timeout, count=count, what=what)


def seqs(msgs):
    return [m.doc["seq"] for m in msgs]


def assert_consecutive(values, what="telemetry seq"):
    gaps = [(a, b) for a, b in zip(values, values[1:]) if b != a + 1]
    assert not gaps, f"{what} not consecutive (each +1): pairs {gaps[:10]} in {values}"


def drop_inflight_duplicate(msgs, t_cut):
    """MQTT QoS 1 is at least once: the one message in flight when the broker went down may have
    reached the broker without its PUBACK reaching the agent, and is then rightly sent again.
    Removes that one re-send (same seq and timestamp_ms as the last message received before
    t_cut, arriving after it); any other duplicate stays for the test to catch."""
    before = [m for m in msgs if m.t <= t_cut]
    if not before:
        return msgs
    last = before[-1].doc
    resent = [m for m in msgs if m.t > t_cut and m.doc["seq"] == last["seq"]
              and m.doc["timestamp_ms"] == last["timestamp_ms"]]
    if resent:
        print(f"note: seq {last['seq']} was in flight when the broker stopped and was sent again (QoS 1)")
        return [m for m in msgs if m is not resent[0]]
    return msgs


def count_in_window(msgs, t0, t1):
    return len([m for m in msgs if t0 < m.t <= t1])


def no_state_change_since(brain, mark):
    state = brain.select("state", since=mark)
    assert not state, f"unexpected state messages (re-birth?) after the command: {state}"


def assert_alive(agent):
    if not agent.alive():
        rc = agent.proc.returncode
        why = f"was killed by signal {-rc} ({signal.Signals(-rc).name})" if rc < 0 else f"exited with {rc}"
        raise AssertionError(f"the agent {why}; it must stay alive")


# Commands the brain sends: valid ones must validate against command.schema.json, the bad ones
# must not (test_command_fixtures_match_schema).
CMD_REBIRTH = {"schema_version": 1, "id": "c-rebirth", "command": "rebirth"}
CMD_INTERVAL_2 = {"schema_version": 1, "id": "c-interval", "command": "set_telemetry_interval",
                  "params": {"interval_s": 2}}
CMD_REBENCHMARK = {"schema_version": 1, "id": "c-rebench", "command": "rebenchmark"}
CMD_SET_NORMALIZATION = {"schema_version": 1, "id": "c-norm", "command": "set_normalization",
                         "params": {"weights": {"compute": 1.0, "memory": 0, "ai": 0, "render": 0},
                                    "task_classes": [{"name": "stencil", "precision": "fp32",
                                                      "intensity": 0.5}]}}
VALID_COMMANDS = [CMD_REBIRTH, CMD_INTERVAL_2, CMD_REBENCHMARK, CMD_SET_NORMALIZATION,
                  {"schema_version": 1, "id": "c-rb-full", "command": "rebenchmark",
                   "params": {"mode": "full", "devices": ["cpu"]}}]

# (payload, expected ack id, expected code); payload str: sent raw.
BAD_COMMANDS = [
    ("{not json", None, "malformed"),
    ("[1, 2, 3]", None, "malformed"),
    ({"schema_version": 1, "id": "c-unknown", "command": "reboot"}, "c-unknown", "unknown_command"),
    ({"schema_version": 1, "id": "c-badparams", "command": "set_telemetry_interval",
      "params": {"interval_s": 0}}, "c-badparams", "invalid_params"),
    ({"schema_version": 1, "id": "c-badparams2", "command": "set_telemetry_interval",
      "params": {"interval_s": "fast"}}, "c-badparams2", "invalid_params"),
    ({"schema_version": 1, "id": "c-noparams", "command": "set_telemetry_interval"},
     "c-noparams", "invalid_params"),
    ({"schema_version": 2, "id": "c-v2", "command": "rebirth"}, "c-v2", "unsupported_schema_version"),
    ({"schema_version": 1, "id": "c-rb-mode", "command": "rebenchmark", "params": {"mode": "fastest"}},
     "c-rb-mode", "invalid_params"),
    ({"schema_version": 1, "id": "c-norm-empty", "command": "set_normalization"}, "c-norm-empty",
     "invalid_params"),
    ({"schema_version": 1, "id": "c-norm-neg", "command": "set_normalization",
      "params": {"reference": {"memory": -5}}}, "c-norm-neg", "invalid_params"),
    # A number past double's range: the JSON reader's out_of_range, not its parse_error (tests/fuzz).
    ('{"schema_version": 1, "id": "c-huge", "command": "set_telemetry_interval", "params": {"interval_s": 1e999}}',
     None, "malformed"),
]


# --------------------------------------------------------------------------------------------
# schema of the test's own fixtures (no broker)


def test_command_fixtures_match_schema():
    sch = harness.schemas()
    for c in VALID_COMMANDS:
        assert sch.errors("command.schema.json", c) == [], c
    for payload, _, _ in BAD_COMMANDS:
        if isinstance(payload, str):
            try:
                doc = json.loads(payload)
            except ValueError:
                continue  # not JSON at all
        else:
            doc = payload
        assert sch.errors("command.schema.json", doc), f"bad fixture validates: {payload}"


# --------------------------------------------------------------------------------------------
# session life cycle


def test_birth_retained(broker, brain, agent, node_id):
    mark = brain.mark()
    birth = start_and_wait_birth(agent, brain)
    k = birth.doc["bdseq"]
    inv = brain.wait_for("inventory", lambda d: d["bdseq"] == k, since=mark, timeout=10)
    cap = brain.wait_for("capacity", lambda d: d["bdseq"] == k, since=mark, timeout=10)
    tel = wait_telemetry(brain, mark, 1, timeout=5)
    # Order of the contract: birth, inventory, capacity, then telemetry.
    assert birth.index < inv.index < cap.index < tel.index, (birth, inv, cap, tel)

    d = birth.doc
    assert d["state"] == "online" and d["site"] == "s1" and d["protocol"] == "5"
    assert d["broker"] == broker.uri
    assert d["telemetry_interval_s"] == 1
    assert COMMANDS <= set(d["commands"]), d["commands"]
    assert d["store"] is not None and d["store"]["dropped_since_last_birth"] == 0, d["store"]
    assert inv.doc["inventory"]["node"]["id"] == node_id
    assert inv.doc["inventory"]["node"]["site"] == "s1"
    assert any(dev["class"] == "cpu" for dev in inv.doc["inventory"]["devices"])
    assert cap.doc["status"] == "not_measured" and cap.doc["capacity"] is None

    # A newcomer sees all three, retained, carrying the same session counter.
    r = retained(broker, node_id)
    for t in ("state", "inventory", "capacity"):
        assert t in r, f"nothing retained on {t}: {r}"
        assert r[t].doc["bdseq"] == k, (t, r[t])
    assert r["state"].doc["type"] == "birth"
    assert "telemetry" not in r, "telemetry must not be retained"
    assert tel.qos == 1 and not tel.retain

    # The daemon created its state directory, with the store in it.
    assert agent.state_dir.is_dir()
    assert (agent.state_dir / "outbox.db").exists(), sorted(os.listdir(agent.state_dir))
    assert_alive(agent)


def test_death_after_kill(broker, brain, agent, node_id):
    birth = start_and_wait_birth(agent, brain)
    k = birth.doc["bdseq"]
    wait_telemetry(brain, birth.index, 1, timeout=5)
    mark = brain.mark()
    t0 = time.monotonic()
    agent.kill9()
    death = brain.wait_for("state", lambda d: d["type"] == "death", since=mark, timeout=1.5 * 5 + 2,
                           what="the Will (death)")
    assert death.t - t0 <= 1.5 * 5 + 1, f"Will published {death.t - t0:.1f} s after kill -9"
    assert death.doc["bdseq"] == k, f"death bdseq {death.doc['bdseq']}, last birth {k}"
    assert death.doc["reason"] == "connection_lost"
    assert death.doc["state"] == "offline"
    r = retained(broker, node_id, topics=("state",))
    assert r["state"].doc["type"] == "death" and r["state"].doc["bdseq"] == k, r["state"]


def test_death_after_freeze_keepalive(broker, brain, agent, node_id):
    """SIGSTOP keeps the TCP connection open, so only the keepalive can tell the broker: the Will
    comes after the keepalive expires, not at once; after SIGCONT the agent finds its session gone
    and starts a new one with a bigger bdseq. mosquitto 2.0.11 acts on an expired keepalive late:
    a silent plain paho client with keepalive 5 gets its Will published after ~11-12 s (10 s:
    ~18 s), not 1.5 x 5 = 7.5 s; the bound below allows that, and still fails for an agent that
    ignores keepalive_s (the default 30 s would take 45 s or more)."""
    birth = start_and_wait_birth(agent, brain)
    k = birth.doc["bdseq"]
    wait_telemetry(brain, birth.index, 1, timeout=5)
    mark = brain.mark()
    last_seen = brain.select()[-1].t
    agent.signal(signal.SIGSTOP)
    try:
        death = brain.wait_for("state", lambda d: d["type"] == "death", since=mark, timeout=16,
                               what="the Will after the keepalive expired")
        after = death.t - last_seen
        assert 4.0 <= after <= 15.0, f"Will {after:.1f} s after the agent's last message (keepalive 5 s)"
        assert death.doc["bdseq"] == k and death.doc["reason"] == "connection_lost", death
    finally:
        agent.proc.send_signal(signal.SIGCONT)
    b2 = brain.wait_birth(since=death.index, timeout=15, pred=lambda d: d["bdseq"] > k)
    wait_telemetry(brain, b2.index, 1, timeout=5, pred=lambda d: not d["historical"])
    assert_consecutive(sorted(set(seqs(brain.telemetry(0)))))
    assert_alive(agent)


def _clean_shutdown(broker, brain, agent, node_id, sig):
    birth = start_and_wait_birth(agent, brain)
    k = birth.doc["bdseq"]
    wait_telemetry(brain, birth.index, 1, timeout=5)
    mark = brain.mark()
    t0 = time.monotonic()
    agent.signal(sig)
    rc = agent.wait_exit(5)
    elapsed = time.monotonic() - t0
    assert rc is not None, f"agent still running 5 s after {sig.name}"
    assert rc == 0, f"exit code {rc} after {sig.name}, expected 0"
    assert elapsed <= 2.0 + 0.2, f"agent took {elapsed:.2f} s to exit after {sig.name} (limit 2 s)"
    death = brain.wait_for("state", lambda d: d["type"] == "death", since=mark, timeout=3)
    assert death.doc["reason"] == "shutdown" and death.doc["bdseq"] == k, death
    time.sleep(0.5)  # a Will, if the broker wrongly sent one, would arrive now
    deaths = brain.deaths(mark)
    assert all(d.doc["reason"] == "shutdown" for d in deaths), f"a Will followed the clean stop: {deaths}"
    r = retained(broker, node_id, topics=("state",))
    assert r["state"].doc["type"] == "death" and r["state"].doc["reason"] == "shutdown", r["state"]
    assert r["state"].doc["bdseq"] == k


def test_clean_shutdown_sigterm(broker, brain, agent, node_id):
    _clean_shutdown(broker, brain, agent, node_id, signal.SIGTERM)


def test_clean_shutdown_sigint(broker, brain, agent, node_id):
    _clean_shutdown(broker, brain, agent, node_id, signal.SIGINT)


def test_sigterm_while_disconnected(make_agent, node_id):
    """No broker at all: SIGTERM still stops the agent cleanly within 2 s."""
    agent = make_agent(node_id, uris=[f"tcp://127.0.0.1:{harness.free_port()}"])
    agent.start()
    time.sleep(2.0)
    assert_alive(agent)
    t0 = time.monotonic()
    agent.signal(signal.SIGTERM)
    rc = agent.wait_exit(5)
    elapsed = time.monotonic() - t0
    assert rc == 0, f"exit code {rc} after SIGTERM without a broker"
    assert elapsed <= 2.2, f"{elapsed:.2f} s to stop without a broker (limit 2 s)"


def test_bdseq_increases_across_restart(broker, brain, agent, node_id):
    b1 = start_and_wait_birth(agent, brain)
    wait_telemetry(brain, b1.index, 2, timeout=6)
    agent.signal(signal.SIGTERM)
    assert agent.wait_exit(5) == 0

    b2 = start_and_wait_birth(agent, brain)
    assert b2.doc["bdseq"] > b1.doc["bdseq"], (b1.doc["bdseq"], b2.doc["bdseq"])
    wait_telemetry(brain, b2.index, 2, timeout=6, pred=lambda d: not d["historical"])
    mark = brain.mark()
    agent.kill9()
    will = brain.wait_for("state", lambda d: d["type"] == "death", since=mark, timeout=10)
    assert will.doc["bdseq"] == b2.doc["bdseq"]

    b3 = start_and_wait_birth(agent, brain)
    assert b3.doc["bdseq"] > b2.doc["bdseq"], (b2.doc["bdseq"], b3.doc["bdseq"])
    wait_telemetry(brain, b3.index, 2, timeout=6, pred=lambda d: not d["historical"])

    # seq runs on across a clean restart: no gap, no duplicate.
    t12 = [m.doc for m in brain.telemetry(0) if m.index < b3.index]
    s12 = [d["seq"] for d in t12]
    dups = sorted({x for x in s12 if s12.count(x) > 1})
    assert not dups, (f"seq {dups} delivered twice across a clean SIGTERM restart; "
                      f"(seq, historical, bdseq) as received: {[(d['seq'], d['historical'], d['bdseq']) for d in t12]}")
    assert_consecutive(sorted(s12))
    # ...and after a kill -9 it never goes back (live messages; the one in flight at the kill
    # may rightly be replayed, historical, at least once).
    s3 = [m.doc["seq"] for m in brain.telemetry(b3.index) if not m.doc["historical"]]
    assert min(s3) > max(s12), f"seq went back after kill -9: before {s12}, live after {s3}"


def test_telemetry_cadence(broker, brain, agent, node_id):
    birth = start_and_wait_birth(agent, brain)
    k = birth.doc["bdseq"]
    first = wait_telemetry(brain, birth.index, 1, timeout=5)
    window = 8.0
    time.sleep(window + 0.3)
    msgs = brain.telemetry(birth.index)
    n = count_in_window(msgs, first.t, first.t + window)
    assert window - 1 <= n <= window + 1, f"{n} telemetry messages in {window} s at interval 1 s"
    assert_consecutive(seqs(msgs))
    for m in msgs:
        d = m.doc
        assert d["historical"] is False and d["interval_s"] == 1 and d["bdseq"] == k, d
        assert m.qos == 1 and not m.retain
    ts = [m.doc["timestamp_ms"] for m in msgs]
    steps = [b - a for a, b in zip(ts, ts[1:])]
    assert all(500 <= s <= 1500 for s in steps), f"timestamp steps (ms) at interval 1 s: {steps}"


def test_broker_outage_replay(make_broker, make_brain, make_agent, node_id):
    # Persistence on so the brain's QoS 1 session survives the restart and nothing the agent
    # sends right after it reconnects (possibly before the brain is back) is lost to the test.
    broker = make_broker(persistence=True)
    brain = make_brain(broker, node_id, persistent=True, client_id=f"brain-{node_id}")
    agent = make_agent(node_id, broker)
    b1 = start_and_wait_birth(agent, brain)
    k1 = b1.doc["bdseq"]
    wait_telemetry(brain, b1.index, 3, timeout=8)

    outage = 30.0
    broker.stop()
    t_stop = time.monotonic()
    time.sleep(outage)
    assert_alive(agent)
    broker.start()
    t_start = time.monotonic()

    b2 = brain.wait_birth(since=b1.index + 1, timeout=20, pred=lambda d: d["bdseq"] > k1)
    k2 = b2.doc["bdseq"]
    live = wait_telemetry(brain, b2.index, 3, timeout=15, pred=lambda d: not d["historical"],
                          what="live telemetry after the replay")
    brain.check()

    all_tel = drop_inflight_duplicate(brain.telemetry(0), t_stop)
    s = seqs(all_tel)
    assert len(set(s)) == len(s), f"duplicate telemetry seq: {sorted(s)}"
    assert_consecutive(s, "telemetry seq in arrival order")

    before = [m for m in all_tel if m.index < b2.index]
    after = [m for m in all_tel if m.index > b2.index]
    assert all(not m.doc["historical"] for m in before), "historical telemetry before the new birth"
    hist = [m for m in after if m.doc["historical"]]
    first_live = next(i for i, m in enumerate(after) if not m.doc["historical"])
    assert all(m.doc["historical"] for m in after[:first_live]) and \
        not any(m.doc["historical"] for m in after[first_live:]), \
        f"replayed and live telemetry interleaved: {[(m.doc['seq'], m.doc['historical']) for m in after]}"
    produced = (t_start - t_stop)  # seconds without a broker, 1 message per second
    print(f"outage {produced:.1f} s: bdseq {k1} -> {k2}, {len(hist)} replayed (seq {hist[0].doc['seq'] if hist else '-'}"
          f"..{hist[-1].doc['seq'] if hist else '-'}), first live seq {after[first_live].doc['seq']}")
    assert len(hist) >= produced - 3, f"only {len(hist)} replayed messages for a {produced:.0f} s outage"
    assert live[0].doc["bdseq"] == k2
    assert b2.doc["store"]["dropped_since_last_birth"] == 0, b2.doc["store"]
    # Replayed messages were produced during the outage, in order.
    hts = [m.doc["timestamp_ms"] for m in hist]
    assert hts == sorted(hts)
    r = retained(broker, node_id, topics=("state", "inventory", "capacity"))
    assert r["state"].doc["type"] == "birth" and r["state"].doc["bdseq"] == k2
    assert r["inventory"].doc["bdseq"] == k2 and r["capacity"].doc["bdseq"] == k2
    assert_alive(agent)


def test_store_cap_drops_oldest(make_broker, make_brain, make_agent, workdir, node_id):
    """store.max_bytes at its minimum (65536). At one message per second an ordinary telemetry
    message (~1 KB) would need minutes to fill it, so the node gets a generated sysfs tree
    (discovery.sysfs_root) with 24 GPUs reporting telemetry: each message is then ~7.5 KB, the
    store holds ~8 of them, and a 15 s outage overflows it. The next birth reports the drops, and
    the seqs delivered show that the oldest went."""
    sysfs = harness.fake_sysfs_with_gpus(workdir / "sysfs", 24)
    broker = make_broker(persistence=True)
    brain = make_brain(broker, node_id, persistent=True, client_id=f"brain-{node_id}")
    agent = make_agent(node_id, broker, store__max_bytes=65536, discovery__sysfs_root=str(sysfs))
    b1 = start_and_wait_birth(agent, brain, timeout=30)
    k1 = b1.doc["bdseq"]
    first = wait_telemetry(brain, b1.index, 2, timeout=6)
    size = max(len(m.payload) + len(m.topic) for m in first)
    per_store = 65536 // size  # messages the store holds
    outage = 15.0
    assert per_store + 3 <= outage - 2, (
        f"telemetry is only {size} bytes with 24 GPUs: the store holds {per_store} messages, a "
        f"{outage:.0f} s outage does not overflow it")
    broker.stop()
    t_stop = time.monotonic()
    time.sleep(outage)
    assert_alive(agent)
    broker.start()
    b2 = brain.wait_birth(since=b1.index + 1, timeout=20, pred=lambda d: d["bdseq"] > k1)
    live = wait_telemetry(brain, b2.index, 2, timeout=15, pred=lambda d: not d["historical"])
    store = b2.doc["store"]
    assert store is not None, "store-and-forward reported disabled"
    dropped = store["dropped_since_last_birth"]
    assert dropped > 0, f"birth after a {outage:.0f} s outage with a {per_store}-message store: {store}"
    assert store["dropped_total"] >= dropped, store

    all_tel = drop_inflight_duplicate(brain.telemetry(0), t_stop)
    s = seqs(all_tel)
    assert len(set(s)) == len(s), f"duplicate seq: {sorted(s)}"
    before = [m.doc["seq"] for m in all_tel if m.index < b2.index]
    hist = [m.doc["seq"] for m in all_tel if m.index > b2.index and m.doc["historical"]]
    assert hist, "nothing replayed"
    # The oldest went: the replay resumes `dropped` seqs after the last one delivered before the
    # outage, and what was kept runs contiguously into the live stream.
    assert hist[0] == max(before) + 1 + dropped, (
        f"last seq before the outage {max(before)}, {dropped} dropped, replay starts at {hist[0]}")
    print(f"{size} bytes/message, store holds {per_store}; last seq before outage {max(before)}, "
          f"{dropped} dropped, replayed {hist[0]}..{hist[-1]}, first live {live[0].doc['seq']}; birth store {store}")
    assert_consecutive(hist + [live[0].doc["seq"]], "replayed then live seq")
    kept_bytes = sum(len(m.payload) + len(m.topic) for m in all_tel if m.index > b2.index and m.doc["historical"])
    assert kept_bytes <= 65536 + size, f"{kept_bytes} bytes replayed from a 65536-byte store"
    assert_alive(agent)


def test_mqtt_3_1_1(broker, brain, make_agent, node_id):
    agent = make_agent(node_id, broker, broker__protocol="3.1.1")
    birth = start_and_wait_birth(agent, brain)
    assert birth.doc["protocol"] == "3.1.1"
    k = birth.doc["bdseq"]
    msgs = wait_telemetry(brain, birth.index, 2, timeout=6)
    assert_consecutive(seqs(msgs))
    r = retained(broker, node_id)
    assert r["state"].doc["bdseq"] == k and r["inventory"].doc["bdseq"] == k
    # The Will works on 3.1.1 as well.
    mark = brain.mark()
    agent.kill9()
    death = brain.wait_for("state", lambda d: d["type"] == "death", since=mark, timeout=10)
    assert death.doc["bdseq"] == k and death.doc["reason"] == "connection_lost"


# --------------------------------------------------------------------------------------------
# TLS


def _tls_setup(pki, server_ca="ca"):
    ca, _ = pki.ca("ca")
    if server_ca != "ca":
        pki.ca(server_ca)
    crt, key = pki.leaf("server", server_ca, server=True)
    return ca, (pki.dir / f"{server_ca}.crt", crt, key)


def test_tls_server_verification(make_broker, make_brain, make_agent, pki, node_id):
    ca, tls = _tls_setup(pki)
    broker = make_broker(tls=tls)
    brain = make_brain(broker, node_id)
    agent = make_agent(node_id, broker, broker__tls__ca_file=str(ca))
    assert broker.uri.startswith("ssl://")
    birth = start_and_wait_birth(agent, brain)
    assert birth.doc["broker"] == broker.uri
    wait_telemetry(brain, birth.index, 1, timeout=5)
    brain.check()


def test_mutual_tls(make_broker, make_brain, make_agent, pki, node_id):
    ca, tls = _tls_setup(pki)
    ccrt, ckey = pki.leaf("client", "ca", server=False)
    broker = make_broker(tls=tls, require_certificate=True)
    brain = make_brain(broker, node_id)
    agent = make_agent(node_id, broker, broker__tls__ca_file=str(ca), broker__tls__cert_file=str(ccrt),
                       broker__tls__key_file=str(ckey))
    birth = start_and_wait_birth(agent, brain)
    wait_telemetry(brain, birth.index, 1, timeout=5)
    brain.check()


def test_tls_unknown_ca_refused(make_broker, make_brain, make_agent, pki, node_id):
    ca, tls = _tls_setup(pki, server_ca="rogue-ca")  # the broker's cert is not signed by `ca`
    broker = make_broker(tls=tls)
    brain = make_brain(broker, node_id)
    agent = make_agent(node_id, broker, broker__tls__ca_file=str(ca))
    agent.start()
    pat = re.compile(r"(?i)certificate verify failed|(tls|ssl|certificate).*verif|verif.*(tls|ssl|certificate)")
    try:
        wait_until(lambda: pat.search(agent.stderr()) or not agent.alive(), 8,
                   what="a log line naming the TLS verification failure")
    except AssertionError:
        pass
    if agent.alive():
        time.sleep(3)
    problems = []
    if not agent.alive():
        rc = agent.proc.returncode
        problems.append(f"the agent {'was killed by signal %d' % -rc if rc < 0 else 'exited with %d' % rc}; "
                        f"it must stay alive and retry")
    if not pat.search(agent.stderr()):
        lines = [l for l in agent.stderr().splitlines() if "connect" in l.lower()][:2]
        problems.append(f"no log line names the TLS verification failure; the agent logged: {lines}")
    n = len(broker.agent_connection_attempts())
    if n < 2 and agent.alive():
        problems.append(f"{n} TLS connection attempt(s) in ~11 s: the agent does not retry")
    if brain.births():
        problems.append("the agent went online with a broker it cannot verify")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------
# credentials


def test_password_auth_works(make_broker, make_brain, make_agent, workdir, node_id):
    broker = make_broker(users={"brain": "brain-pw", "node": "node-pw"})
    brain = make_brain(broker, node_id, username="brain", password="brain-pw")
    pw = write_private(workdir / "node.pw", "node-pw")
    agent = make_agent(node_id, broker, broker__username="node", broker__password_file=str(pw))
    birth = start_and_wait_birth(agent, brain)
    wait_telemetry(brain, birth.index, 1, timeout=5)
    assert "node-pw" not in agent.stderr(), "the password appears in the log"


def test_wrong_password(make_broker, make_brain, make_agent, workdir, node_id):
    broker = make_broker(users={"brain": "brain-pw", "node": "node-pw"})
    brain = make_brain(broker, node_id, username="brain", password="brain-pw")
    pw = write_private(workdir / "node.pw", "not-the-password")
    agent = make_agent(node_id, broker, broker__username="node", broker__password_file=str(pw))
    agent.start()
    t0 = time.monotonic()
    wait_until(lambda: broker.agent_connection_attempts() or not agent.alive(), 8,
               what="the agent's first connection attempt")
    time.sleep(6.0)
    assert_alive(agent)
    problems = []
    err = agent.stderr()
    # What the broker said, in words: MQTT 5 reason 0x87 / 3.1.1 return code 5 is "not
    # authorized", 0x86 / 4 "bad user name or password". A bare "CONNACK return code" with a
    # number is not a clear error.
    if not re.search(r"(?i)not authori[sz]ed|bad user ?name or password", err):
        lines = [l for l in err.splitlines() if "connect" in l.lower()][:3]
        problems.append(f"no log line says 'not authorized' or 'bad user name or password'; the agent "
                        f"logged: {lines}")
    attempts = broker.agent_connection_attempts()
    # min 200 ms doubling to max 2000 ms (+ jitter): a handful of attempts in ~6 s, not a storm.
    if not 2 <= len(attempts) <= 10:
        problems.append(f"{len(attempts)} connection attempts in {time.monotonic() - t0:.1f} s "
                        f"(expected 2..10 with backoff 200..2000 ms)")
    # When the agent logs its backoff delays, they stay within [reconnect_min_ms, reconnect_max_ms].
    delays = [int(x) for x in re.findall(r"(?i)reconnect\w* in (\d+) ?ms", err)]
    bad = [d for d in delays if not 200 <= d <= 2000]
    if bad:
        problems.append(f"reconnect delays outside [200, 2000] ms: {bad} (all: {delays})")
    if brain.births():
        problems.append("a birth was published with a wrong password")
    if "not-the-password" in err:
        problems.append("the password appears in the log")
    assert not problems, "\n".join(problems)
    assert_alive(agent)


def _expect_exit_3(agent, path):
    agent.start()
    rc = agent.wait_exit(10)
    assert rc is not None, "the agent kept running with a loose secret file"
    err = agent.stderr()
    assert rc == 3, f"exit code {rc}, expected 3 (configuration error); stderr:\n{err[-2000:]}"
    assert str(path) in err, f"the message does not name {path}:\n{err[-2000:]}"
    assert "chmod 600" in err, f"the message does not say 'chmod 600':\n{err[-2000:]}"


def test_password_file_mode_0644_exits_3(make_agent, workdir, node_id):
    pw = workdir / "node.pw"
    pw.write_text("node-pw")
    os.chmod(pw, 0o644)
    agent = make_agent(node_id, uris=[f"tcp://127.0.0.1:{harness.free_port()}"],
                       broker__username="node", broker__password_file=str(pw))
    _expect_exit_3(agent, pw)


def test_key_file_mode_0644_exits_3(make_agent, pki, node_id):
    ca, _ = pki.ca("ca")
    crt, key = pki.leaf("client", "ca", server=False)
    os.chmod(key, 0o644)
    agent = make_agent(node_id, uris=[f"ssl://127.0.0.1:{harness.free_port()}"],
                       broker__tls__ca_file=str(ca), broker__tls__cert_file=str(crt),
                       broker__tls__key_file=str(key))
    _expect_exit_3(agent, key)


CONFIG_ERRORS = [
    # (settings, text the message must contain)
    ({"broker.tls.ca_file": "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"),
    ({"broker.keepalive_s": 2}, "keepalive_s"),
    ({"broker.protocol": "4"}, "protocol"),
    ({"node.id": "Not A Valid Id!"}, "node.id"),
    ({"broker.colour": "blue"}, "colour"),
    ({"state_dir": "relative/dir"}, "state_dir"),
]


def test_config_errors_exit_3(make_agent, node_id):
    """Errors in the node, broker or state_dir settings leave the daemon nothing to do: exit 3
    with a message naming the key or file (unknown keys are errors too)."""
    problems = []
    for settings, needle in CONFIG_ERRORS:
        agent = make_agent(node_id, uris=[f"tcp://127.0.0.1:{harness.free_port()}"])
        agent.write_config(**{k.replace(".", "__"): v for k, v in settings.items()})
        agent.start()
        rc = agent.wait_exit(10)
        err = agent.stderr()
        if rc != 3:
            problems.append(f"{settings}: exit code {rc}, expected 3; stderr tail: {err[-300:]!r}")
        elif needle not in err:
            problems.append(f"{settings}: the message does not name {needle!r}: {err[-300:]!r}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------
# commands


def test_cmd_rebirth(broker, brain, agent, node_id):
    birth = start_and_wait_birth(agent, brain)
    k = birth.doc["bdseq"]
    brain.wait_for("capacity", since=birth.index, timeout=10)
    wait_telemetry(brain, birth.index, 1, timeout=5)
    mark = brain.mark()
    brain.send_command(CMD_REBIRTH)
    ack = brain.wait_ack("c-rebirth", since=mark)
    d = ack.doc
    assert (d["result"], d["code"], d["command"]) == ("ok", "ok", "rebirth"), d
    assert ack.qos == 1
    b = brain.wait_birth(since=mark, timeout=5)
    assert b.doc["bdseq"] == k, f"rebirth changed bdseq {k} -> {b.doc['bdseq']}"
    inv = brain.wait_for("inventory", since=mark, timeout=5)
    cap = brain.wait_for("capacity", since=mark, timeout=5)
    assert inv.doc["bdseq"] == k and cap.doc["bdseq"] == k
    assert b.index < inv.index < cap.index
    wait_telemetry(brain, cap.index, 1, timeout=5)
    assert_alive(agent)


def test_cmd_set_telemetry_interval(broker, brain, agent, node_id):
    birth = start_and_wait_birth(agent, brain)
    wait_telemetry(brain, birth.index, 2, timeout=6)
    mark = brain.mark()
    brain.send_command(CMD_INTERVAL_2)
    ack = brain.wait_ack("c-interval", since=mark)
    assert (ack.doc["result"], ack.doc["code"]) == ("ok", "ok"), ack.doc
    assert ack.doc.get("data", {}).get("interval_s") == 2, f"ack data should carry interval_s: {ack.doc}"
    first = wait_telemetry(brain, mark, 1, timeout=5, pred=lambda d: d["interval_s"] == 2)
    window = 8.0
    time.sleep(window + 0.5)
    after = [m for m in brain.telemetry(first.index)]
    n = count_in_window(after, first.t, first.t + window)
    assert window / 2 - 1 <= n <= window / 2 + 1, f"{n} messages in {window} s at interval 2 s"
    assert all(m.doc["interval_s"] == 2 for m in after)
    assert_consecutive(seqs(brain.telemetry(0)))
    no_state_change_since(brain, mark)
    assert_alive(agent)


def _cpu_fp32(cap_doc):
    rec = cap_doc["capacity"]
    cpu = [d for d in rec["l0"]["devices"] if d["device_id"] == "cpu"]
    assert cpu, f"no CPU in the capacity record: {[d['device_id'] for d in rec['l0']['devices']]}"
    figs = {f["name"]: f for f in cpu[0]["figures"]}
    # The whole figure on failure (its reason, clock and peak inputs), not pytest's shortened repr.
    assert figs["fp32"]["status"] == "ok", json.dumps(figs["fp32"], indent=1)
    return figs["fp32"]


def test_capacity_measured_on_first_start_then_cached(broker, brain, agent, node_id):
    agent.write_config(capacity__mode="quick")
    birth = start_and_wait_birth(agent, brain)
    k = birth.doc["bdseq"]
    first = brain.wait_for("capacity", since=birth.index, timeout=10)
    assert first.doc["status"] == "not_measured", first.doc
    assert "no benchmark has run" in first.doc["reason"] and "running" in first.doc["reason"], first.doc
    measured = brain.wait_for("capacity", lambda d: d["status"] == "measured", since=first.index, timeout=120,
                              what="capacity measured by the first-start benchmark")
    assert measured.doc["bdseq"] == k
    fp32 = _cpu_fp32(measured.doc)
    assert fp32["peak"]["known"] and fp32["value"] > 0
    assert measured.doc["capacity"]["l2"]["node"] > 0
    assert (agent.state_dir / "capacity.json").exists()
    # Telemetry now carries the capacity scaled by what is free.
    t = wait_telemetry(brain, measured.index, 1, timeout=5)
    avail = t.doc["available_capacity"]
    assert 0 <= avail["l2"] <= measured.doc["capacity"]["l2"]["node"] + 1e-9, avail
    # The CPU's share is its L2 score times the fraction that is free: 0 when other work fills the
    # CPU (CI runs tests side by side), so the relation is checked, not a positive figure.
    free = avail["devices"]["cpu"]["free_fraction"]
    assert 0 <= free <= 1, avail
    cpu_l2 = [d for d in measured.doc["capacity"]["devices"] if d["device_id"] == "cpu"][0]["l2"]
    assert cpu_l2 > 0 and abs(avail["devices"]["cpu"]["l2"] - cpu_l2 * free) <= 1e-9 * cpu_l2, (cpu_l2, avail)
    # A restart on the same hardware publishes the stored record at birth: no re-measurement.
    agent.signal(signal.SIGTERM)
    agent.wait_exit(5)
    birth2 = start_and_wait_birth(agent, brain)
    cap2 = brain.wait_for("capacity", since=birth2.index, timeout=10)
    assert cap2.doc["status"] == "measured", cap2.doc
    assert cap2.doc["capacity"]["l0"]["timestamp_ms"] == measured.doc["capacity"]["l0"]["timestamp_ms"]
    time.sleep(2)
    assert len(brain.select("capacity", since=birth2.index)) == 1, "the cached capacity was re-measured"
    second_run = agent.stderr().split(f"===== run {agent.runs} =====")[-1]
    assert "benchmark started" not in second_run and "stored benchmark is valid" in second_run, second_run[-3000:]
    assert_alive(agent)


def test_cmd_rebenchmark(broker, brain, agent, node_id):
    birth = start_and_wait_birth(agent, brain)
    cap = brain.wait_for("capacity", since=birth.index, timeout=10)
    assert cap.doc["status"] == "not_measured" and "capacity.mode is off" in cap.doc["reason"], cap.doc
    mark = brain.mark()
    brain.send_command(CMD_REBENCHMARK)
    # A second request while it runs is answered at once: busy.
    time.sleep(0.3)
    brain.send_command({"schema_version": 1, "id": "c-rebench-2", "command": "rebenchmark"})
    busy = brain.wait_ack("c-rebench-2", since=mark)
    assert (busy.doc["result"], busy.doc["code"]) == ("error", "busy"), busy.doc
    # Telemetry continues while the benchmark runs.
    wait_telemetry(brain, mark, 2, timeout=10)
    ack = brain.wait_ack("c-rebench", since=mark, timeout=120)
    d = ack.doc
    assert (d["result"], d["code"], d["command"]) == ("ok", "ok", "rebenchmark"), d
    assert d["data"]["mode"] == "quick" and d["data"]["l2"] > 0, d
    cap = brain.wait_for("capacity", lambda x: x["status"] == "measured", since=mark, timeout=10)
    assert cap.index < ack.index, "the capacity is published before the ack that reports it"
    l2 = cap.doc["capacity"]["l2"]["node"]
    assert abs(l2 - d["data"]["l2"]) < 1e-9

    # The brain replaces the normalisation: L1/L2 recomputed from the stored figures, stored.
    mark = brain.mark()
    brain.send_command(CMD_SET_NORMALIZATION)
    ack = brain.wait_ack("c-norm", since=mark)
    assert (ack.doc["result"], ack.doc["code"]) == ("ok", "ok"), ack.doc
    cap2 = brain.wait_for("capacity", since=mark, timeout=5)
    rec = cap2.doc["capacity"]
    assert rec["normalization"]["weights"]["compute"] == 1.0 and rec["normalization"]["source"].startswith("brain")
    assert rec["l0"]["timestamp_ms"] == cap.doc["capacity"]["l0"]["timestamp_ms"], "normalisation re-measured"
    assert abs(rec["l2"]["node"] - rec["l1"]["node"]["compute"]) < 1e-9, rec["l1"]
    assert "stencil" in rec["roofline"] and len(rec["normalization"]["task_classes"]) == 1
    assert (agent.state_dir / "normalization.json").exists()
    # A bad one is refused, naming the key, and changes nothing.
    mark = brain.mark()
    brain.send_command({"schema_version": 1, "id": "c-norm-bad", "command": "set_normalization",
                        "params": {"weights": {"gpu": 1}}})
    ack = brain.wait_ack("c-norm-bad", since=mark)
    assert (ack.doc["result"], ack.doc["code"]) == ("error", "invalid_params"), ack.doc
    assert "normalization.weights.gpu: unknown category" in ack.doc["message"], ack.doc
    time.sleep(0.5)
    assert not brain.select("capacity", since=mark)
    # The stored normalisation survives a restart.
    agent.signal(signal.SIGTERM)
    agent.wait_exit(5)
    birth = start_and_wait_birth(agent, brain)
    cap3 = brain.wait_for("capacity", since=birth.index, timeout=10)
    assert cap3.doc["status"] == "measured"
    assert cap3.doc["capacity"]["normalization"]["weights"]["compute"] == 1.0
    assert_alive(agent)


def test_stored_capacity_files_garbage_is_reported(broker, brain, agent, node_id):
    # A torn capacity cache and a hand-broken stored normalisation: each is named in the log,
    # the configured normalisation is used, the capacity says why it is not measured, and the
    # agent serves on.
    agent.state_dir.mkdir(parents=True, exist_ok=True)
    (agent.state_dir / "capacity.json").write_text('{"fingerprint": "0123", "rep')
    (agent.state_dir / "normalization.json").write_text("{ not json")
    birth = start_and_wait_birth(agent, brain)
    cap = brain.wait_for("capacity", since=birth.index, timeout=10)
    assert cap.doc["status"] == "not_measured", cap.doc
    assert "capacity.json: not valid JSON" in cap.doc["reason"], cap.doc
    wait_telemetry(brain, birth.index, 1, timeout=5)
    log = agent.stderr()
    assert "normalization.json: not valid JSON; using the configured normalisation" in log, log[-3000:]
    assert_alive(agent)


def test_cmd_errors(broker, brain, agent, node_id):
    birth = start_and_wait_birth(agent, brain)
    k = birth.doc["bdseq"]
    brain.wait_for("capacity", since=birth.index, timeout=10)
    mark = brain.mark()
    for payload, ack_id, code in BAD_COMMANDS:
        m = brain.mark()
        brain.send_command(payload, raw=isinstance(payload, str))
        ack = brain.wait_for("cmd/ack", since=m, timeout=10, what=f"ack of {payload!r}")
        d = ack.doc
        assert d["id"] == ack_id, f"{payload!r}: ack id {d['id']!r}, expected {ack_id!r}"
        assert (d["result"], d["code"]) == ("error", code), f"{payload!r}: ack {d}"
        assert d["message"], f"{payload!r}: ack without a message"
        assert_alive(agent)
    # Exactly one ack per command.
    acks = brain.select("cmd/ack", since=mark)
    assert len(acks) == len(BAD_COMMANDS), f"{len(acks)} acks for {len(BAD_COMMANDS)} commands: {acks}"
    # Nothing else changed: no re-birth, interval still 1 s, telemetry goes on.
    last = brain.mark()
    more = wait_telemetry(brain, last, 3, timeout=6)
    assert all(t.doc["interval_s"] == 1 and t.doc["bdseq"] == k for t in more)
    no_state_change_since(brain, mark)
    assert_consecutive(seqs(brain.telemetry(0)))
    assert_alive(agent)


# --------------------------------------------------------------------------------------------
# reload


def test_sighup_reload(broker, brain, agent, node_id):
    birth = start_and_wait_birth(agent, brain)
    k = birth.doc["bdseq"]
    wait_telemetry(brain, birth.index, 2, timeout=6)
    agent.write_config(telemetry__interval_s=2, log__level="debug")
    mark = brain.mark()
    agent.signal(signal.SIGHUP)
    first = wait_telemetry(brain, mark, 1, timeout=6, pred=lambda d: d["interval_s"] == 2)
    window = 8.0
    time.sleep(window + 0.5)
    after = brain.telemetry(first.index)
    n = count_in_window(after, first.t, first.t + window)
    assert window / 2 - 1 <= n <= window / 2 + 1, f"{n} messages in {window} s after reload to 2 s"
    assert all(m.doc["interval_s"] == 2 and m.doc["bdseq"] == k for m in after)
    no_state_change_since(brain, mark)  # the session was not dropped: no new birth
    assert_consecutive(seqs(brain.telemetry(0)))
    assert_alive(agent)


def test_failover_to_second_uri(broker, brain, make_agent, node_id):
    """broker.uris is a fail-over list: with the first broker down, the agent reaches the second."""
    dead = f"tcp://127.0.0.1:{harness.free_port()}"
    agent = make_agent(node_id, broker, broker__uris=[dead, broker.uri])
    birth = start_and_wait_birth(agent, brain)
    assert birth.doc["broker"] == broker.uri, birth.doc
    wait_telemetry(brain, birth.index, 1, timeout=5)


def test_feature_config_error_disables_only_that_feature(broker, brain, make_agent, node_id):
    """A mistake in one feature's settings disables that feature with a clear message; the agent
    still runs, publishes its birth and answers commands."""
    agent = make_agent(node_id, broker, telemetry__interval_s=0)
    birth = start_and_wait_birth(agent, brain)
    err = agent.stderr()
    assert "telemetry.interval_s: must be between 1 and 3600, got 0" in err, err
    assert "feature 'telemetry' disabled" in err, err
    time.sleep(2.5)
    assert not brain.telemetry(since=birth.index), "telemetry was disabled but still sent"
    brain.send_command({"schema_version": 1, "id": "fc1", "command": "rebirth"})
    ack = brain.wait_ack("fc1", since=birth.index)
    assert ack.doc["code"] == "ok", ack.doc
    assert agent.alive()
