"""Fault targets (seeded, replayable) and the API server's journal (state survives a restart)."""
from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

import pytest

from emulator.api.server import ApiServer
from emulator.config.chaos import FaultSpec
from emulator.records.hosts import HostSpec
from emulator.runner.steps.fault import FaultRun, pick_nodes

pytestmark = pytest.mark.unit

PLAN = SimpleNamespace(nodes=[HostSpec(name=f"pool-{z}-{i}", zone=f"us-central1-{z}", role="node", ip="-",
                                       gateway="-", fabric_port="-") for z in "abc" for i in (1, 2)])


def cluster(down: set[str] | None = None) -> SimpleNamespace:
    return SimpleNamespace(plan=PLAN, down_nodes=down or set())


def picks(seed: int, n: int = 6) -> list[list[str]]:
    rng = random.Random(seed)
    return [pick_nodes(FaultSpec(action="crash", node="random"), cluster(), rng, {}) for _ in range(n)]


def test_random_targets_replay_with_the_same_seed():
    assert picks(6) == picks(6)
    assert any(picks(s) != picks(6) for s in range(7, 12))


def test_random_node_skips_nodes_already_down_and_zone_outage_takes_the_zone():
    rng = random.Random(1)
    down = {n.name for n in PLAN.nodes} - {"pool-c-2"}
    assert pick_nodes(FaultSpec(action="crash", node="random"), cluster(down), rng, {}) == ["pool-c-2"]
    assert pick_nodes(FaultSpec(action="zone-outage", zone="us-central1-b"), cluster(), rng, {}) == \
        ["pool-b-1", "pool-b-2"]
    assert pick_nodes(FaultSpec(action="recover", node="random"), cluster({"pool-b-2"}), rng, {}) == ["pool-b-2"]
    earlier = {"outage": FaultRun("outage", "zone-outage", 1.0, ["pool-a-1", "pool-a-2"])}
    assert pick_nodes(FaultSpec(action="recover", of="outage"), cluster(), rng, earlier) == ["pool-a-1", "pool-a-2"]


@pytest.mark.parametrize("fields, message", [
    ({"action": "crash"}, "action crash needs `node`"),
    ({"action": "recover", "node": "x", "zone": "y"}, "exactly one of `node`, `zone`, `of`"),
    ({"action": "pod-kill"}, "exactly one of `pod`, `deployment`"),
    ({"action": "sdn-restart", "since": "probe"}, "`since` needs `at`"),
])
def test_fault_spec_needs_its_targets(fields, message):
    with pytest.raises(ValueError, match=message):
        FaultSpec(**fields)


def svc(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": {"app": name},
                     "ports": [{"port": 80}]}}


def test_api_server_restart_replays_objects_rv_and_allocations(tmp_path):
    path = str(tmp_path / "state" / "api-journal.jsonl")

    async def before() -> tuple[dict, int]:
        api = ApiServer("10.8.0.0/28", path)
        a = await api.create(svc("a"))
        await api.create(svc("gone"))
        await api.delete("Service", "default", "gone")
        await api.patch_status("Service", "default", "a", {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}})
        return await api.get("Service", "default", "a"), await api.resource_version()

    async def after() -> tuple[ApiServer, dict, int, dict]:
        api = ApiServer("10.8.0.0/28", path)          # what Ray's restart does: a new instance
        b = await api.create(svc("b"))
        return api, await api.get("Service", "default", "a"), await api.resource_version(), b

    a, rv = asyncio.run(before())
    api, a2, rv2, b = asyncio.run(after())
    assert a2 == a and rv2 == rv + 1
    assert await_list(api, "Service") == ["a", "b"]
    # what `a` holds stays taken: `b` gets other addresses and ports
    assert b["spec"]["clusterIP"] != a["spec"]["clusterIP"]
    assert b["spec"]["healthCheckNodePort"] != a["spec"]["healthCheckNodePort"]
    assert b["spec"]["ports"][0]["nodePort"] != a["spec"]["ports"][0]["nodePort"]
    # a watcher from before the restart is told to relist
    assert asyncio.run(api.watch(["Service"], rv - 1, 0.01))["gone"]


def await_list(api: ApiServer, kind: str) -> list[str]:
    items, _ = asyncio.run(api.list(kind))
    return sorted(o["metadata"]["name"] for o in items)
