"""A machine failure (and its recovery) for real, for the `fault` step.

Real machines (`--address`, each machine its own Ray node): the machine's Ray node goes
down as a failing VM does (emulator/fabric/poweroff.py): its raylet, its actors (node
hosts, fabric) and the run's processes and kernel objects there vanish; the driver sees
its actors dead, the node lifecycle controller sees the leases lapse. Recovery waits for
a new Ray node from the machine's address (`ray start --address ...` there again), then
builds the machine from the run's plan: fabric (OVS, bridge, tunnels), hosts (same
names, addresses, MACs), nodes started (kubelet restarts their pods, kube-proxy resyncs).
Simulated machines share one host, so no Ray node is stopped (the fault record says
which ran): every node placed on the machine crashes the way a node `crash` does (lease
stops, pods die, link down), its client hosts lose their link, and the machine's fabric
goes dark: its underlay link goes down (every tunnel to it), its bridge leaves the SDN
controller and loses its flows. Recovery: the bridge goes back under the controller,
which reads its (empty) tables and reprograms it, the underlay link comes up, then the
hosts reboot (kubelet, kube-proxy and lease start again). Machine 0 runs the control
plane and the driver and is never failed.
"""
from __future__ import annotations

import time

from emulator.errors import KubemuError

RECONNECT_TIMEOUT = 30.0
STOPPED, REJOINED = "stopped", "rejoined"
KEPT = "kept (simulated machines share one host)"


def machine_nodes(cluster, machine: int) -> list[str]:
    """The Kubernetes nodes placed on `machine`."""
    _check(cluster, machine)
    on = set(cluster.fleet.hosts_on(machine))
    return [n.name for n in cluster.plan.nodes if n.name in on]


def _check(cluster, machine: int) -> None:
    count = cluster.fleet.count
    if machine == 0:
        raise KubemuError("fault: machine 0 cannot fail: it runs the driver and the control plane")
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
    """Take machine `machine` away: its Ray node with everything on it (real machines), else its
    hosts crash and its fabric is cut off and loses its flows."""
    cluster = client.cluster
    _check(cluster, machine)
    hosts = cluster.fleet.hosts_on(machine)
    dpid = cluster.fleet.infos[machine]["dpid"]
    if cluster.fleet.own_ray_nodes:
        node_id = cluster.fleet.node_ids[machine]
        lost = client.lose_machine(machine)
        return {"machine": machine, "hosts": hosts, "ray_node": STOPPED, "ray_node_id": node_id, **lost,
                "datapath_disconnected_s": _datapath_gone(client, dpid, RECONNECT_TIMEOUT)}
    nodes = set(machine_nodes(cluster, machine))  # other hosts (clients) only lose their link
    refs = client.host_chaos_start({h: "crash" if h in nodes else "partition" for h in hosts})
    fabric = client.set_machine_online(machine, False)   # at the same time as the hosts go down
    client.result(refs)
    out = client.result(fabric)
    return {"machine": machine, "hosts": hosts, "ray_node": KEPT, "flows_left": out["flows"],
            "datapath_disconnected_s": _datapath_gone(client, dpid)}


def recover(client, machine: int) -> dict:
    """Bring machine `machine` back: fabric reprogrammed by the controller, then its hosts reboot."""
    cluster = client.cluster
    _check(cluster, machine)
    t0 = time.time()
    dpid = cluster.fleet.infos[machine]["dpid"]
    hosts = cluster.fleet.hosts_on(machine)
    if machine in cluster.fleet.lost:   # its Ray node failed: a new one, the machine built again
        rec = {"ray_node": REJOINED, "ray_node_wait_s": client.wait_machine_rejoined(machine),
               "ray_node_id": cluster.fleet.node_ids[machine], "node_ip": cluster.fleet.infos[machine]["node_ip"]}
        t1 = time.time()   # from here on, as long as the machine takes to be built again
        rec.update(client.rebuild_machine(machine))
        client.sdn_wait_connected([dpid], RECONNECT_TIMEOUT)
        return {"machine": machine, "hosts": hosts, **rec, "datapath_reprogrammed_s": round(time.time() - t1, 3),
                "flows": client.sdn_flow_count(dpid)}
    client.result(client.set_machine_online(machine, True))
    client.sdn_wait_connected([dpid], RECONNECT_TIMEOUT)
    reprogrammed = round(time.time() - t0, 3)
    flows = client.sdn_flow_count(dpid)
    client.node_chaos(hosts, "recover")
    return {"machine": machine, "hosts": hosts, "ray_node": KEPT, "datapath_reprogrammed_s": reprogrammed,
            "flows": flows}
