"""Which machine failure ran: a real machine's Ray node stopped and rejoined, or a simulated
machine's kept (its hosts crashed, its fabric cut): the fault records say so."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from emulator.errors import KubemuError
from emulator.runner.steps import machine_fault

pytestmark = pytest.mark.unit


class FakeClient:
    """The client calls a machine fault makes, recorded."""

    def __init__(self, own_ray_nodes: bool) -> None:
        fleet = SimpleNamespace(count=3, own_ray_nodes=own_ray_nodes, lost=set(), node_ids=["n0", "n1", "n2"],
                                infos=[{"dpid": 10 + i, "node_ip": f"10.0.0.{i + 1}"} for i in range(3)],
                                hosts_on=lambda m: [f"node-{m}", f"vm-{m}"])
        plan = SimpleNamespace(nodes=[SimpleNamespace(name=f"node-{m}") for m in range(3)])
        self.cluster = SimpleNamespace(fleet=fleet, plan=plan)
        self.calls: list[tuple] = []

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            self.calls.append((name, *args))
            return {"lose_machine": {"ray_node_dead_s": 1.0, "actors_lost": ["machine-1"]},
                    "rebuild_machine": {"nodes_started_s": 2.0}, "wait_machine_rejoined": 0.5,
                    "sdn_connected": [], "sdn_flow_count": 7, "result": {"flows": 0}}.get(name)
        return call


def test_real_machines_lose_their_ray_node_and_rejoin() -> None:
    client = FakeClient(own_ray_nodes=True)
    down = machine_fault.fail(client, 1)
    assert down["ray_node"] == "stopped" and down["ray_node_id"] == "n1" and down["actors_lost"] == ["machine-1"]
    assert client.calls[0] == ("lose_machine", 1) and "host_chaos_start" not in [c[0] for c in client.calls]
    client.cluster.fleet.lost.add(1)
    back = machine_fault.recover(client, 1)
    assert back["ray_node"] == "rejoined" and back["flows"] == 7 and back["node_ip"] == "10.0.0.2"
    assert ("wait_machine_rejoined", 1) in client.calls and ("rebuild_machine", 1) in client.calls


def test_simulated_machines_keep_their_ray_node_and_say_so() -> None:
    client = FakeClient(own_ray_nodes=False)
    down = machine_fault.fail(client, 2)
    assert down["ray_node"] == machine_fault.KEPT == "kept (simulated machines share one host)"
    assert ("host_chaos_start", {"node-2": "crash", "vm-2": "partition"}) in client.calls
    assert machine_fault.recover(client, 2)["ray_node"] == machine_fault.KEPT
    assert ("node_chaos", ["node-2", "vm-2"], "recover") in client.calls


@pytest.mark.parametrize("machine,why", [(0, "machine 0 cannot fail: it runs the driver and the control plane"),
                                         (3, "no machine 3 to fail")])
def test_machine_zero_and_unknown_machines_are_refused(machine: int, why: str) -> None:
    with pytest.raises(KubemuError, match=why):
        machine_fault.fail(FakeClient(own_ray_nodes=True), machine)
