"""A machine failure (and its recovery) for real, for the `fault` step.

Failure: every node placed on the machine crashes the way a node `crash` does (lease
stops, pods die, link down), its client hosts lose their link, and the machine's fabric goes dark: its underlay link goes
down (every tunnel to it), its bridge leaves the SDN controller and loses its flows.
Recovery: the bridge goes back under the controller, which reads its (empty) tables and
reprograms it, the underlay link comes up, then the hosts reboot (kubelet, kube-proxy and
lease start again). Machine 0 runs the control plane and is never failed.
"""
from __future__ import annotations

import time

from emulator.errors import KubemuError

RECONNECT_TIMEOUT = 30.0


def machine_nodes(cluster, machine: int) -> list[str]:
    """The Kubernetes nodes placed on `machine`."""
    _check(cluster, machine)
    on = set(cluster.fleet.hosts_on(machine))
    return [n.name for n in cluster.plan.nodes if n.name in on]


def _check(cluster, machine: int) -> None:
    count = cluster.fleet.count
    if not 1 <= machine < count:
        raise KubemuError(f"fault: no machine {machine} to fail (this run has {count} machine(s); "
                          "machine 0 runs the control plane)")


def _datapath_gone(client, dpid: int, timeout: float = 10.0) -> float | None:
    """Seconds until the SDN controller no longer lists `dpid` as connected; None if it still does."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if dpid not in client.sdn_connected():
            return round(time.time() - t0, 3)
        time.sleep(0.1)
    return None


def fail(client, machine: int) -> dict:
    """Take machine `machine` away: its hosts crash, its fabric is cut off and loses its flows."""
    cluster = client.cluster
    _check(cluster, machine)
    hosts = cluster.fleet.hosts_on(machine)
    nodes = set(machine_nodes(cluster, machine))  # other hosts (clients) only lose their link
    refs = client.host_chaos_start({h: "crash" if h in nodes else "partition" for h in hosts})
    fabric = client.set_machine_online(machine, False)   # at the same time as the hosts go down
    client.result(refs)
    out = client.result(fabric)
    dpid = cluster.fleet.infos[machine]["dpid"]
    return {"machine": machine, "hosts": hosts, "flows_left": out["flows"],
            "datapath_disconnected_s": _datapath_gone(client, dpid)}


def recover(client, machine: int) -> dict:
    """Bring machine `machine` back: fabric reprogrammed by the controller, then its hosts reboot."""
    cluster = client.cluster
    _check(cluster, machine)
    t0 = time.time()
    client.result(client.set_machine_online(machine, True))
    dpid = cluster.fleet.infos[machine]["dpid"]
    client.sdn_wait_connected([dpid], RECONNECT_TIMEOUT)
    reprogrammed = round(time.time() - t0, 3)
    flows = client.sdn_flow_count(dpid)
    hosts = cluster.fleet.hosts_on(machine)
    client.node_chaos(hosts, "recover")
    return {"machine": machine, "hosts": hosts, "datapath_reprogrammed_s": reprogrammed, "flows": flows}
