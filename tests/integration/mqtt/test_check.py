"""Black-box tests of `cpn-agent check` (docs/cli.md#cpn-agent-check), the operator's doctor: the
real binary against a real mosquitto (harness.Broker on free loopback ports), with configurations
written by harness.Agent (which is not started unless a test needs a running agent beside the
check) and a throw-away PKI.

Every run is also made with --json, and every JSON document is checked for its shape: an array
of {check, subject, status, message, fix}, status ok|warn|fail, fix a string exactly when the
status is not ok.
"""

import json
import os
import pathlib
import re
import subprocess
import time

import jsonschema

import harness
from harness import write_private

START_TIMEOUT = 15.0
CHECKS = {"configuration", "state_dir", "secrets", "broker", "plugins", "misc"}
PCI_IDS = pathlib.Path("/usr/share/misc/pci.ids")

FINDINGS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["check", "subject", "status", "message", "fix"],
        "properties": {
            "check": {"enum": sorted(CHECKS)},
            "subject": {"type": "string"},
            "status": {"enum": ["ok", "warn", "fail"]},
            "message": {"type": "string", "minLength": 1},
            "fix": {"type": ["string", "null"]},
        },
        "if": {"properties": {"status": {"const": "ok"}}},
        "then": {"properties": {"fix": {"type": "null"}}},
        "else": {"properties": {"fix": {"type": "string", "minLength": 1}}},
    },
}


# --------------------------------------------------------------------------------------------
# helpers


class Run:
    def __init__(self, argv, proc, wall):
        self.argv, self.rc, self.out, self.err, self.wall = argv, proc.returncode, proc.stdout, proc.stderr, wall

    def __repr__(self):
        return (f"cpn-agent {' '.join(self.argv)}\n  exit {self.rc} after {self.wall:.1f} s\n"
                f"  stdout:\n{self.out[-6000:]}\n  stderr: {self.err[-3000:]!r}")


def check(config, *args, timeout=120):
    assert harness.AGENT_BIN.exists(), f"{harness.AGENT_BIN} does not exist (build the cpn-agent target)"
    argv = ["--config", str(config), "check", *[str(a) for a in args]]
    t0 = time.monotonic()
    p = subprocess.run([str(harness.AGENT_BIN), *argv], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       errors="replace", timeout=timeout)
    return Run(argv, p, time.monotonic() - t0)


def check_json(config, *args, timeout=120):
    """`check --json`: the run and its findings, the document's shape validated."""
    r = check(config, "--json", *args, timeout=timeout)
    try:
        doc = json.loads(r.out)
    except ValueError:
        raise AssertionError(f"stdout is not one JSON document: {r!r}") from None
    errors = [f"{'/'.join(str(x) for x in e.absolute_path) or '(root)'}: {e.message}"
              for e in jsonschema.Draft202012Validator(FINDINGS_SCHEMA).iter_errors(doc)]
    assert not errors, f"--json output does not have the documented shape: {errors}\n{r!r}"
    return r, doc


def text_and_json(config, *args):
    """Both forms of one check; they must agree on the findings and the exit code."""
    text = check(config, *args)
    r, doc = check_json(config, *args)
    assert text.rc == r.rc, f"exit {text.rc} in text form, {r.rc} with --json:\n{text!r}\n{r!r}"
    lines = [l for l in text.out.splitlines() if re.match(r"^\[( OK |WARN|FAIL)\] ", l)]
    assert len(lines) == len(doc), f"{len(lines)} finding lines, {len(doc)} JSON findings:\n{text!r}\n{r!r}"
    for line, f in zip(lines, doc):
        tag = {"ok": "[ OK ]", "warn": "[WARN]", "fail": "[FAIL]"}[f["status"]]
        assert line.startswith(f"{tag} {f['check']}"), f"line {line!r} vs finding {f}"
    # Every warning and failure has its indented fix line right under it.
    out = text.out.splitlines()
    for i, l in enumerate(out):
        if l.startswith(("[WARN]", "[FAIL]")):
            assert i + 1 < len(out) and out[i + 1].startswith("       fix: "), f"no fix line under {l!r}:\n{text!r}"
    return text, doc


