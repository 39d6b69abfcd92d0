"""The Debian packages, built by CPack from this build tree and installed into a clean Debian 12
root made with debootstrap: file layout, the service user, permissions, the conffile across an
upgrade, the state across an upgrade, purge, lintian, the unit's hardening, and the installed
daemon publishing its birth to a real mosquitto.

The tests run in file order and share one root (module fixtures): install, inspect, run,
upgrade, purge. Needs root (debootstrap, chroot, mounts) and the Debian mirror apt uses.

Environment: CPN_BUILD_DIR (the build tree; default ./build), CPN_PKGTEST_DIR (work directory;
default <build>/pkgtest), CPN_DEBIAN_MIRROR (default: the host's first Debian URI).
"""

import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration" / "mqtt"))
import harness  # noqa: E402  (the real-mosquitto broker of the daemon tests)

BUILD = pathlib.Path(os.environ.get("CPN_BUILD_DIR", REPO / "build")).resolve()
WORK = pathlib.Path(os.environ.get("CPN_PKGTEST_DIR", BUILD / "pkgtest")).resolve()
ROOT = WORK / "root"
SUITE = "bookworm"
NODE = "pkgtest-node"

if os.geteuid() != 0:
    pytest.skip("the package tests need root (debootstrap, chroot, mount); run them as root",
                allow_module_level=True)


def run(cmd, check=True, timeout=900, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {p.returncode}\n"
                             f"--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-4000:]}")
    return p


def in_root(*cmd, check=True, timeout=900, env=None):
    e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    e.update(env or {})
    return run(["chroot", str(ROOT), "/usr/bin/env", "-i"] + [f"{k}={v}" for k, v in e.items()] + list(cmd),
               check=check, timeout=timeout)


def mirror():
    if os.environ.get("CPN_DEBIAN_MIRROR"):
        return os.environ["CPN_DEBIAN_MIRROR"]
    for f in [pathlib.Path("/etc/apt/sources.list")] + sorted(pathlib.Path("/etc/apt/sources.list.d").glob("*")):
        try:
            text = f.read_text()
        except OSError:
            continue
        m = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(r"^deb\s+(\S+/debian)\s+\w+", text, re.M)
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def mounted_under(path):
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(str(path) + "/")]


