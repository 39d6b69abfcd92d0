"""Black-box tests of the Prometheus endpoint (docs/metrics.md): the real `cpn-agent run` against a
real mosquitto (harness.py), scraped over HTTP with urllib. The scraped figures must be those of
the MQTT telemetry message of the same sample (same seq); the endpoint is off unless enabled; a
port it cannot bind costs the metrics, never the agent; and it keeps reporting while the broker
is down.

Needs an agent built with CPN_PROMETHEUS (prometheus-cpp); each test function is registered as
its own CTest test (tests/CMakeLists.txt, CPN_METRICS_TESTS) only in such a build.
"""

import math
import re
import socket
import urllib.request

import harness
from harness import wait_until

START_TIMEOUT = 15.0  # discovery (cpu plugin only) + connect + birth

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Text exposition format 0.0.4 -> {name: {frozenset(labels.items()): value}}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        out.setdefault(m.group(1), {})[labels] = float(m.group(3))
    return out


def scrape(port, timeout=5.0):
    """GET /metrics on 127.0.0.1:port, parsed; never through a proxy from the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        assert r.status == 200, r.status
        assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers.get("Content-Type")
        return parse_metrics(r.read().decode())


def value(metrics, name, **labels):
    """The value of the series of `name` with exactly `labels`; None when there is none."""
    return metrics.get(name, {}).get(frozenset(labels.items()))


def same(scraped, sent):
    """A scraped value against the figure in the MQTT message. Integers (bytes, seq) are exact.
    The text format carries 16 significant digits, so a ratio computed from a percentage can be
    one unit off in its last bit."""
    return scraped is not None and math.isclose(scraped, sent, rel_tol=1e-14, abs_tol=0)


def metrics_agent(make_agent, node_id, broker, port, **kw):
    return make_agent(node_id, broker, metrics__prometheus__enabled=True,
                      metrics__prometheus__listen=f"127.0.0.1:{port}", **kw)


def start_and_wait_birth(agent, brain, timeout=START_TIMEOUT):
    mark = brain.mark()
    agent.start()
    try:
        return brain.wait_birth(since=mark, timeout=timeout)
    except AssertionError as e:
        state = "alive" if agent.alive() else f"exit status {agent.proc.returncode}"
        raise AssertionError(f"no birth within {timeout} s of starting the agent ({state}): {e}") from None


# --------------------------------------------------------------------------------------------
# tests


def test_metrics_match_mqtt_telemetry(broker, brain, make_agent, node_id):
    port = harness.free_port()
    agent = metrics_agent(make_agent, node_id, broker, port)
    birth = start_and_wait_birth(agent, brain)
    brain.wait_for("telemetry", since=birth.index, count=2, timeout=10)
    assert "metrics: Prometheus endpoint at http://127.0.0.1:%d/metrics" % port in agent.stderr()

    m = scrape(port)
    n = {"node": node_id}
    for family in ("cpn_telemetry_seq", "cpn_telemetry_timestamp_seconds", "cpn_telemetry_interval_seconds",
                   "cpn_memory_total_bytes", "cpn_memory_used_bytes", "cpn_memory_utilization_ratio",
                   "cpn_load1", "cpn_load5", "cpn_load15", "cpn_build_info", "cpn_mqtt_connected", "cpn_bdseq",
                   "cpn_outbox_buffered_messages", "cpn_outbox_dropped_total", "cpn_tasks_queued",
                   "cpn_tasks_running"):
        assert family in m, f"{family} not scraped; got {sorted(m)}"
    assert value(m, "cpn_mqtt_connected", **n) == 1
    assert value(m, "cpn_bdseq", **n) == birth.doc["bdseq"]
    assert value(m, "cpn_telemetry_interval_seconds", **n) == 1
    build = [dict(k) for k in m["cpn_build_info"]]
    assert len(build) == 1 and build[0]["node"] == node_id and build[0]["version"] == birth.doc["agent_version"], build

    # The MQTT message of the very sample the scrape shows: every node and device figure equal.
    seq = int(value(m, "cpn_telemetry_seq", **n))
    msg = brain.wait_for("telemetry", lambda d: d["seq"] == seq, timeout=5, what=f"telemetry seq {seq}").doc
    assert same(value(m, "cpn_telemetry_timestamp_seconds", **n), msg["timestamp_ms"] / 1000)
    node = msg["node"]
    assert node["memory_total_bytes"] > 0
    assert value(m, "cpn_memory_total_bytes", **n) == node["memory_total_bytes"]
    assert value(m, "cpn_memory_used_bytes", **n) == node["memory_used_bytes"]
    assert same(value(m, "cpn_memory_utilization_ratio", **n), node["memory_utilization_pct"] / 100)
    for k in ("load1", "load5", "load15"):
        assert same(value(m, f"cpn_{k}", **n), node[k]), k
    if "cpu_utilization_pct" in node:
        assert same(value(m, "cpn_cpu_utilization_ratio", **n), node["cpu_utilization_pct"] / 100)
    else:
        assert "cpn_cpu_utilization_ratio" not in m
    units = {"utilization_pct": ("cpn_device_utilization_ratio", 100), "memory_used_bytes":
             ("cpn_device_memory_used_bytes", 1), "memory_total_bytes": ("cpn_device_memory_total_bytes", 1),
             "temperature_c": ("cpn_device_temperature_celsius", 1), "power_w": ("cpn_device_power_watts", 1)}
    compared = 0
    for d in msg["devices"]:
        for k, v in d.items():
            if k in ("id", "sources"):
                continue
            family, divisor = units[k]
            assert same(value(m, family, node=node_id, device=d["id"]), v / divisor), (k, d)
            compared += 1
    # A device figure in the scrape that the message lacks would be a figure made up.
    for k, (family, _) in units.items():
        scraped = {dict(labels)["device"] for labels in m.get(family, {})}
        assert scraped == {d["id"] for d in msg["devices"] if k in d}, (family, scraped)
    print(f"seq {seq}: node figures and {compared} device figures equal in the scrape and the MQTT message")


def test_metrics_disabled_by_default(broker, brain, make_agent, node_id):
    # Only the address is set: without metrics.prometheus.enabled nothing listens on it.
    port = harness.free_port()
    agent = make_agent(node_id, broker, metrics__prometheus__listen=f"127.0.0.1:{port}")
    birth = start_and_wait_birth(agent, brain)
    brain.wait_for("telemetry", since=birth.index, count=2, timeout=10)
    assert not harness.port_open(port), f"something listens on {port} with metrics disabled"
    assert "metrics:" not in agent.stderr(), agent.stderr()[-2000:]
    assert agent.alive()


def test_metrics_port_in_use_agent_keeps_running(broker, brain, make_agent, node_id):
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        agent = metrics_agent(make_agent, node_id, broker, port)
        birth = start_and_wait_birth(agent, brain)
        brain.wait_for("telemetry", since=birth.index, count=2, timeout=10)
        assert agent.alive()
        err = agent.stderr()
        assert re.search(rf" error metrics: cannot serve metrics on 127\.0\.0\.1:{port}: .*in use.*"
                         r"running without Prometheus metrics", err), err[-3000:]
        assert "Prometheus endpoint at" not in err
    finally:
        busy.close()


def test_metrics_bad_listen_disables_only_metrics(broker, brain, make_agent, node_id):
    agent = make_agent(node_id, broker, metrics__prometheus__enabled=True,
                       metrics__prometheus__listen="127.0.0.1:99999")
    birth = start_and_wait_birth(agent, brain)
    brain.wait_for("telemetry", since=birth.index, count=1, timeout=10)
    err = agent.stderr()
    assert re.search(r"agent\.yaml:\d+:\d+: metrics\.prometheus\.listen: '127\.0\.0\.1:99999': port '99999' is not "
                     r"a number between 1 and 65535 \(feature 'metrics' disabled\)", err), err[-3000:]
    # Not started at the default address instead.
    assert "Prometheus endpoint at" not in err
    assert agent.alive()


def test_metrics_while_broker_down(make_broker, make_brain, make_agent, node_id):
    broker = make_broker()
    brain = make_brain(broker, node_id)
    port = harness.free_port()
    agent = metrics_agent(make_agent, node_id, broker, port)
    birth = start_and_wait_birth(agent, brain)
    brain.wait_for("telemetry", since=birth.index, count=1, timeout=10)
    n = {"node": node_id}
    before = scrape(port)
    assert value(before, "cpn_mqtt_connected", **n) == 1

    broker.stop()
    # Sampling goes on offline: new samples, the link shown down, telemetry piling up on disk.
    seq0 = value(before, "cpn_telemetry_seq", **n)

    def offline_and_buffered():
        m = scrape(port)
        ok = (value(m, "cpn_mqtt_connected", **n) == 0 and value(m, "cpn_telemetry_seq", **n) >= seq0 + 3
              and value(m, "cpn_outbox_buffered_messages", **n) >= 2)
        return m if ok else None

    m = wait_until(offline_and_buffered, 15, step=0.25, what="the scrape to show the outage")
    assert value(m, "cpn_memory_total_bytes", **n) == value(before, "cpn_memory_total_bytes", **n)
    assert agent.alive()
