"""scripts/device-kit.sh and scripts/device-check.sh (docs/gpu-checks.md): the build packed for a
machine that has none of Debian's libraries and the checkout at another path, and the checks run
from that pack.

The relocated run is the GPU machine's situation made here: in a private mount namespace the
directory holding the source tree compiled into the tests is hidden under an empty tmpfs (so
are /usr/share/libonnx-testdata), a copy of the tracked files and the kit sits elsewhere, and
device-check.sh must link the compiled-in paths to it, unpack the ONNX data, find every library
in the kit and run the unit tests of a backend to the end. CUDA is not on these machines, so the
run goes through OpenCL (PoCL), as CPN_DEVICE_CHECK_BACKEND=opencl says.

Needs root and unshare(1) for the relocated run (skipped with the reason otherwise).
Environment: CPN_BUILD_DIR (the build tree; default ./build).
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("CPN_BUILD_DIR", REPO / "build")).resolve()


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    out = tmp_path_factory.mktemp("kit")
    r = subprocess.run(["bash", str(REPO / "scripts" / "device-kit.sh"), "--no-build", "--without-cuda",
                        str(BUILD), str(out)], env=dict(os.environ, CPN_DEVICE_KIT_XZ="0"),
                       capture_output=True, text=True, timeout=600)
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stderr
    return out


def manifest(kit):
    return dict(line.split("=", 1) for line in (kit / "MANIFEST").read_text().splitlines())


def test_kit_holds_the_programs_and_every_library_but_glibc_and_the_vendor_runtimes(kit):
    m = manifest(kit)
    cache = (BUILD / "CMakeCache.txt").read_text()
    assert m["source_dir"] == re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$", cache, re.M).group(1)
    with tarfile.open(kit / "kit.tar.xz") as t:
        names = set(t.getnames())
    for f in ("build/bin/cpn-agent", "build/bin/cpn-unit-tests",
              f"build/lib/{m['multiarch']}/cpn-agent/backends/libcpn-backend-cpu.so",
              "build/test-plugins/libcpn-backend-fakeaccel.so",
              "lib/libpaho-mqttpp3.so.1", "lib/libyaml-cpp.so.0.7", "lib/libonnx_proto.so.1",
              "lib-fallback/libstdc++.so.6"):
        assert f in names, f"{f} is not in the kit"
    packed = [n for n in names if re.match(r"lib(-fallback)?/(libc|libm|ld-linux-x86-64|libpthread|libdl"
                                           r"|libcuda|libnvidia-ml|libcublas|libOpenCL|libze_loader)\.so", n)]
    assert not packed, f"glibc or a vendor runtime was packed: {packed}"
    # Stripped: the agent in the kit is a fraction of the build's (which has debug information).
    with tarfile.open(kit / "kit.tar.xz") as t:
        size = t.getmember("build/bin/cpn-agent").size
    assert size < (BUILD / "bin" / "cpn-agent").stat().st_size
    if (REPO / ".git").exists():
        assert int(m["kit_bytes"]) + int(m["tree_bytes"]) < 64 << 20


def test_unknown_option_and_a_tree_that_is_not_a_build_are_named(tmp_path):
    script = str(REPO / "scripts" / "device-kit.sh")
    r = subprocess.run(["bash", script, "--bogus"], capture_output=True, text=True)
    assert r.returncode == 1 and "unknown option --bogus" in r.stderr
    r = subprocess.run(["bash", script, "--no-build", str(tmp_path), str(tmp_path / "kit")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and f"{tmp_path} is not a configured build tree" in r.stderr


def test_check_without_a_kit_says_how_to_make_one(tmp_path):
    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "device-check.sh", copy / "scripts")
    r = subprocess.run(["bash", str(copy / "scripts" / "device-check.sh")], capture_output=True, text=True,
                       env=dict(os.environ, OUT=str(tmp_path / "out")))
    assert r.returncode == 2
    assert "MANIFEST is missing: run 'bash scripts/device-kit.sh'" in r.stdout
    r = subprocess.run(["bash", str(copy / "scripts" / "device-check.sh"), "benchmark"], capture_output=True,
                       text=True, env=dict(os.environ, OUT=str(tmp_path / "out")))
    assert r.returncode == 2 and "unknown step 'benchmark'" in r.stdout


def unshare_works():
    if os.geteuid() != 0:
        return "needs root (mount namespaces and tmpfs mounts)"
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    r = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    return None if r.returncode == 0 else f"unshare -m fails here: {r.stderr.strip()}"


def test_checks_run_from_the_kit_with_the_source_tree_hidden(kit):
    why = unshare_works()
    if why:
        pytest.skip(why)
    src = pathlib.Path(manifest(kit)["source_dir"])
    hide = src.parent
    if hide == pathlib.Path("/"):
        pytest.skip(f"the source tree {src} sits in /, which cannot be hidden")
    bases = [pathlib.Path(b) for b in ("/var/tmp", "/tmp", "/dev/shm")]
    base = next((b for b in bases if b.is_dir() and not b.resolve().is_relative_to(hide)
                 and not hide.is_relative_to(b.resolve())), None)
    if base is None:
        pytest.skip(f"no scratch directory outside {hide}")
    work = pathlib.Path(tempfile.mkdtemp(prefix="cpn-device-kit-test-", dir=base))
    try:
        copy = work / "repo"
        files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True,
                               check=True).stdout.decode().split("\0")
        for f in filter(None, files):
            if (REPO / f).is_file():
                (copy / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / f, copy / f)
        shutil.copytree(kit, copy / ".device-kit")
        out = work / "out"
        hide_onnx = "[ ! -d /usr/share/libonnx-testdata ] || mount -t tmpfs cpn-hidden /usr/share/libonnx-testdata"
        cmd = (f'mount -t tmpfs cpn-hidden "{hide}" && {hide_onnx} && [ ! -e "{src}" ] && '
               f'cd "{copy}" && bash scripts/device-check.sh env tests')
        env = dict(os.environ, OUT=str(out), CPN_DEVICE_CHECK_BACKEND="opencl", CPN_PYTHON=sys.executable,
                   CPN_DEVICE_KIT_ROOT=str(work / "unpacked"))
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", cmd], env=env,
                           capture_output=True, text=True, timeout=900)
        print(r.stdout[-6000:], r.stderr[-2000:])
        log = (out / "device-check.log").read_text()
        summary = (out / "summary.txt").read_text()
        assert r.returncode in (0, 3), f"device-check.sh exited {r.returncode}:\n{summary}"
        assert f"linked {src} -> {copy}" in log
        assert "unit tests (opencl): ok" in summary, summary
        m = re.search(r"\[ PASSED \] (\d+) tests?", summary)
        assert m and int(m.group(1)) >= 10, summary
        assert "FAILED" not in summary
        if (REPO / ".git").exists() and os.path.isdir("/usr/share/libonnx-testdata/data"):
            counts = re.findall(r"onnx backend tests \((\S+), opencl\): (\d+) passed, (\d+) failed", summary)
            assert {c[0] for c in counts} >= {"node", "simple"}, summary
            assert all(int(c[1]) > 0 and c[2] == "0" for c in counts), summary
        assert (out / "unit-tests.xml").is_file()
    finally:
        shutil.rmtree(work, ignore_errors=True)