def unmount_all():
    for m in sorted(mounted_under(ROOT), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    assert not mounted_under(ROOT), mounted_under(ROOT)


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def control(deb, field):
    return run(["dpkg-deb", "-f", str(deb), field]).stdout.strip()


# ------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def debs():
    """Every package CPack makes from this build tree, by package name."""
    out = WORK / "debs"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    assert (BUILD / "CPackConfig.cmake").exists(), f"{BUILD} is not a configured build tree"
    run(["cpack", "-G", "DEB", "--config", str(BUILD / "CPackConfig.cmake"), "-B", str(out)], timeout=900)
    found = {}
    for d in sorted(out.glob("*.deb")):
        found[control(d, "Package")] = d
    print("packages:", ", ".join(f"{k} ({v.name})" for k, v in found.items()))
    return found


@pytest.fixture(scope="module")
def root(debs):
    """A clean Debian 12 (debootstrap minbase) with the same mirror and suites as the host; the
    first run caches it as a tarball in the work directory."""
    if ROOT.exists():
        unmount_all()
    shutil.rmtree(ROOT, ignore_errors=True)
    cache = WORK / f"{SUITE}-minbase.tar"
    ROOT.mkdir(parents=True)
    if cache.exists():
        run(["tar", "-C", str(ROOT), "-xpf", str(cache)])
    else:
        t0 = time.monotonic()
        run(["debootstrap", "--variant=minbase", SUITE, str(ROOT), mirror()], timeout=1800)
        print(f"debootstrap {SUITE} minbase from {mirror()}: {time.monotonic() - t0:.0f} s")
        run(["tar", "-C", str(ROOT), "-cpf", str(cache), "."])
    # The host's apt sources (same mirror, updates and security), resolver, and the kernel
    # filesystems the agent reads; nothing of the host's /dev is bound (debootstrap made nodes).
    for f in ["/etc/resolv.conf"]:
        shutil.copy(f, ROOT / f.lstrip("/"))
    srcs = [p for p in pathlib.Path("/etc/apt/sources.list.d").glob("*.sources")]
    if srcs:
        (ROOT / "etc/apt/sources.list").unlink(missing_ok=True)
        for p in srcs:
            shutil.copy(p, ROOT / "etc/apt/sources.list.d" / p.name)
    run(["mount", "-t", "proc", "proc", str(ROOT / "proc")])
    run(["mount", "--bind", "/sys", str(ROOT / "sys")])
    run(["mount", "-o", "remount,bind,ro", str(ROOT / "sys")])
    (ROOT / "tmp/debs").mkdir(exist_ok=True)
    for d in debs.values():
        shutil.copy(d, ROOT / "tmp/debs" / d.name)
    t0 = time.monotonic()
    in_root("apt-get", "update", "-q", timeout=600)
    # An edge node boots with systemd (not PID 1 here): the unit is enabled and verified with it.
    in_root("apt-get", "install", "-y", "-q", "--no-install-recommends", "systemd", timeout=900)
    print(f"apt-get update and install systemd in the root: {time.monotonic() - t0:.0f} s")
    yield ROOT
    unmount_all()


def installable(debs):
    """The packages whose vendor runtime is in Debian main (libcuda1 is in non-free)."""
    return [n for n in debs if n != "cpn-agent-backend-cuda"]


@pytest.fixture(scope="module")
def installed(root, debs):
    names = installable(debs)
    t0 = time.monotonic()
    p = in_root("apt-get", "install", "-y", "-q", "--no-install-recommends",
                *[f"/tmp/debs/{debs[n].name}" for n in names], timeout=1200)
    print(f"apt-get install {' '.join(names)}: {time.monotonic() - t0:.0f} s")
    print(p.stdout[-3000:])
    return names


# ------------------------------------------------------------------------------------------------
# the packages themselves


def test_packages_and_their_metadata(debs):
    built = [b.strip() for b in (BUILD / "CMakeCache.txt").read_text().split("CPN_BACKENDS_BUILT:INTERNAL=")[1]
             .splitlines()[0].split(";")]
    want = {"cpn-agent"} | {f"cpn-agent-backend-{'fpga' if b == 'xrt' else b}" for b in built if b != "cpu"}
    assert set(debs) == want, (sorted(debs), sorted(want))
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    version = control(debs["cpn-agent"], "Version")
    assert re.fullmatch(r"\d+\.\d+\.\d+-\d+", version), version
    for name, deb in debs.items():
        assert deb.name == f"{name}_{version}_{arch}.deb", deb.name
        assert control(deb, "Version") == version
    deps = control(debs["cpn-agent"], "Depends")
    for lib in ["adduser", "libc6", "libpaho-mqttpp3-1", "libyaml-cpp0.7", "libsqlite3-0", "libhwloc15", "libsystemd0", "libopenblas0", "libdnnl2"]:
        assert lib in deps, f"cpn-agent Depends lacks {lib}: {deps}"
    runtime = {"cpn-agent-backend-cuda": "libcuda1", "cpn-agent-backend-opencl": "libopencl1",
               "cpn-agent-backend-levelzero": "libze1", "cpn-agent-backend-fpga": "libxrt"}
    for name, deb in debs.items():
        if name == "cpn-agent":
            continue
        d = control(deb, "Depends")
        assert f"cpn-agent (= {version})" in d, (name, d)
        assert runtime[name] in d, f"{name} must depend on its vendor runtime ({runtime[name]}): {d}"
        # A vendor backend is a plugin only: nothing outside the plugin directory and its docs.
        files = run(["dpkg-deb", "-c", str(deb)]).stdout
        for line in files.splitlines():
            path = line.split()[-1].lstrip(".")
            assert path.endswith("/") or "/cpn-agent/backends/" in path or path.startswith(
                f"/usr/share/doc/{name}/") or path.startswith("/usr/share/lintian/overrides/"), (name, path)
    ctl = run(["dpkg-deb", "-I", str(debs["cpn-agent"]), "conffiles"]).stdout.split()
    assert ctl == ["/etc/cpn-agent/agent.yaml"], ctl


def test_lintian_clean(debs):
    """No lintian error or warning; the tags overridden in packaging/lintian/ are justified in
    docs/packaging.md."""
    p = run(["lintian", "--info", "--display-info", "--fail-on", "error,warning", *map(str, debs.values())],
            check=False, timeout=900)
    print(p.stdout)
    print(p.stderr)
    bad = [l for l in p.stdout.splitlines() if re.match(r"^[EW]: ", l)]
    assert not bad and p.returncode == 0, "\n".join(bad) or p.stderr
    justified = (REPO / "docs" / "packaging.md").read_text()
    for f in (REPO / "packaging" / "lintian").iterdir():
        for line in f.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                tag = line.split(":", 1)[1].split()[0]
                assert f"`{tag}`" in justified, f"{f.name}: override of {tag} is not justified in docs/packaging.md"


def test_binaries_are_hardened_and_have_no_rpath(debs, tmp_path):
    for name, deb in debs.items():
        d = tmp_path / name
        run(["dpkg-deb", "-x", str(deb), str(d)])
        for f in d.rglob("*"):
            if not f.is_file() or f.read_bytes()[:4] != b"\x7fELF":
                continue
            dyn = run(["readelf", "-d", "-W", str(f)]).stdout
            hdr = run(["readelf", "-h", "-W", str(f)]).stdout
            assert "RPATH" not in dyn and "RUNPATH" not in dyn, f"{f}: build paths leak into the package\n{dyn}"
            assert "BIND_NOW" in dyn or "FLAGS_1" in dyn and "NOW" in dyn, f"{f}: not linked with -z now"
            assert "DYN (" in hdr, f"{f}: not position independent"
            assert run(["readelf", "-l", "-W", str(f)]).stdout.count("GNU_RELRO") == 1, f"{f}: no RELRO"


# ------------------------------------------------------------------------------------------------
# installed into a clean Debian 12


def test_install_layout_user_and_permissions(root, installed):
    multiarch = run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]).stdout.strip()
    plugins = f"/usr/lib/{multiarch}/cpn-agent/backends"
    expect = ["/usr/bin/cpn-agent", "/usr/bin/cpnctl", f"{plugins}/libcpn-backend-cpu.so",
              "/etc/cpn-agent/agent.yaml", "/lib/systemd/system/cpn-agent.service",
              "/usr/share/man/man1/cpn-agent.1.gz", "/usr/share/man/man1/cpnctl.1.gz",
              "/usr/share/man/man5/cpn-agent.yaml.5.gz",
              "/usr/share/bash-completion/completions/cpn-agent", "/usr/share/bash-completion/completions/cpnctl",
              "/usr/share/doc/cpn-agent/copyright", "/usr/share/doc/cpn-agent/changelog.Debian.gz"]
    if "cpn-agent-backend-opencl" in installed:
        expect.append(f"{plugins}/libcpn-backend-opencl.so")
    if "cpn-agent-backend-levelzero" in installed:
        expect.append(f"{plugins}/libcpn-backend-levelzero.so")
    if "cpn-agent-backend-fpga" in installed:
        expect.append(f"{plugins}/libcpn-backend-xrt.so")
    for path in expect:
        assert (root / path.lstrip("/")).exists(), f"{path} is not installed"
    assert not list((root / "usr/local").rglob("*cpn*")), "nothing goes to /usr/local"

    pw = in_root("getent", "passwd", "cpn-agent").stdout.strip().split(":")
    assert pw[5] == "/var/lib/cpn-agent" and pw[6] in ("/usr/sbin/nologin", "/bin/false"), pw
    assert int(pw[2]) < 1000, f"cpn-agent must be a system user: {pw}"
    groups = in_root("id", "-nG", "cpn-agent").stdout.split()
    assert "cpn-agent" in groups, groups
    for g in ("render", "video"):
        if in_root("getent", "group", g, check=False).returncode == 0:
            assert g in groups, f"cpn-agent must be in {g} (GPU device nodes): {groups}"

    def owner_mode(path):
        return in_root("stat", "-c", "%U:%G %a", path).stdout.strip()

    assert owner_mode("/var/lib/cpn-agent") == "cpn-agent:cpn-agent 750"
    assert owner_mode("/etc/cpn-agent/agent.yaml") == "root:cpn-agent 640"
    assert owner_mode("/usr/bin/cpn-agent") == "root:root 755"
    v = in_root("cpn-agent", "--version").stdout
    assert re.search(r"^cpn-agent \d+\.\d+\.\d+ \(git \w+(-dirty)?\)$", v, re.M) and "plugin ABI" in v, v
    # The installed binary finds its plugins relative to itself, as packaged.
    disc = json.loads(in_root("cpn-agent", "discover", "--json", "--probe-timeout-ms", "20000", timeout=120).stdout)
    names = {p["name"]: p for p in disc["plugins"]}
    assert names["cpu"]["status"] == "ok" and names["cpu"]["device_count"] >= 1, names["cpu"]
    for n in ("opencl", "levelzero", "xrt"):
        if n in names:  # ok, or skipped with the reason (no driver in a bare root)
            assert names[n]["status"] in ("ok", "skipped"), names[n]
    print(in_root("cpn-agent", "discover").stdout)
    man = in_root("sh", "-c", "zcat /usr/share/man/man1/cpn-agent.1.gz | head -1").stdout
    assert man.startswith(".TH CPN-AGENT 1"), man


