"""A node host's leases renewed together (emulator/node/lease.py `LeaseGroup`): one API call
per round renews every running node's Lease with its own renewTime; a paused (partitioned)
or cut-off node is left out and lapses; a node the lifecycle controller marked NotReady
posts Ready=True again after its renewal; the group's thread stops with its last node."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from emulator.api.apilink import NodeApiClient
from emulator.api.server import ApiServer
from emulator.control.nodelifecycle import LEASE_NAMESPACE, ready_status
from emulator.node import lease as lease_mod
from emulator.node.lease import LeaseGroups, LeaseRenewer

pytestmark = pytest.mark.unit
NODES = ["n1", "n2", "n3"]


class _Method:
    def __init__(self, actor: "Actor", name: str) -> None:
        self.actor, self.name = actor, name

    def remote(self, *a, **kw):
        self.actor.calls.append(self.name)
        coro = getattr(self.actor.server, self.name)(*a, **kw)
        return asyncio.run_coroutine_threadsafe(coro, self.actor.loop).result(5)


class Actor:
    """The ApiServer class on an event loop thread, called as an actor handle (ray.get patched out)."""

    def __init__(self) -> None:
        self.server = ApiServer("10.0.0.0/24")
        self.loop = asyncio.new_event_loop()
        self.calls: list[str] = []
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self, name)

    def lease_time(self, node: str) -> float | None:
        lease = self.server.store.get("Lease", LEASE_NAMESPACE, node)
        return None if lease is None else lease["spec"]["renewTime"]

    def node(self, node: str) -> dict:
        return self.server.store.get("Node", "", node)


@pytest.fixture
def api(monkeypatch) -> Actor:
    monkeypatch.setattr(lease_mod.ray, "get", lambda x: x)
    actor = Actor()
    for n in NODES:
        actor.server.store.create({"kind": "Node", "apiVersion": "v1", "metadata": {"name": n},
                                   "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    yield actor
    actor.loop.call_soon_threadsafe(actor.loop.stop)


def renewers(api: Actor, interval: float = 30.0) -> tuple[dict[str, NodeApiClient], dict[str, LeaseRenewer]]:
    groups = LeaseGroups()
    clients = {n: NodeApiClient(api, n) for n in NODES}
    return clients, {n: LeaseRenewer(c, n, interval, group=groups.group(c, interval)).start()
                     for n, c in clients.items()}


def test_one_call_renews_every_running_node_and_leaves_out_the_paused_and_the_cut_off(api) -> None:
    clients, rs = renewers(api)
    assert [api.lease_time(n) is not None for n in NODES] == [True] * 3   # each start renews at once
    group = rs["n1"].group
    assert all(r.group is group for r in rs.values())
    before = {n: api.lease_time(n) for n in NODES}
    api.calls.clear()
    rs["n2"].pause()                      # partitioned: the kubelet runs but reaches nothing
    clients["n3"].set_reachable(False)    # crashed: its link is down
    time.sleep(0.01)
    done = group.renew_due()
    assert [r.node for r in done] == ["n1"]
    assert api.calls == ["renew_leases"]  # one call for the whole process
    assert api.lease_time("n1") > before["n1"]
    assert (api.lease_time("n2"), api.lease_time("n3")) == (before["n2"], before["n3"])
    assert rs["n1"].renewals == 2 and rs["n2"].renewals == 1


def test_a_node_marked_not_ready_posts_ready_after_its_renewal(api) -> None:
    _, rs = renewers(api)
    for n in ("n2", "n3"):
        api.server.store.patch("Node", "", n, lambda o: o["status"].update(
            {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}]}))
    api.calls.clear()
    rs["n1"].group.renew_due()
    assert [ready_status(api.node(n)) for n in NODES] == ["True", "True", "True"]
    assert api.node("n2")["status"]["conditions"][-1]["reason"] == "KubeletReady"
    # one call posts both: per-node posts had made a round after a mass lapse last 10-40 s
    assert api.calls == ["renew_leases", "post_nodes_ready"]


def test_a_node_cut_off_while_the_call_is_in_flight_does_not_count_it(api) -> None:
    clients, rs = renewers(api)
    real = api.server.renew_leases

    async def cut_during(leases):
        clients["n1"].set_reachable(False)   # the reply never reaches n1
        return await real(leases)
    api.server.renew_leases = cut_during
    done = rs["n1"].group.renew_due()
    assert sorted(r.node for r in done) == ["n2", "n3"]
    assert rs["n1"].renewals == 1


def test_the_thread_renews_each_interval_and_ends_with_its_last_node(api) -> None:
    _, rs = renewers(api, interval=0.05)
    group = rs["n1"].group
    deadline = time.time() + 20
    while group.rounds < 3 and time.time() < deadline:
        time.sleep(0.01)
    assert group.rounds >= 3 and all(r.renewals >= 3 for r in rs.values())
    for r in rs.values():
        r.stop()
    while group._thread is not None and time.time() < deadline:
        time.sleep(0.01)
    assert group._thread is None
    stopped = group.rounds
    time.sleep(0.2)
    assert group.rounds == stopped
