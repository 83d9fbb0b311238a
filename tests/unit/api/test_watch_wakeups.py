"""The API server wakes only the watches a write concerns (emulator/api/waiters.py)."""
import asyncio

import pytest

from emulator.api.server import ApiServer
from emulator.api.waiters import Waiters, wait_keys, wake_keys

pytestmark = pytest.mark.unit


def lease(name: str, t: float) -> dict:
    return {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
            "metadata": {"name": name, "namespace": "kube-node-lease"}, "spec": {"renewTime": t}}


def pod(name: str, node: str | None) -> dict:
    spec = {"containers": [{"name": "c", "image": "x"}]}
    if node:
        spec["nodeName"] = node
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_keys_of_watches_and_writes():
    assert wait_keys(["Pod", "Node"], "n1") == [("Pod", "n1"), ("Node", None)]
    assert wait_keys(["Pod"], None) == [("Pod", None)]
    assert wake_keys(pod("p", "n1")) == [("Pod", None), ("Pod", "n1")]
    assert wake_keys(pod("p", None)) == [("Pod", None)]
    assert wake_keys(lease("n1", 1)) == [("Lease", None)]


def test_a_write_wakes_only_the_watches_it_concerns():
    async def main() -> dict[str, bool]:
        w = Waiters()
        names = {"kubelet-n1": [("Pod", "n1")], "kubelet-n2": [("Pod", "n2")],
                 "controllers": [("Pod", None), ("Lease", None)], "proxy": [("Service", None)]}
        tasks = {n: asyncio.create_task(w.wait(k, 5.0)) for n, k in names.items()}
        await asyncio.sleep(0)
        assert w.parked() == 4
        w.wake(lease("n1", 1.0))
        w.wake(pod("p", "n1"))
        await asyncio.sleep(0.01)
        woke = {n: t.done() for n, t in tasks.items()}
        w.wake({"kind": "Service", "metadata": {"name": "s"}})
        w.wake(pod("q", "n2"))
        await asyncio.gather(*tasks.values())
        assert w.parked() == 0
        return woke
    assert asyncio.run(main()) == {"kubelet-n1": True, "kubelet-n2": False, "controllers": True, "proxy": False}


def test_watch_returns_at_once_on_its_write_and_waits_through_others():
    async def main() -> tuple[list, float, list]:
        api = ApiServer("10.96.0.0/16")
        loop = asyncio.get_running_loop()
        rv = await api.resource_version()
        kubelet = asyncio.create_task(api.watch(["Pod"], rv, 5.0, "n1"))
        other = asyncio.create_task(api.watch(["Pod"], rv, 0.3, "n2"))
        await asyncio.sleep(0)
        for i in range(50):   # renewals: no kubelet watch returns
            await api.apply(lease(f"n{i}", i))
        await asyncio.sleep(0.01)
        assert not kubelet.done() and not other.done()
        start = loop.time()
        await api.create(pod("web", "n1"))
        got = await asyncio.wait_for(kubelet, 1.0)
        took = loop.time() - start
        return [e["obj"]["metadata"]["name"] for e in got["events"]], took, (await other)["events"]
    names, took, other = asyncio.run(main())
    assert names == ["web"] and took < 1.0
    assert other == []   # n2's kubelet: its timeout, no events
