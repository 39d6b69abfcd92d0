"""The agent as a systemd Type=notify service, against a real mosquitto: the test plays the
service manager's side of sd_notify(3) with its own datagram socket (NOTIFY_SOCKET), so readiness,
status, watchdog keep-alives, reload and stop are checked on the wire, as systemd sees them."""

import os
import signal
import socket
import time

import harness


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket; each datagram is newline-separated
    KEY=VALUE assignments."""

    def __init__(self, directory):
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []  # (monotonic time, {key: value})

    def env(self, watchdog_usec=None):
        e = {"NOTIFY_SOCKET": self.path}
        if watchdog_usec:
            e["WATCHDOG_USEC"] = str(watchdog_usec)
        return e

    def poll(self, timeout):
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def wait(self, key, value=None, timeout=15.0, since=0):
        end = time.monotonic() + timeout
        while True:
            for i, (t, m) in enumerate(self.messages[since:], start=since):
                if key in m and (value is None or m[key] == value):
                    return i, t, m
            left = end - time.monotonic()
            assert left > 0, f"no {key}={value or '*'} within {timeout} s; got {self.messages[since:]}"
            self.poll(min(left, 0.2))

    def close(self):
        self.sock.close()


def start_notified(agent, workdir, watchdog_usec=None):
    """Starts the agent with a notify socket, as systemd would; returns it and the index of READY."""
    ns = NotifySocket(workdir)
    agent.env = ns.env(watchdog_usec)
    agent.start()
    i, _, _ = ns.wait("READY", "1")
    return ns, i


def retained_state(broker, node, timeout=5.0):
    """The retained message on the node's state topic, read by a fresh client."""
    got = []
    c = harness.mqtt.Client(client_id=f"probe-{os.getpid()}-{time.monotonic_ns()}")
    c.on_message = lambda cl, u, msg: got.append(msg)
    c.connect("127.0.0.1", broker.brain_port)
    c.subscribe(f"{harness.prefix(node)}/state", qos=1)
    c.loop_start()
    end = time.monotonic() + timeout
    while not got and time.monotonic() < end:
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()
    return harness.json.loads(got[0].payload) if got else None


def test_notify_ready_after_birth_is_published(broker, brain, agent, node_id, workdir):
    ns = NotifySocket(workdir)
    agent.env = ns.env()
    agent.start()
    _, _, ready = ns.wait("READY", "1")
    # READY means the birth is on the broker already: a client that connects now gets it retained.
    state = retained_state(broker, node_id)
    assert state is not None and state["type"] == "birth", state
    assert ready["STATUS"].startswith("online: birth published"), ready
    assert f"session {state['bdseq']}" in ready["STATUS"], (ready, state)
    ns.close()


def test_notify_ready_when_broker_is_down(make_agent, node_id, workdir):
    """A dead broker must not hold `systemctl start` until TimeoutStartSec: the agent reports
    ready once the first connection attempt failed, and says it is offline."""
    dead = f"tcp://127.0.0.1:{harness.free_port()}"
    agent = make_agent(node_id, uris=[dead])
    ns = NotifySocket(workdir)
    agent.env = ns.env()
    t0 = time.monotonic()
    agent.start()
    _, t, ready = ns.wait("READY", "1", timeout=20)
    assert ready["STATUS"].startswith("offline: broker"), ready
    assert dead in ready["STATUS"], ready
    assert t - t0 < 15, f"READY took {t - t0:.1f} s"
    assert agent.alive()
    ns.close()


def test_watchdog_keepalives_from_the_main_loop(broker, brain, agent, node_id, workdir):
    ns, i = start_notified(agent, workdir, watchdog_usec=1_000_000)  # WatchdogSec=1s: every 0.5 s
    time.sleep(3.0)
    ns.poll(0.1)
    beats = [t for t, m in ns.messages[i:] if m.get("WATCHDOG") == "1"]
    assert len(beats) >= 4, f"{len(beats)} keep-alives in 3 s with WatchdogSec=1s"
    gaps = [b - a for a, b in zip(beats, beats[1:])]
    assert max(gaps) < 1.0, f"a gap of {max(gaps):.2f} s would let systemd kill the agent: {gaps}"
    # A stopped main loop sends nothing, which is what makes systemd restart it.
    agent.signal(signal.SIGSTOP)
    ns.messages.clear()
    ns.poll(1.5)
    assert not [m for _, m in ns.messages if "WATCHDOG" in m], ns.messages
    agent.signal(signal.SIGCONT)
    ns.wait("WATCHDOG", "1", timeout=3)
    ns.close()