def test_installed_unit_verifies_and_is_hardened(root, installed):
    unit = root / "lib/systemd/system/cpn-agent.service"
    text = unit.read_text()
    for line in ["Type=notify", "WatchdogSec=", "Restart=on-failure", "User=cpn-agent", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "StateDirectory=cpn-agent", "ProtectHome=yes", "PrivateTmp=yes",
                 "SupplementaryGroups=render video", "RestrictAddressFamilies=", "SystemCallFilter=@system-service"]:
        assert line in text, f"the unit lacks {line}"
    p = run(["systemd-analyze", "security", "--offline=yes", f"--root={root}", "cpn-agent.service"], check=False)
    print(p.stdout[-6000:], p.stderr[-2000:])
    m = re.search(r"Overall exposure level for cpn-agent.service: ([\d.]+) (\w+)", p.stdout)
    assert m, p.stdout + p.stderr
    exposure = float(m.group(1))
    print(f"systemd-analyze security: {exposure} {m.group(2)}")
    assert exposure <= 2.0, f"exposure {exposure} {m.group(2)}: the unit lost some of its hardening"
    wants = root / "etc/systemd/system/multi-user.target.wants/cpn-agent.service"
    assert wants.is_symlink(), "postinst did not enable the unit"
    v = run(["systemd-analyze", "verify", f"--root={root}", "/lib/systemd/system/cpn-agent.service"], check=False)
    problems = [l for l in (v.stdout + v.stderr).splitlines() if "cpn-agent.service" in l and "man" not in l]
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = harness.Broker(tmp_path_factory.mktemp("broker"))
    b.start()
    yield b
    b.stop()


