"""Harness for the daemon's black-box tests: a real mosquitto started on free loopback ports with
a generated config, the real `cpn-agent run`, a "brain" (paho-mqtt) that records and validates
every message the agent publishes, and a throw-away PKI made with the openssl CLI.

Nothing here mocks MQTT. Every wait is bounded; every process started here is killed by its
owner's close()/stop(), which the fixtures in conftest.py call in teardown.
"""

import json
import os
import pathlib
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import jsonschema
import paho.mqtt.client as mqtt

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]


def _env_path(name, default):
    v = os.environ.get(name)
    return pathlib.Path(v) if v else pathlib.Path(default)


AGENT_BIN = _env_path("CPN_AGENT_BIN", "/tmp/build-it/bin/cpn-agent")
PLUGIN_DIR = _env_path("CPN_PLUGIN_DIR", "/tmp/build-it/lib/cpn-agent/backends")
if "CPN_PLUGIN_DIR" not in os.environ and not PLUGIN_DIR.is_dir():
    # Only CPN_AGENT_BIN given (a manual run): the plugins of the same build tree.
    _beside = AGENT_BIN.resolve().parent.parent / "lib" / "cpn-agent" / "backends"
    if _beside.is_dir():
        PLUGIN_DIR = _beside
SCHEMA_DIR = _env_path("CPN_SCHEMA_DIR", REPO / "docs" / "schemas")
MOSQUITTO = _env_path("CPN_MOSQUITTO", shutil.which("mosquitto") or "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def prefix(node):
    return f"cpn/v1/nodes/{node}"


# --------------------------------------------------------------------------------------------
# JSON Schema validation


class Schemas:
    """Every schema in docs/schemas, resolvable by its $id (inventory-message $refs inventory)."""

    BY_TOPIC_SUFFIX = {
        "inventory": "inventory-message.schema.json",
        "capacity": "capacity.schema.json",
        "telemetry": "telemetry.schema.json",
        "cmd/ack": "command-ack.schema.json",
    }
    BY_STATE_TYPE = {"birth": "birth.schema.json", "death": "death.schema.json"}
    # Task messages (task/event/{task} and reply topics) by their `type`.
    BY_TASK_TYPE = {"task_state": "task-state.schema.json", "task_progress": "task-progress.schema.json"}
    # Topics the test itself publishes to under the node's prefix (requests, some bad on purpose;
    # TaskClient validates what it sends).
    INBOUND_SUFFIXES = ("cmd", "task/submit", "task/cancel", "task/status")

    def __init__(self, directory=SCHEMA_DIR):
        self.store = {}
        self.by_file = {}
        for p in sorted(pathlib.Path(directory).glob("*.json")):
            s = json.loads(p.read_text())
            self.store[s["$id"]] = s
            self.by_file[p.name] = s
        for name in list(self.BY_TOPIC_SUFFIX.values()) + list(self.BY_STATE_TYPE.values()) + list(
                self.BY_TASK_TYPE.values()) + ["command.schema.json", "task-submit.schema.json",
                                               "task-request.schema.json"]:
            assert name in self.by_file, f"schema {name} missing from {directory}"
        self._validators = {}

    def validator(self, file_name):
        v = self._validators.get(file_name)
        if v is None:
            schema = self.by_file[file_name]
            resolver = jsonschema.RefResolver(base_uri=schema["$id"], referrer=schema, store=self.store)
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            v = cls(schema, resolver=resolver)
            self._validators[file_name] = v
        return v

    def errors(self, file_name, doc):
        return [f"{'/'.join(str(x) for x in e.absolute_path) or '(root)'}: {e.message}"
                for e in self.validator(file_name).iter_errors(doc)]

    def schema_for(self, node, topic, doc):
        """Which schema a message on `topic` must satisfy (None: not one of the agent's topics)."""
        base = prefix(node) + "/"
        if not topic.startswith(base):
            return None
        rest = topic[len(base):]
        if rest == "state":
            t = doc.get("type") if isinstance(doc, dict) else None
            return self.BY_STATE_TYPE.get(t, "birth.schema.json")
        if rest.startswith("task/event/") and len(rest) > len("task/event/"):
            return self.task_schema(doc)
        return self.BY_TOPIC_SUFFIX.get(rest)

    def task_schema(self, doc):
        """task-state or task-progress by the message's `type` (task-state when it has none, so
        a message without one fails validation)."""
        t = doc.get("type") if isinstance(doc, dict) else None
        return self.BY_TASK_TYPE.get(t, "task-state.schema.json")


SCHEMAS = None


def schemas():
    global SCHEMAS
    if SCHEMAS is None:
        SCHEMAS = Schemas()
    return SCHEMAS


# --------------------------------------------------------------------------------------------
# Small utilities


def free_port():
    """A TCP port free on 127.0.0.1 right now, picked at random below Linux's ephemeral range
    (32768-60999): while a broker is stopped its port must not be handed to some outgoing
    connection (or to the agent's own reconnect, which would then connect to itself)."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, step=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(step)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def write_private(path, text):
    path = pathlib.Path(path)
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def _kill_process(proc, grace=2.0):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------------------------
# PKI (openssl CLI; EC keys so it is fast)


class Pki:
    def __init__(self, directory):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _run(self, *args):
        r = subprocess.run([OPENSSL, *args], cwd=self.dir, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"openssl {' '.join(args)} failed:\n{r.stderr}"

    def ca(self, name):
        key, crt = self.dir / f"{name}.key", self.dir / f"{name}.crt"
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={name}",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        os.chmod(key, 0o600)
        return crt, key

    def leaf(self, name, ca_name, server):
        key, csr, crt = self.dir / f"{name}.key", self.dir / f"{name}.csr", self.dir / f"{name}.crt"
        ext = self.dir / f"{name}.ext"
        if server:
            ext.write_text("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                           "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
        else:
            ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                           "extendedKeyUsage=clientAuth\n")
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={'127.0.0.1' if server else name}")
        self._run("x509", "-req", "-in", str(csr), "-CA", str(self.dir / f"{ca_name}.crt"),
                  "-CAkey", str(self.dir / f"{ca_name}.key"), "-CAcreateserial", "-out", str(crt),
                  "-days", "2", "-extfile", str(ext))
        os.chmod(key, 0o600)
        return crt, key


# --------------------------------------------------------------------------------------------
# Broker


class Broker:
    """mosquitto 2.0 with two listeners: `port` for the agent (plain or TLS) and `brain_port`
    (always plain) for the test's own clients, so TLS and connection counting concern the agent
    alone. stop()/start() restart it on the same ports."""

    def __init__(self, directory, tls=None, require_certificate=False, users=None,
                 persistence=False):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.brain_port = free_port()
        while self.brain_port == self.port:
            self.brain_port = free_port()
        self.tls = tls  # (ca_crt, server_crt, server_key) or None
        self.users = users or {}
        self.log_path = self.dir / "mosquitto.log"
        self.proc = None
        self._log_file = None
        self.conf = self.dir / "mosquitto.conf"
        lines = [
            "per_listener_settings false",
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {self.dir}/",
            "log_dest stderr",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            "log_timestamp true",
            "log_timestamp_format %s",
        ]
        if self.users:
            pw = self.dir / "passwd"
            pw.write_text("")
            for u, p in self.users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pw), u, p], check=True, timeout=30,
                               capture_output=True)
            os.chmod(pw, 0o600)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines += ["allow_anonymous true"]
        lines += [f"listener {self.port} 127.0.0.1"]
        if tls:
            ca, crt, key = tls
            lines += [f"cafile {ca}", f"certfile {crt}", f"keyfile {key}",
                      f"require_certificate {'true' if require_certificate else 'false'}"]
        lines += [f"listener {self.brain_port} 127.0.0.1"]
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def uri(self):
        return f"{'ssl' if self.tls else 'tcp'}://127.0.0.1:{self.port}"

    def start(self, timeout=10):
        assert self.proc is None or self.proc.poll() is not None
        self._log_file = open(self.log_path, "ab")
        self._log_start = len(self.log())
        self.proc = subprocess.Popen([str(MOSQUITTO), "-c", str(self.conf)], stdout=self._log_file,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited with {self.proc.returncode}:\n{self.log()}")
            # Listeners are open once it says "running"; the agent's port is not probed, so
            # the broker log counts the agent's connection attempts alone.
            return " running" in self.log()[self._log_start:] and port_open(self.brain_port)

        wait_until(ready, timeout, what="mosquitto to listen")
        return self

    def stop(self):
        _kill_process(self.proc, grace=5)
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def agent_connection_attempts(self):
        """Timestamps of the connections made to the agent's listener: accepted ones, and on TLS
        those that failed in the handshake (mosquitto logs no "New connection" for those, and
        the brain's listener is never TLS)."""
        pat = re.compile(r"^(\d+): (?:New connection from \S+ on port (\d+)\.|Client connection from \S+ failed)",
                         re.M)
        return [int(m.group(1)) for m in pat.finditer(self.log())
                if (m.group(2) is None and self.tls) or (m.group(2) and int(m.group(2)) == self.port)]


# --------------------------------------------------------------------------------------------
# Brain: the test's MQTT client


class Message:
    __slots__ = ("t", "topic", "payload", "retain", "qos", "doc", "index")

    def __init__(self, t, topic, payload, retain, qos, doc, index):
        self.t, self.topic, self.payload, self.retain, self.qos = t, topic, payload, retain, qos
        self.doc, self.index = doc, index

    def __repr__(self):
        return (f"<#{self.index} t={self.t:.2f} {self.topic} retain={self.retain} qos={self.qos} "
                f"{self.payload[:200]!r}>")


class Brain:
    """Subscribes to everything under cpn/v1/nodes/<node>/ and records every message; each one
    the agent publishes is parsed and validated against its JSON Schema on arrival. A schema
    failure is recorded and raised by every later wait and by check()."""

    def __init__(self, broker, node, client_id=None, persistent=False, username=None, password=None,
                 subscribe=True):
        self.broker, self.node = broker, node
        self.topics = {k: f"{prefix(node)}/{k}" for k in
                       ("state", "inventory", "capacity", "telemetry", "cmd", "cmd/ack")}
        self._inbound = {f"{prefix(node)}/{k}" for k in Schemas.INBOUND_SUFFIXES}
        self.event_prefix = f"{prefix(node)}/task/event/"
        self.messages = []
        self.errors = []
        self.cv = threading.Condition()
        self.connected = threading.Event()
        self.connects = 0
        self._subscribe = subscribe
        cid = client_id or f"brain-{node}-{os.getpid()}-{id(self) & 0xffff:x}"
        self.client = mqtt.Client(client_id=cid, clean_session=not persistent, protocol=mqtt.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", broker.brain_port, keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(10):
            self.close()
            raise AssertionError(f"brain could not connect to the broker on {broker.brain_port}")
        if subscribe:
            wait_until(lambda: self._subscribed, 10, what="brain subscription")

    _subscribed = False

    def _on_connect(self, client, userdata, flags, rc):
        if rc != 0:
            return
        self.connects += 1
        if self._subscribe:
            def on_sub(c, u, mid, granted):
                self._subscribed = True
            client.on_subscribe = on_sub
            client.subscribe(f"{prefix(self.node)}/#", qos=1)
        self.connected.set()

    def _on_disconnect(self, client, userdata, rc):
        self.connected.clear()

    def _on_message(self, client, userdata, msg):
        t = time.monotonic()
        payload = msg.payload.decode("utf-8", errors="replace")
        doc = None
        try:
            doc = json.loads(payload)
        except ValueError:
            doc = None
        with self.cv:
            m = Message(t, msg.topic, payload, bool(msg.retain), msg.qos, doc, len(self.messages))
            self.messages.append(m)
            if msg.topic not in self._inbound:  # the test's own requests (some are bad on purpose)
                self._validate(m)
            self.cv.notify_all()

    def _validate(self, m):
        if m.doc is None:
            self.errors.append(f"{m.topic}: not JSON: {m.payload[:300]!r}")
            return
        sch = schemas()
        name = sch.schema_for(self.node, m.topic, m.doc)
        if name is None:
            self.errors.append(f"{m.topic}: message on a topic the contract does not name")
            return
        errs = sch.errors(name, m.doc)
        if errs:
            self.errors.append(f"{m.topic}: does not validate against {name}: {errs[:5]}; payload "
                               f"{m.payload[:500]}")
        if isinstance(m.doc, dict) and m.doc.get("node_id") != self.node:
            self.errors.append(f"{m.topic}: node_id {m.doc.get('node_id')!r}, expected {self.node!r}")
        if m.topic.startswith(self.event_prefix) and isinstance(m.doc, dict) and \
                m.doc.get("task_id") != m.topic[len(self.event_prefix):]:
            self.errors.append(f"{m.topic}: task_id {m.doc.get('task_id')!r} does not match the event topic")

    def check(self):
        with self.cv:
            assert not self.errors, "schema/contract violations:\n" + "\n".join(self.errors)

    # ---- queries --------------------------------------------------------------------------

    def select(self, kind=None, since=0, pred=None):
        """Messages from index `since` on, on topic `kind` ("state", "telemetry", ...)."""
        with self.cv:
            out = self.messages[since:]
        if kind is not None:
            topic = self.topics[kind]
            out = [m for m in out if m.topic == topic]
        if pred is not None:
            out = [m for m in out if m.doc is not None and pred(m.doc)]
        return out

    def births(self, since=0):
        return self.select("state", since, lambda d: d.get("type") == "birth")

    def deaths(self, since=0):
        return self.select("state", since, lambda d: d.get("type") == "death")

    def telemetry(self, since=0):
        return self.select("telemetry", since)

    def mark(self):
        with self.cv:
            return len(self.messages)

    def wait_for(self, kind, pred=None, since=0, timeout=10.0, count=1, what=None):
        """Waits until `count` messages on `kind` satisfying `pred` arrived from index `since`."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                self.check()
                msgs = self.messages[since:]
                topic = self.topics[kind]
                found = [m for m in msgs if m.topic == topic and m.doc is not None and (pred is None or pred(m.doc))]
                if len(found) >= count:
                    return found[:count] if count > 1 else found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    recent = "\n".join(repr(m) for m in self.messages[-8:])
                    raise AssertionError(
                        f"timed out after {timeout:.1f} s waiting for {count} x {what or kind} "
                        f"(got {len(found)}); last messages:\n{recent}")
                self.cv.wait(min(left, 0.2))

    def wait_birth(self, since=0, timeout=15.0, pred=None):
        return self.wait_for("state", lambda d: d.get("type") == "birth" and (pred is None or pred(d)),
                             since=since, timeout=timeout, what="birth")

    def wait_ack(self, id_, since=0, timeout=10.0):
        return self.wait_for("cmd/ack", lambda d: d.get("id") == id_, since=since, timeout=timeout,
                             what=f"ack of {id_!r}")

    # ---- tasks (cpn/v1/nodes/<node>/task/event/<task>) -----------------------------------------

    def task_events(self, since=0, task_id=None, pred=None):
        """Task messages (state and progress) the node published on its event topics."""
        with self.cv:
            out = [m for m in self.messages[since:] if m.topic.startswith(self.event_prefix)
                   and m.doc is not None]
        if task_id is not None:
            out = [m for m in out if m.topic == self.event_prefix + task_id]
        if pred is not None:
            out = [m for m in out if pred(m.doc)]
        return out

    def wait_task(self, pred, since=0, timeout=10.0, count=1, what="task event"):
        """Waits until `count` task event messages satisfying `pred` arrived from index `since`."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                self.check()
                found = [m for m in self.messages[since:] if m.topic.startswith(self.event_prefix)
                         and m.doc is not None and pred(m.doc)]
                if len(found) >= count:
                    return found[:count] if count > 1 else found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    recent = "\n".join(repr(m) for m in self.messages[-8:])
                    raise AssertionError(f"timed out after {timeout:.1f} s waiting for {count} x {what} "
                                         f"(got {len(found)}); last messages:\n{recent}")
                self.cv.wait(min(left, 0.2))

    # ---- commands ---------------------------------------------------------------------------

    def send_command(self, cmd, raw=False):
        payload = cmd if raw else json.dumps(cmd)
        info = self.client.publish(self.topics["cmd"], payload, qos=1)
        info.wait_for_publish(timeout=5)
        assert info.is_published(), "the broker did not acknowledge the command"

    def close(self):
        try:
            self.client.disconnect()
        except Exception:
            pass
        self.client.loop_stop()


def retained(broker, node, topics=("state", "inventory", "capacity"), settle=1.0, timeout=5.0,
             username=None, password=None):
    """What a newcomer sees: the retained messages on the node's topics (validated), as
    {suffix: Message}. Waits until every topic in `topics` answered, then `settle` s more for
    the others."""
    b = Brain(broker, node, username=username, password=password)
    try:
        wanted = {b.topics[t]: t for t in topics}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(any(m.topic == t and m.retain for m in b.select()) for t in wanted):
                break
            time.sleep(0.05)
        time.sleep(min(settle, 0.3))
        b.check()
        out = {}
        for m in b.select():
            if m.retain:
                out[m.topic[len(prefix(node)) + 1:]] = m
        return out
    finally:
        b.close()


# --------------------------------------------------------------------------------------------
# TaskClient: the submitter of remote tasks


class ReplyMessage(Message):
    """A message on the submitter's reply topic; `correlation` is the MQTT 5 Correlation Data
    property (decoded), None when absent."""
    __slots__ = ("correlation",)

    def __init__(self, *a, correlation=None):
        super().__init__(*a)
        self.correlation = correlation


class TaskClient:
    """Sends submits, cancels and status queries (to a node's task topics or a shared queue) and
    records every message that arrives on its own reply topic. With protocol "5" the reply topic
    and correlation go as the Response Topic / Correlation Data properties, with "3.1.1" as
    `reply_to` / `correlation` in the payload. What it sends is validated against
    task-submit / task-request unless the caller says the request is bad on purpose; every reply
    is validated against task-state / task-progress on arrival, and its node_id must be one of
    `nodes`. A violation is raised by every later wait and by check()."""

    def __init__(self, broker, nodes, protocol="5", client_id=None, persistent=False,
                 reply_prefix="cpn/v1/replies/", extra_subscriptions=()):
        self.broker = broker
        self.nodes = [nodes] if isinstance(nodes, str) else list(nodes)
        self.protocol = protocol
        self.cid = client_id or f"sub-{os.getpid()}-{id(self) & 0xffffff:x}"
        self.reply_base = f"{reply_prefix}{self.cid}"
        self.reply_topic = f"{self.reply_base}/r"
        self.subscriptions = [f"{self.reply_base}/#", *extra_subscriptions]
        self.messages = []
        self.errors = []
        self.cv = threading.Condition()
        self.connected = threading.Event()
        self._subscribed = threading.Event()
        self.connects = 0
        v5 = protocol == "5"
        if v5:
            self.client = mqtt.Client(client_id=self.cid, protocol=mqtt.MQTTv5)
        else:
            self.client = mqtt.Client(client_id=self.cid, clean_session=not persistent,
                                      protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        if v5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600 if persistent else 0
            self.client.connect_async("127.0.0.1", broker.brain_port, keepalive=10,
                                      clean_start=not persistent, properties=props)
        else:
            self.client.connect_async("127.0.0.1", broker.brain_port, keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(10) or not self._subscribed.wait(10):
            self.close()
            raise AssertionError(f"task client could not connect/subscribe on {broker.brain_port}")

    def _on_connect(self, client, userdata, flags, rc, *props):
        code = getattr(rc, "value", rc)
        if code != 0:
            return
        self.connects += 1
        client.subscribe([(t, 1) for t in self.subscriptions])
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        t = time.monotonic()
        payload = msg.payload.decode("utf-8", errors="replace")
        try:
            doc = json.loads(payload)
        except ValueError:
            doc = None
        corr = None
        props = getattr(msg, "properties", None)
        if props is not None and hasattr(props, "CorrelationData"):
            corr = bytes(props.CorrelationData).decode("utf-8", errors="replace")
        with self.cv:
            m = ReplyMessage(t, msg.topic, payload, bool(msg.retain), msg.qos, doc, len(self.messages),
                             correlation=corr)
            self.messages.append(m)
            self._validate(m)
            self.cv.notify_all()

    def _validate(self, m):
        if not isinstance(m.doc, dict):
            self.errors.append(f"{m.topic}: not a JSON object: {m.payload[:300]!r}")
            return
        sch = schemas()
        name = sch.task_schema(m.doc)
        errs = sch.errors(name, m.doc)
        if errs:
            self.errors.append(f"{m.topic}: does not validate against {name}: {errs[:5]}; payload "
                               f"{m.payload[:500]}")
        if m.doc.get("node_id") not in self.nodes:
            self.errors.append(f"{m.topic}: node_id {m.doc.get('node_id')!r}, expected one of {self.nodes}")
        if m.correlation is not None and m.doc.get("correlation") != m.correlation:
            self.errors.append(f"{m.topic}: Correlation Data {m.correlation!r} but payload correlation "
                               f"{m.doc.get('correlation')!r}")

    def check(self):
        with self.cv:
            assert not self.errors, "task reply violations:\n" + "\n".join(self.errors)

    # ---- sending ------------------------------------------------------------------------------

    def node_topic(self, leaf, node=None):
        return f"{prefix(node or self.nodes[0])}/task/{leaf}"

    def _publish(self, topic, doc, schema, reply, correlation, raw, valid):
        reply_topic = self.reply_topic if reply is True else (reply or None)
        props = None
        if raw is None:
            doc = dict(doc)
            if reply_topic and self.protocol != "5":
                doc["reply_to"] = reply_topic
                if correlation is not None:
                    doc["correlation"] = correlation
            if valid:
                errs = schemas().errors(schema, doc)
                assert not errs, f"the test's own request does not validate against {schema}: {errs}: {doc}"
            payload = json.dumps(doc)
        else:
            payload = raw
        if reply_topic and self.protocol == "5":
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = reply_topic
            if correlation is not None:
                props.CorrelationData = correlation.encode()
        info = self.client.publish(topic, payload, qos=1, properties=props)
        return info

    def submit(self, doc, topic=None, node=None, queue=None, correlation=None, reply=True, raw=None,
               valid=True, wait=True):
        """Publishes a submit (QoS 1); returns the correlation used. `reply`: True (this client's
        reply topic), a topic, or None/False (no reply topic). `raw`: a payload sent as is.
        `valid=False`: the submit is bad on purpose (not checked against the schema)."""
        if topic is None:
            topic = f"cpn/v1/queues/{queue}/submit" if queue else self.node_topic("submit", node)
        if correlation is None and isinstance(doc, dict) and "id" in doc:
            correlation = f"c-{doc['id']}"
        info = self._publish(topic, doc, "task-submit.schema.json", reply, correlation, raw, valid)
        if wait:
            info.wait_for_publish(timeout=5)
            assert info.is_published(), "the broker did not acknowledge the submit"
        return correlation

    def request(self, leaf, task_id, node=None, queue=None, correlation=None, reply=True, wait=True):
        """A cancel or status query (`leaf`) for `task_id`; returns the correlation used."""
        topic = f"cpn/v1/queues/{queue}/{leaf}" if queue else self.node_topic(leaf, node)
        if correlation is None:
            correlation = f"{leaf}-{task_id}-{time.monotonic_ns() % 10**9}"
        info = self._publish(topic, {"schema_version": 1, "id": task_id}, "task-request.schema.json",
                             reply, correlation, None, True)
        if wait:
            info.wait_for_publish(timeout=5)
            assert info.is_published(), f"the broker did not acknowledge the {leaf} request"
        return correlation

    def cancel(self, task_id, **kw):
        return self.request("cancel", task_id, **kw)

    def status(self, task_id, **kw):
        return self.request("status", task_id, **kw)

    # ---- queries ------------------------------------------------------------------------------

    def mark(self):
        with self.cv:
            return len(self.messages)

    def select(self, since=0, pred=None, topic=None):
        with self.cv:
            out = [m for m in self.messages[since:] if isinstance(m.doc, dict)]
        if topic is not None:
            out = [m for m in out if m.topic == topic]
        if pred is not None:
            out = [m for m in out if pred(m.doc)]
        return out

    def wait(self, pred, since=0, timeout=10.0, count=1, what="reply"):
        """Waits for `count` replies whose payload satisfies `pred`; returns them (one: itself)."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                self.check()
                found = [m for m in self.messages[since:] if isinstance(m.doc, dict) and pred(m.doc)]
                if len(found) >= count:
                    return found[:count] if count > 1 else found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    recent = "\n".join(repr(m) for m in self.messages[-8:])
                    raise AssertionError(f"timed out after {timeout:.1f} s waiting for {count} x {what} "
                                         f"(got {len(found)}); last replies:\n{recent}")
                self.cv.wait(min(left, 0.2))

    def close(self):
        try:
            self.client.disconnect()
        except Exception:
            pass
        self.client.loop_stop()


# --------------------------------------------------------------------------------------------
# Agent


def _yaml(v):
    return json.dumps(v)  # JSON scalars and flow sequences are valid YAML


class Agent:
    """`cpn-agent --config <generated> run --plugin-dir <cpu only>`; stderr kept in a file."""

    def __init__(self, directory, node, broker=None, uris=None, **overrides):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.node = node
        self.config_path = self.dir / "agent.yaml"
        self.state_dir = self.dir / "state"
        self.stderr_path = self.dir / "agent.stderr"
        self.proc = None
        self.runs = 0
        self.env = {}  # extra environment of the agent process (e.g. NOTIFY_SOCKET)
        self.settings = {
            "node.id": node,
            "node.site": "s1",
            "broker.uris": uris if uris is not None else [broker.uri],
            "broker.keepalive_s": 5,
            "broker.protocol": "5",
            "broker.connect_timeout_s": 5,
            "broker.username": "",
            "broker.password_file": "",
            "broker.tls.ca_file": "",
            "broker.tls.cert_file": "",
            "broker.tls.key_file": "",
            "broker.tls.verify": True,
            "broker.reconnect_min_ms": 200,
            "broker.reconnect_max_ms": 2000,
            "telemetry.interval_s": 1,
            "store.max_bytes": 67108864,
            "store.max_age_s": 604800,
            "state_dir": str(self.state_dir),
            "plugins.dir": "",
            "log.level": "info",
            # No automatic benchmark (it would load both cores for seconds in every test); the
            # capacity tests turn it on.
            "capacity.mode": "off",
        }
        # CTest runs some task tests a second time with the journal not fsynced (tests/CMakeLists.txt,
        # mqtt.normal_sync.*): the mode in which the MQTT receive thread runs rounds itself.
        if os.environ.get("CPN_TEST_JOURNAL_SYNC"):
            self.settings["tasks.journal_sync"] = os.environ["CPN_TEST_JOURNAL_SYNC"]
        self.settings.update({k.replace("__", "."): v for k, v in overrides.items()})
        self.write_config()

    def write_config(self, **changes):
        self.settings.update({k.replace("__", "."): v for k, v in changes.items()})
        tree = {}
        for key, v in self.settings.items():
            parts = key.split(".")
            d = tree
            for p in parts[:-1]:
                d = d.setdefault(p, {})
            d[parts[-1]] = v

        def emit(d, indent):
            out = []
            for k, v in d.items():
                if isinstance(v, dict):
                    out.append(" " * indent + f"{k}:")
                    out += emit(v, indent + 2)
                else:
                    out.append(" " * indent + f"{k}: {_yaml(v)}")
            return out

        self.config_path.write_text("\n".join(emit(tree, 0)) + "\n")

    def start(self):
        assert AGENT_BIN.exists(), f"{AGENT_BIN} does not exist (build the cpn-agent target)"
        self.runs += 1
        err = open(self.stderr_path, "ab")
        err.write(f"\n===== run {self.runs} =====\n".encode())
        err.flush()
        self.proc = subprocess.Popen(
            [str(AGENT_BIN), "--config", str(self.config_path), "run", "--plugin-dir", str(PLUGIN_DIR)],
            stdin=subprocess.DEVNULL, stdout=err, stderr=err, env={**os.environ, **self.env})
        err.close()
        self.started_at = time.monotonic()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        assert self.alive(), f"agent is not running (exit code {self.proc.returncode if self.proc else None})"
        self.proc.send_signal(sig)

    def kill9(self):
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=5)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


# --------------------------------------------------------------------------------------------
# A generated sysfs tree (discovery.sysfs_root) with many GPUs that report utilisation, memory,
# temperature and power, so each telemetry message is large: the only way to fill a store capped
# at its minimum (65536 bytes) within seconds at one message per second.


def fake_sysfs_with_gpus(root, count):
    root = pathlib.Path(root)
    (root / "bus" / "pci" / "devices").mkdir(parents=True, exist_ok=True)
    (root / "devices").mkdir(parents=True, exist_ok=True)
    # CPU topology and hwmon from the real machine, so the CPU device looks as usual.
    if pathlib.Path("/sys/devices/system").is_dir():
        os.symlink("/sys/devices/system", root / "devices" / "system")
    assert 0 < count <= 200
    for i in range(count):
        addr = f"0000:{0x20 + i:02x}:00.0"
        dev = root / "devices" / "pci0000:00" / addr
        (dev / "hwmon" / "hwmon0").mkdir(parents=True)
        files = {"class": "0x030200", "vendor": "0x1002", "device": "0x740f", "subsystem_vendor": "0x1002",
                 "subsystem_device": "0x0c34", "numa_node": "-1", "gpu_busy_percent": str(10 + i % 80),
                 "mem_info_vram_used": str(1_000_000_000 + i), "mem_info_vram_total": "68702699520"}
        for k, v in files.items():
            (dev / k).write_text(v + "\n")
        (dev / "hwmon" / "hwmon0" / "name").write_text("amdgpu\n")
        (dev / "hwmon" / "hwmon0" / "temp1_input").write_text(f"{40000 + i * 10}\n")
        (dev / "hwmon" / "hwmon0" / "power1_average").write_text(f"{100_000_000 + i}\n")
        os.symlink(f"../../../devices/pci0000:00/{addr}", root / "bus" / "pci" / "devices" / addr)
    return root