def test_no_watchdog_without_watchdog_usec(broker, brain, agent, node_id, workdir):
    ns, _ = start_notified(agent, workdir)
    ns.poll(2.0)
    assert not [m for _, m in ns.messages if "WATCHDOG" in m], ns.messages
    ns.close()


def test_notify_reload_and_stop(broker, brain, agent, node_id, workdir):
    ns, i = start_notified(agent, workdir)
    agent.signal(signal.SIGHUP)
    j, _, _ = ns.wait("RELOADING", "1", since=i + 1)
    k, _, again = ns.wait("READY", "1", since=j + 1)
    assert again["STATUS"].startswith("online"), again
    mark = brain.mark()
    agent.signal(signal.SIGTERM)
    _, _, stopping = ns.wait("STOPPING", "1", since=k + 1)
    assert stopping["STATUS"].startswith("stopping"), stopping
    assert agent.wait_exit(10) == 0
    brain.wait_for("state", lambda d: d["type"] == "death" and d["reason"] == "shutdown", since=mark)
    ns.close()


def test_status_follows_connection_loss(broker, brain, agent, node_id, workdir):
    ns, i = start_notified(agent, workdir)
    broker.stop()
    j, _, m = ns.wait("STATUS", timeout=20, since=i + 1)
    assert m["STATUS"].startswith("offline"), m
    broker.start()
    end = time.monotonic() + 30
    while True:
        online = [x for _, x in ns.messages[j + 1:] if x.get("STATUS", "").startswith("online")]
        if online:
            break
        assert time.monotonic() < end, ns.messages[j:]
        ns.poll(0.2)
    assert "READY" not in online[0], "READY is sent once; later changes are STATUS only"
    ns.close()


def test_logs_go_to_the_journal_when_stderr_is_the_journal_stream(broker, brain, agent, node_id, workdir):
    """systemd sets JOURNAL_STREAM to the device:inode of the stream it gave as stderr; the agent
    then logs through the journal API (levels as syslog priorities) instead of text on stderr."""
    agent.stderr_path.write_bytes(b"")
    st = os.stat(agent.stderr_path)
    agent.env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    agent.start()
    brain.wait_birth()
    agent.signal(signal.SIGTERM)
    assert agent.wait_exit(10) == 0
    text = agent.stderr().split("===== run 1 =====", 1)[1]
    assert "running as node" not in text, text
    # The same agent with stderr on a file it was not told about logs there as usual.
    agent.env = {"JOURNAL_STREAM": "1:1"}
    agent.start()
    brain.wait_birth(since=brain.mark())
    agent.signal(signal.SIGTERM)
    assert agent.wait_exit(10) == 0
    assert "running as node" in agent.stderr().split("===== run 2 =====", 1)[1]


def test_bad_service_environment_is_harmless(broker, brain, agent, node_id, workdir):
    """What a unit or a launcher may get wrong in the environment: a notify socket that does not
    exist, a watchdog period that is not a number, a journal stream that is not one, a self-exec
    path that does not exist. The agent logs on stderr, publishes its birth and stops cleanly;
    the bad self-exec path shows as the plugins' probe failure, with the path, not as a crash."""
    agent.env = {"NOTIFY_SOCKET": str(workdir / "no-such-dir" / "notify.sock"), "WATCHDOG_USEC": "banana",
                 "JOURNAL_STREAM": "not-a-stream", "CPN_AGENT_SELF_EXEC": str(workdir / "no-such-agent")}
    agent.start()
    birth = brain.wait_birth(timeout=20)
    inv = brain.wait_for("inventory", since=birth.index, timeout=10)
    cpu = [p for p in inv.doc["inventory"]["plugins"] if p["name"] == "cpu"][0]
    assert cpu["status"] != "ok" and "no-such-agent" in cpu["reason"], cpu
    assert any(d["class"] == "cpu" for d in inv.doc["inventory"]["devices"]), "the host scan still finds the CPU"
    assert "running as node" in agent.stderr(), agent.stderr()
    mark = brain.mark()
    agent.signal(signal.SIGTERM)
    assert agent.wait_exit(10) == 0
    brain.wait_for("state", lambda d: d["type"] == "death" and d["reason"] == "shutdown", since=mark)