def find(doc, check_name, pred=lambda f: True):
    return [f for f in doc if f["check"] == check_name and pred(f)]


def not_ok(doc, allow_pci_ids=True):
    """The findings that are not ok, less the pci.ids warning on a machine without pci.ids."""
    return [f for f in doc if f["status"] != "ok"
            and not (allow_pci_ids and f["check"] == "misc" and not PCI_IDS.exists())]


def cpu_plugin_dir(workdir):
    """A plugin directory with the CPU backend alone (the build's directory holds vendor plugins
    whose outcome depends on the machine)."""
    src = harness.PLUGIN_DIR / "libcpn-backend-cpu.so"
    assert src.exists(), f"{src} does not exist (build the CPU backend)"
    d = workdir / "plugins"
    d.mkdir(exist_ok=True)
    link = d / src.name
    if not link.exists():
        os.symlink(src, link)
    return d


def config_for(make_agent, workdir, node, broker=None, **settings):
    """A written configuration (harness.Agent, not started) with the CPU plugin alone and an
    existing, private state directory."""
    settings.setdefault("plugins__dir", str(cpu_plugin_dir(workdir)))
    agent = make_agent(node, broker, **settings)
    agent.state_dir.mkdir(mode=0o750, exist_ok=True)
    os.chmod(agent.state_dir, 0o750)
    return agent


# --------------------------------------------------------------------------------------------
# tests


def test_check_all_ok_against_live_broker(make_broker, make_brain, make_agent, workdir, node_id):
    """A sound node: every check ok and exit 0, also while the agent itself is connected under the
    same node id: the check's own client id keeps the agent's session (no death, no new birth)."""
    broker = make_broker()
    brain = make_brain(broker, node_id)
    agent = config_for(make_agent, workdir, node_id, broker)
    mark = brain.mark()
    agent.start()
    brain.wait_birth(since=mark, timeout=START_TIMEOUT)
    online = brain.mark()

    text, doc = text_and_json(agent.config_path)
    assert text.rc == 0, text
    assert not not_ok(doc), f"expected every check ok:\n{text!r}"
    assert {f["check"] for f in doc} >= CHECKS - ({"misc"} if not PCI_IDS.exists() else set()), doc
    (b,) = find(doc, "broker")
    assert b["subject"] == broker.uri and "accepted" in b["message"], b
    assert re.search(rf"client id '{re.escape(node_id)}-check-\d+'", b["message"]), b
    (cfg,) = find(doc, "configuration")
    assert cfg["subject"] == str(agent.config_path), cfg
    cpu = find(doc, "plugins", lambda f: f["subject"] == "cpu")
    assert cpu and re.search(r"[1-9]\d* devices?", cpu[0]["message"]), doc
    assert re.search(r"^\d+ ok, 0 warnings?, 0 failures$", text.out, re.M), text

    # The checks connected twice under their own ids and left: the agent kept its session.
    time.sleep(1.0)
    assert agent.alive(), agent.stderr()[-2000:]
    assert not brain.deaths(since=online), f"the check kicked the running agent: {brain.deaths(since=online)}"
    assert not brain.births(since=online), "the agent had to reconnect while the check ran"
    log = broker.log()
    assert re.search(rf"New client connected .* as {re.escape(node_id)}-check-\d+", log), log[-3000:]
    assert not re.search(rf"Client {re.escape(node_id)} already connected", log), log[-3000:]


def test_check_broker_refused(make_agent, workdir, node_id):
    port = harness.free_port()
    agent = config_for(make_agent, workdir, node_id, uris=[f"tcp://127.0.0.1:{port}"])
    text, doc = text_and_json(agent.config_path)
    assert text.rc == 1, text
    (b,) = find(doc, "broker")
    assert b["status"] == "fail" and "connection refused" in b["message"], b
    assert f"127.0.0.1:{port}" in b["fix"] and "start the broker" in b["fix"], b
    assert re.search(r"^\[FAIL\] broker tcp://127\.0\.0\.1:\d+: .*connection refused", text.out, re.M), text
    # Everything else is fine: the broker is the only failure.
    assert [f["check"] for f in not_ok(doc)] == ["broker"], text


