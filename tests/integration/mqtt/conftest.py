"""Fixtures for the daemon's integration tests (see harness.py). Every broker, brain and agent a
test makes through these factories is stopped in teardown; on failure the agent's stderr and the
broker's log are printed (pytest shows them under "Captured stdout teardown")."""

import os
import re
import shutil
import tempfile

import pytest

import harness


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    for when in ("setup", "call"):
        rep = getattr(request.node, "rep_" + when, None)
        if rep is not None and rep.failed:
            return True
    return False


@pytest.fixture
def workdir(request):
    """A private directory per test (ctest -j runs tests in parallel processes); kept on failure."""
    d = tempfile.mkdtemp(prefix=f"cpn-mqtt-{request.node.name[:40]}-")
    yield harness.pathlib.Path(d)
    if _failed(request):
        print(f"\n[kept {d}]")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def node_id(request):
    n = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower().replace("test_", ""))
    return f"n-{n}-{os.getpid() % 100000}"[:63]


@pytest.fixture
def pki(workdir):
    return harness.Pki(workdir / "pki")


@pytest.fixture
def make_broker(workdir, request):
    brokers = []

    def make(**kw):
        b = harness.Broker(workdir / f"broker{len(brokers)}", **kw)
        brokers.append(b)
        return b.start()

    yield make
    for b in brokers:
        b.stop()
    if _failed(request):
        for b in brokers:
            print(f"\n----- mosquitto log ({b.dir}) -----\n{b.log()[-6000:]}")


@pytest.fixture
def make_brain():
    brains = []

    def make(broker, node, **kw):
        b = harness.Brain(broker, node, **kw)
        brains.append(b)
        return b

    yield make
    for b in brains:
        b.close()
    # Every message any brain received is validated, whatever the test itself asserted.
    for b in brains:
        b.check()


@pytest.fixture
def make_agent(workdir, request):
    agents = []

    def make(node, broker=None, **kw):
        a = harness.Agent(workdir / f"agent{len(agents)}", node, broker=broker, **kw)
        agents.append(a)
        return a

    yield make
    for a in agents:
        a.close()
    if _failed(request):
        for a in agents:
            print(f"\n----- agent stderr ({a.dir}) -----\n{a.stderr()[-12000:]}")


@pytest.fixture
def broker(make_broker):
    return make_broker()


@pytest.fixture
def brain(make_brain, broker, node_id):
    return make_brain(broker, node_id)


@pytest.fixture
def agent(make_agent, broker, node_id):
    return make_agent(node_id, broker)