def edit_conffile(root, broker):
    conf = root / "etc/cpn-agent/agent.yaml"
    text = conf.read_text()
    text = text.replace('uris: ["tcp://127.0.0.1:1883"]', f'uris: ["tcp://127.0.0.1:{broker.port}"]')
    text = text.replace('  id: ""', f'  id: "{NODE}"', 1)
    text = text.replace("  mode: quick", "  mode: off", 1)  # no benchmark in this test
    assert f"127.0.0.1:{broker.port}" in text and NODE in text
    conf.write_text(text + "# edited by the operator\n")


def run_installed_daemon(root, broker, seconds_after_birth=1.0):
    """The installed daemon as the cpn-agent user in the root, with a notify socket playing
    systemd; returns (READY status, birth, death)."""
    uid = int(in_root("id", "-u", "cpn-agent").stdout)
    gid = int(in_root("id", "-g", "cpn-agent").stdout)
    sock_path = root / "run/cpn-notify.sock"
    sock_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    os.chmod(sock_path, 0o777)
    brain = harness.Brain(broker, NODE)
    try:
        proc = subprocess.Popen(
            ["chroot", f"--userspec={uid}:{gid}", str(root), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin",
             "NOTIFY_SOCKET=/run/cpn-notify.sock", "/usr/bin/cpn-agent", "run"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sock.settimeout(60)
        ready = None
        while ready is None:
            msg = dict(l.split("=", 1) for l in sock.recv(4096).decode().splitlines() if "=" in l)
            if msg.get("READY") == "1":
                ready = msg
        birth = brain.wait_birth(timeout=30)
        time.sleep(seconds_after_birth)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        print(out[-4000:])
        assert proc.returncode == 0, out
        death = brain.wait_for("state", lambda d: d["type"] == "death", timeout=10)
        return ready, birth, death
    finally:
        brain.close()
        sock.close()
        sock_path.unlink(missing_ok=True)


def test_installed_daemon_publishes_birth(root, installed, broker):
    edit_conffile(root, broker)
    ready, birth, death = run_installed_daemon(root, broker)
    assert ready["STATUS"].startswith("online"), ready
    assert death.doc["reason"] == "shutdown", death.doc
    state = {p.name for p in (root / "var/lib/cpn-agent").iterdir()}
    assert "bdseq" in state, state
    owners = in_root("find", "/var/lib/cpn-agent", "-not", "-user", "cpn-agent").stdout.split()
    assert not owners, f"state written as another user: {owners}"
    # The doctor, as the service user, against the same broker.
    chk = in_root("runuser", "-u", "cpn-agent", "--", "cpn-agent", "check", check=False, timeout=120)
    print(chk.stdout, chk.stderr)
    assert chk.returncode == 0, chk.stdout + chk.stderr


def make_upgrade(deb, work):
    """The same package as the next Debian revision, whose default configuration changed (a new
    comment), so dpkg has to decide between the operator's file and the new default."""
    d = work / "upgrade"
    shutil.rmtree(d, ignore_errors=True)
    run(["dpkg-deb", "-R", str(deb), str(d)])
    ctl = d / "DEBIAN/control"
    version = re.search(r"^Version: (\S+)$", ctl.read_text(), re.M).group(1)
    up, rev = version.rsplit("-", 1)
    new_version = f"{up}-{int(rev) + 1}"
    ctl.write_text(ctl.read_text().replace(f"Version: {version}", f"Version: {new_version}"))
    conf = d / "etc/cpn-agent/agent.yaml"
    conf.write_text(conf.read_text() + "# a new default shipped by the next revision\n")
    sums = d / "DEBIAN/md5sums"
    if sums.exists():
        new = hashlib.md5(conf.read_bytes()).hexdigest()
        sums.write_text(re.sub(r"^\w+(  etc/cpn-agent/agent.yaml)$", new + r"\1", sums.read_text(), flags=re.M))
    out = work / f"cpn-agent_{new_version}.deb"
    run(["dpkg-deb", "--root-owner-group", "-b", str(d), str(out)])
    return out, new_version


def test_upgrade_keeps_edited_conffile_and_state(root, installed, broker, debs):
    conf = root / "etc/cpn-agent/agent.yaml"
    edited = conf.read_text()
    assert "# edited by the operator" in edited
    state_dir = root / "var/lib/cpn-agent"
    before = {p.relative_to(state_dir): sha256(p) for p in state_dir.rglob("*") if p.is_file()}
    assert before, "the daemon left no state to keep"
    bdseq = int((state_dir / "bdseq").read_text().split()[0]) if (state_dir / "bdseq").exists() else None

    deb, new_version = make_upgrade(debs["cpn-agent"], WORK)
    shutil.copy(deb, root / "tmp/debs" / deb.name)
    in_root("apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "Dpkg::Options::=--force-confold",
            "-o", "Dpkg::Options::=--force-confdef", f"/tmp/debs/{deb.name}", timeout=600)
    assert in_root("dpkg-query", "-W", "-f", "${Version}", "cpn-agent").stdout == new_version
    assert conf.read_text() == edited, "the operator's configuration was replaced on upgrade"
    assert (root / "etc/cpn-agent/agent.yaml.dpkg-dist").exists(), "the new default is not kept beside it"
    after = {p.relative_to(state_dir): sha256(p) for p in state_dir.rglob("*") if p.is_file()}
    assert after == before, "the state directory changed across the upgrade"
    assert in_root("stat", "-c", "%U:%G %a", "/etc/cpn-agent/agent.yaml").stdout.strip() == "root:cpn-agent 640"
    # The upgraded agent runs on the kept state: its session counter goes on from the old one.
    ready, birth, _ = run_installed_daemon(root, broker, seconds_after_birth=0.2)
    if bdseq is not None:
        assert birth.doc["bdseq"] > bdseq, (bdseq, birth.doc)


def test_remove_then_purge(root, installed):
    in_root("apt-get", "remove", "-y", "-q", "cpn-agent", timeout=600)
    assert not (root / "usr/bin/cpn-agent").exists()
    assert (root / "etc/cpn-agent/agent.yaml").exists(), "remove keeps the configuration"
    assert (root / "var/lib/cpn-agent").exists(), "remove keeps the state"
    for n in installed:  # the backends went with the agent they depend on
        st = in_root("dpkg-query", "-W", "-f", "${db:Status-Abbrev}", n, check=False).stdout.strip()
        assert not st.startswith("ii"), (n, st)
    in_root("apt-get", "purge", "-y", "-q", *installed, timeout=600)
    for path in ["etc/cpn-agent", "var/lib/cpn-agent", "var/cache/cpn-agent", "usr/share/doc/cpn-agent"]:
        assert not (root / path).exists(), f"/{path} is left after purge"
    left = in_root("sh", "-c", "dpkg -l | grep cpn-agent || true").stdout.strip()
    assert not left, left
    multiarch = run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]).stdout.strip()
    assert not (root / f"usr/lib/{multiarch}/cpn-agent").exists()