def test_check_unknown_host(make_agent, workdir, node_id):
    agent = config_for(make_agent, workdir, node_id, uris=["tcp://no-such-host.invalid:1883"])
    r, doc = check_json(agent.config_path, "--skip-plugins")
    assert r.rc == 1, r
    (b,) = find(doc, "broker")
    assert b["status"] == "fail" and re.search(r"no such host|cannot resolve|name resolution", b["message"]), b


def test_check_password(make_broker, make_agent, workdir, node_id):
    """The right password connects (and is never printed); a wrong one fails naming the bad
    credentials, with the fix naming the user and the password file."""
    broker = make_broker(users={"node": "node-pw"})
    pw = write_private(workdir / "node.pw", "node-pw\n")
    agent = config_for(make_agent, workdir, node_id, broker, broker__username="node", broker__password_file=str(pw))
    text, doc = text_and_json(agent.config_path, "--skip-plugins")
    assert text.rc == 0, text
    (b,) = find(doc, "broker")
    assert b["status"] == "ok" and "user 'node'" in b["message"], b
    assert find(doc, "secrets", lambda f: f["subject"] == f"broker.password_file {pw}" and f["status"] == "ok"), doc

    write_private(pw, "not-the-password")
    text, doc = text_and_json(agent.config_path, "--skip-plugins")
    assert text.rc == 1, text
    (b,) = find(doc, "broker")
    assert b["status"] == "fail", b
    assert re.search(r"(?i)bad user ?name or password|not authori[sz]ed", b["message"]), b
    assert "'node'" in b["fix"] and str(pw) in b["fix"], b
    for out in (text.out, text.err, json.dumps(doc)):
        assert "node-pw" not in out and "not-the-password" not in out, "a password appears in the output"


def test_check_password_file_mode_0644(make_agent, workdir, node_id):
    pw = workdir / "node.pw"
    pw.write_text("secret\n")
    os.chmod(pw, 0o644)
    agent = config_for(make_agent, workdir, node_id, uris=[f"tcp://127.0.0.1:{harness.free_port()}"],
                       broker__username="node", broker__password_file=str(pw))
    r, doc = check_json(agent.config_path, "--skip-plugins", "--skip-broker")
    assert r.rc == 1, r
    (s,) = find(doc, "secrets", lambda f: f["status"] == "fail")
    assert "0644" in s["message"] and s["fix"] == f"chmod 600 {pw}", s


def test_check_key_file_mode_0644(make_broker, make_agent, pki, workdir, node_id):
    ca, _ = pki.ca("ca")
    scrt, skey = pki.leaf("server", "ca", server=True)
    ccrt, ckey = pki.leaf("client", "ca", server=False)
    os.chmod(ckey, 0o644)
    broker = make_broker(tls=(ca, scrt, skey), require_certificate=True)
    agent = config_for(make_agent, workdir, node_id, broker, broker__tls__ca_file=str(ca),
                       broker__tls__cert_file=str(ccrt), broker__tls__key_file=str(ckey))
    text, doc = text_and_json(agent.config_path, "--skip-plugins")
    assert text.rc == 1, text
    (k,) = find(doc, "secrets", lambda f: f["status"] == "fail")
    assert k["subject"] == f"broker.tls.key_file {ckey}", k
    assert "0644" in k["message"] and k["fix"] == f"chmod 600 {ckey}", k
    assert f"\n       fix: chmod 600 {ckey}\n" in text.out, text
    # The agent would refuse that key, so the check does not connect with it either.
    (b,) = find(doc, "broker")
    assert b["status"] == "warn" and "not tried" in b["message"], b


