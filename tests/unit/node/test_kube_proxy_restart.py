"""kube-proxy as one restartable object: start syncs what its watch lists, stop leaves the rules, a
restart is a fresh proxier that relists and rewrites them; its sync mark follows the events.

The rules go to the fake kernel (tests/fakes); the watch and the health servers are recorded.
"""
from __future__ import annotations

import asyncio
import threading
import time
import types

import pytest

from emulator.config.timing import timing_for
from emulator.node import kube_proxy
from emulator.node.kube_proxy import KubeProxy
from emulator.records.hosts import HostSpec
from tests.fakes.iptables_ruleset import FakeRunner
from tests.unit.kubeproxy.kubeproxy_helpers import endpoint, service, slice_

pytestmark = pytest.mark.unit
SVC = service("web", "10.8.0.10")
SLICE = slice_("web", [endpoint("10.4.2.7")])


def versioned(obj: dict, rv: int) -> dict:
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(rv)}}


class FakeWatch:
    """An informer: lists `objects` to the handler on start (as a relist does), then takes events."""

    def __init__(self, objects: list[dict], handler) -> None:
        self.objects, self.handler = objects, handler
        self.synced = threading.Event()
        self.stopped = False

    def start(self) -> "FakeWatch":
        for o in self.objects:
            self.handler("ADDED", o)
        self.synced.set()
        return self

    def stop(self) -> None:
        self.stopped = True

    def list(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]


class FakeHealth:
    """kube-proxy's health servers: only whether they serve."""

    def __init__(self, loop, make_socket, proxier) -> None:
        self.serving = False

    async def start(self) -> None:
        self.serving = True

    async def stop(self) -> None:
        self.serving = False


def wait_for(cond, timeout: float = 20.0) -> bool:
    """Poll `cond` until true or `timeout` (the sync worker is a thread)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.fixture
def proxy(monkeypatch):
    """A KubeProxy over one fake kernel (kept across restarts, as a node's kernel is) and its watches."""
    runner = FakeRunner()
    monkeypatch.setattr(kube_proxy, "IptablesRunner",
                        types.SimpleNamespace(in_netns=lambda netns, backend, lock_file: runner))
    monkeypatch.setattr(kube_proxy, "HealthServer", FakeHealth)
    objects = [versioned(SVC, 7), versioned(SLICE, 8)]
    watches: list[FakeWatch] = []

    def informer(kinds, handler):
        watches.append(FakeWatch(objects, handler))
        return watches[-1]
    spec = HostSpec(name="node-a", role="node", ip="10.128.0.2", gateway="10.128.0.1", fabric_port="p-a",
                    pod_cidr="10.4.1.0/24", cluster_cidr="10.4.0.0/14")
    changes: list[int] = []
    workloads = types.SimpleNamespace(loop=None, call=asyncio.run)
    kp = KubeProxy(spec, "ns-a", "/tmp/lock", timing_for("fast"), workloads, informer,
                   on_change=lambda: changes.append(1))
    yield kp, runner, watches, changes
    kp.stop()


def test_start_syncs_what_the_watch_lists_and_publishes_its_mark(proxy) -> None:
    kp, runner, watches, changes = proxy
    assert kp.synced_rv() == 0 and kp.iptables_save() == "" and kp.backend() is None
    kp.start()
    assert wait_for(lambda: kp.synced_rv() == 8)
    assert "10.8.0.10" in kp.iptables_save() and kp.backend() == "fake"
    assert kp.health.serving and len(changes) == 2 and kp.list("Service") == [watches[0].objects[0]]
    watches[0].handler("MODIFIED", versioned(SVC, 12))
    assert wait_for(lambda: kp.synced_rv() == 12) and len(changes) == 3


def test_stop_leaves_the_rules_and_a_restart_relists_and_rewrites_them(proxy) -> None:
    kp, runner, watches, _ = proxy
    kp.start()
    assert wait_for(lambda: kp.synced_rv() == 8)
    first, health = kp.proxier, kp.health
    kp.stop()
    assert watches[0].stopped and not health.serving and kp.worker._thread is None
    assert "10.8.0.10" in runner.save()          # the dead process's rules stay in the kernel
    restores = len(runner.ruleset.restores)
    kp.start()
    assert kp.proxier is not first and kp.starts == 2 and len(watches) == 2
    assert wait_for(lambda: kp.synced_rv() == 8) and len(runner.ruleset.restores) > restores
    assert "10.8.0.10" in kp.iptables_save()