def test_check_mutual_tls(make_broker, make_agent, pki, workdir, node_id):
    """Mutual TLS works: certificates parsed, key matches the certificate, broker ok. The
    throw-away PKI's certificates live 2 days, so each certificate is a warning (expires within
    30 days), which leaves the exit code 0."""
    ca, _ = pki.ca("ca")
    scrt, skey = pki.leaf("server", "ca", server=True)
    ccrt, ckey = pki.leaf("client", "ca", server=False)
    broker = make_broker(tls=(ca, scrt, skey), require_certificate=True)
    agent = config_for(make_agent, workdir, node_id, broker, broker__tls__ca_file=str(ca),
                       broker__tls__cert_file=str(ccrt), broker__tls__key_file=str(ckey))
    text, doc = text_and_json(agent.config_path, "--skip-plugins")
    assert text.rc == 0, text
    (b,) = find(doc, "broker")
    assert b["status"] == "ok" and "TLS with the broker's certificate verified" in b["message"], b
    assert find(doc, "secrets", lambda f: "matches the client certificate" in f["message"] and f["status"] == "ok")
    for what, path in (("broker.tls.ca_file", ca), ("broker.tls.cert_file", ccrt)):
        (c,) = find(doc, "secrets", lambda f, s=f"{what} {path}": f["subject"] == s)
        assert c["status"] == "warn" and re.search(r"expires on .* \(in [0-2] days?\)", c["message"]), c

    # A key that is not the certificate's.
    _, other = pki.leaf("other", "ca", server=False)
    agent.write_config(broker__tls__key_file=str(other))
    r, doc = check_json(agent.config_path, "--skip-plugins", "--skip-broker")
    assert r.rc == 1, r
    (m,) = find(doc, "secrets", lambda f: "does not belong to the client certificate" in f["message"])
    assert m["status"] == "fail" and "openssl" in m["fix"], m


def test_check_tls_unknown_ca(make_broker, make_agent, pki, workdir, node_id):
    ca, _ = pki.ca("ca")
    pki.ca("rogue-ca")
    scrt, skey = pki.leaf("server", "rogue-ca", server=True)
    broker = make_broker(tls=(pki.dir / "rogue-ca.crt", scrt, skey))
    agent = config_for(make_agent, workdir, node_id, broker, broker__tls__ca_file=str(ca))
    r, doc = check_json(agent.config_path, "--skip-plugins")
    assert r.rc == 1, r
    (b,) = find(doc, "broker")
    assert b["status"] == "fail" and re.search(r"(?i)certificate|verif|unknown ca", b["message"]), b
    assert "broker.tls.ca_file" in b["fix"], b


def test_check_invalid_config_exits_3(make_agent, workdir, node_id):
    """An invalid configuration: exit 3, every problem with file:line:column, and the checks that
    need the broken sections say they were skipped (the rest still run)."""
    agent = config_for(make_agent, workdir, node_id, uris=[f"tcp://127.0.0.1:{harness.free_port()}"],
                       broker__keepalive_s=2, broker__colour="blue")
    text, doc = text_and_json(agent.config_path)
    assert text.rc == 3, text
    path = re.escape(str(agent.config_path))
    assert re.search(rf"^\[FAIL\] configuration {path}: {path}:\d+:\d+: broker\.keepalive_s: must be between",
                     text.out, re.M), text
    assert re.search(rf"{path}:\d+:\d+: broker\.colour: unknown key", text.out), text
    for name in ("secrets", "broker"):
        (s,) = find(doc, name)
        assert s["status"] == "warn" and "not checked" in s["message"] and "broker" in s["message"], s
    # state_dir and plugins do not read the broker section: they ran.
    assert find(doc, "state_dir", lambda f: f["status"] == "ok"), doc
    assert find(doc, "plugins", lambda f: f["subject"] == "cpu" and f["status"] == "ok"), doc

    # A YAML syntax error leaves nothing to check; a named file that does not exist is exit 3 too.
    agent.config_path.write_text("broker:\n  uris: [tcp://a\n")
    text, doc = text_and_json(agent.config_path)
    assert text.rc == 3 and re.search(rf"{path}:\d+:\d+: YAML syntax error", text.out), text
    assert all(f["status"] == "warn" for f in doc if f["check"] in ("state_dir", "secrets", "broker", "plugins")), doc
    r = check(workdir / "nope.yaml")
    assert r.rc == 3 and "configuration file not found" in r.out, r


def test_check_plugins_missing_dir_and_corrupt_plugin(make_agent, workdir, node_id):
    agent = config_for(make_agent, workdir, node_id, uris=[f"tcp://127.0.0.1:{harness.free_port()}"],
                       plugins__dir=str(workdir / "no-such-dir"))
    text, doc = text_and_json(agent.config_path, "--skip-broker")
    assert text.rc == 1, text
    (p,) = find(doc, "plugins")
    assert p["status"] == "fail" and "does not exist" in p["message"] and "plugins.dir" in p["fix"], p

    # A damaged plugin beside the CPU backend: reported with the reinstall remedy, the CPU loads.
    d = cpu_plugin_dir(workdir)
    (d / "libcpn-backend-corrupt.so").write_bytes(b"\x7fELF this is not a shared object" * 4)
    agent.write_config(plugins__dir=str(d))
    text, doc = text_and_json(agent.config_path, "--skip-broker")
    assert text.rc == 1, text
    (bad,) = find(doc, "plugins", lambda f: f["subject"] == "corrupt")
    assert bad["status"] == "fail" and "dlopen" in bad["message"], bad
    assert "reinstall" in bad["fix"] and "libcpn-backend-corrupt.so" in bad["fix"], bad
    assert find(doc, "plugins", lambda f: f["subject"] == "cpu" and f["status"] == "ok"), doc

    # plugins.disable is honoured as the agent honours it: no failure then.
    agent.write_config(plugins__disable=["corrupt"])
    r, doc = check_json(agent.config_path, "--skip-broker")
    assert r.rc == 0, r
    (off,) = find(doc, "plugins", lambda f: f["subject"] == "corrupt")
    assert off["status"] == "ok" and "plugins.disable" in off["message"], off


def test_check_state_dir_problems(make_agent, workdir, node_id):
    agent = config_for(make_agent, workdir, node_id, uris=[f"tcp://127.0.0.1:{harness.free_port()}"])
    os.chmod(agent.state_dir, 0o777)
    r, doc = check_json(agent.config_path, "--skip-broker", "--skip-plugins")
    assert r.rc == 1, r
    (s,) = find(doc, "state_dir")
    assert s["status"] == "fail" and "0777" in s["message"] and s["fix"] == f"chmod 750 {agent.state_dir}", s
    os.chmod(agent.state_dir, 0o755)
    r, doc = check_json(agent.config_path, "--skip-broker", "--skip-plugins")
    assert r.rc == 0, r
    (s,) = find(doc, "state_dir")
    assert s["status"] == "warn" and "0755" in s["message"], s
    # Not a directory at all.
    os.rmdir(agent.state_dir)
    agent.state_dir.write_text("")
    r, doc = check_json(agent.config_path, "--skip-broker", "--skip-plugins")
    assert r.rc == 1, r
    (s,) = find(doc, "state_dir")
    assert s["status"] == "fail" and "not a directory" in s["message"], s


def test_check_json_shape(make_broker, make_agent, workdir, node_id):
    """--json on stdout alone (nothing else there), one document of the documented shape, in the
    order the text form prints, for runs that pass, warn and fail."""
    broker = make_broker()
    agent = config_for(make_agent, workdir, node_id, broker)
    for args in ((), ("--skip-broker",), ("--skip-plugins", "--skip-broker")):
        r, doc = check_json(agent.config_path, *args)
        assert r.rc == 0, r
        order = [f["check"] for f in doc]
        ranks = [["configuration", "state_dir", "secrets", "broker", "plugins", "misc"].index(c) for c in order]
        assert ranks == sorted(ranks), order
        assert ("broker" in order) == ("--skip-broker" not in args), order
        assert ("plugins" in order) == ("--skip-plugins" not in args), order
    agent.write_config(broker__uris=[f"tcp://127.0.0.1:{harness.free_port()}"])
    r, doc = check_json(agent.config_path, "--skip-plugins")
    assert r.rc == 1 and find(doc, "broker", lambda f: f["status"] == "fail"), r
