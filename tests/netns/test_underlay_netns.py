"""Two simulated machines, each with its own private OVS, joined by VXLAN over an emulated underlay.

One os-ken controller programs both bridges. Proves that a node on machine 0 reaches a
node and its pod range on machine 1 (ping), that a multi-megabyte TCP transfer with
full-size packets crosses (underlay MTU 1600), that the packets really went through the
tunnel ports (their counters), and that teardown leaves no run-prefixed object behind.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Iterator

import pytest

from emulator.fabric import underlay
from emulator.fabric.machine import Machine
from emulator.fabric.sdn import SdnController
from emulator.naming import RunNames, new_run_id
from fabric_helpers import free_port, leftovers, sh
from test_fabric_netns import ROUTER_MAC, VPC_GW, ping, tcp_transfer

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None and not os.path.exists("/usr/sbin/ovs-vswitchd"),
                       reason="needs Open vSwitch (Debian openvswitch-switch)"),
]

# name, machine, ip, routed range, address inside the range
HOSTS = [("node-a", 0, "10.128.0.2", "10.4.0.0/24", "10.4.0.1"),
         ("node-b", 1, "10.128.0.3", "10.4.1.0/24", "10.4.1.1"),
         ("node-c", 1, "10.128.0.4", "10.4.2.0/24", "10.4.2.1")]


@dataclass
class TwoMachines:
    """Machines, wire, controller and host namespaces of one test run."""

    names: RunNames
    machines: list[Machine] = field(default_factory=list)
    wire: underlay.EmulatedUnderlay | None = None
    controller: SdnController | None = None
    netns: dict[str, str] = field(default_factory=dict)
    mesh: list[list[underlay.TunnelSpec]] = field(default_factory=list)

    def counters(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for m in self.machines:
            out.update(m.tunnel_counters())
        return out

    def counters_once(self, done, timeout: float = 5.0) -> dict[str, dict[str, int]]:
        """Counters once `done(counters)` holds (or after `timeout`): userspace OVS publishes
        a tunnel port's statistics a moment after the packets went (seen here: up to ~1 s)."""
        deadline = time.time() + timeout
        while True:
            got = self.counters()
            if done(got) or time.time() > deadline:
                return got
            time.sleep(0.1)


def add_host(tm: TwoMachines, i: int) -> dict:
    """Host namespace with eth0 /32; its fabric end born in its machine's fabric namespace."""
    name, machine, ip, rng, addr = HOSTS[i]
    ns, port = tm.names.host_netns(name), tm.names.fabric_port(i)
    sh("ip", "netns", "add", ns)
    tm.netns[name] = ns
    sh("ip", "link", "add", port, "netns", tm.names.fabric_netns(machine), "type", "veth",
       "peer", "name", "eth0", "netns", ns)
    for cmd in (["link", "set", "lo", "up"], ["addr", "add", f"{ip}/32", "dev", "eth0"], ["link", "set", "eth0", "up"],
                ["route", "add", VPC_GW, "dev", "eth0", "scope", "link"],
                ["route", "add", "default", "via", VPC_GW, "dev", "eth0", "onlink"],
                ["addr", "add", f"{addr}/32", "dev", "lo"]):
        sh("ip", "-n", ns, *cmd)
    sh("ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off")
    tm.machines[machine].add_ports([port])
    mac = sh("ip", "-n", ns, "-o", "link", "show", "eth0").split("link/ether ")[1].split()[0]
    return {"name": name, "ip": ip, "mac": mac, "port_name": port, "routes": [rng],
            "dpid": tm.machines[machine].dpid}


@contextlib.contextmanager
def two_machines(wire: str = "bridge") -> Iterator[TwoMachines]:
    """Build everything; ALWAYS tears it down. `wire`: the simulated machines' Linux bridge,
    or the real machines' tap relayed over UDP between the machines' addresses."""
    names = RunNames(new_run_id())
    state = tempfile.mkdtemp(prefix=f"/tmp/{names.prefix}-")
    tm = TwoMachines(names)
    port = free_port()
    try:
        tm.controller = SdnController(port)
        tm.machines = [Machine(names.run_id, i, state, use_system_ovs=False) for i in range(2)]
        for m in tm.machines:
            m.start(("127.0.0.1", port))
        addrs = [underlay.tunnel_address(i) for i in range(2)]
        tm.mesh = underlay.tunnel_mesh(names, addrs)
        plen = underlay.UNDERLAY_RANGE.prefixlen
        if wire == "bridge":
            tm.wire = underlay.EmulatedUnderlay(names.run_id, 2)
            links = tm.wire.create()
            infos = [m.attach_underlay(link, addr, plen) for m, link, addr in zip(tm.machines, links, addrs)]
        else:
            infos = [m.attach_udp_wire(addr, plen) for m, addr in zip(tm.machines, addrs)]
            for m in tm.machines:
                m.set_wire_peers({i["underlay_mac"]: i["wire"] for i in infos})
        neighbors = {i["underlay_ip"]: i["underlay_mac"] for i in infos}
        for m, tunnels in zip(tm.machines, tm.mesh):
            assert all(p > 0 for p in m.add_tunnels([t.__dict__ for t in tunnels], neighbors).values())
        endpoints = [add_host(tm, i) for i in range(len(HOSTS))]
        dpids = [m.dpid for m in tm.machines]
        tm.controller.set_state({"router_mac": ROUTER_MAC, "gateways": [VPC_GW], "endpoints": endpoints,
                                 "tunnels": underlay.vpc_tunnels(tm.mesh, dpids)})
        tm.controller.wait_connected(dpids, timeout=20)
        yield tm
    finally:
        if tm.controller is not None:
            tm.controller.stop()
        for ns in tm.netns.values():
            sh("ip", "netns", "del", ns)
        for m in tm.machines:
            m.stop()
        if tm.wire is not None:
            tm.wire.destroy()
        shutil.rmtree(state, ignore_errors=True)


# First in the file: os-ken is one per process, so this runs before the module fixture's.
def test_teardown_leaves_nothing() -> None:
    with two_machines() as t:
        prefix = t.names.prefix
        assert any("underlay" in x for x in leftovers(prefix))
    assert leftovers(prefix) == []


@pytest.fixture(scope="module", params=["bridge", "udp"])
def tm(request) -> Iterator[TwoMachines]:
    with two_machines(request.param) as t:
        yield t


def test_underlay_addresses_only_inside_kubemu_namespaces(tm: TwoMachines) -> None:
    root = sh("ip", "-o", "addr")
    assert "198.18." not in root
    fabric0 = sh("ip", "-n", tm.names.fabric_netns(0), "-o", "addr")
    assert f"{underlay.tunnel_address(0)}/24" in fabric0


def test_cross_machine_ping_and_pod_range_through_the_tunnel(tm: TwoMachines) -> None:
    before = tm.counters()
    assert ping(tm.netns["node-a"], "10.128.0.3") == 3
    assert ping(tm.netns["node-a"], "10.4.2.1") == 3
    assert ping(tm.netns["node-b"], "10.128.0.4") == 3  # same machine: no tunnel needed
    out = tm.mesh[0][0].port_name   # machine 0 -> machine 1
    back = tm.mesh[1][0].port_name  # machine 1 -> machine 0

    def crossed(c: dict) -> bool:
        return all(c[p]["tx_packets"] - before[p]["tx_packets"] >= 6 for p in (out, back))
    after = tm.counters_once(crossed)
    assert after[out]["tx_packets"] - before[out]["tx_packets"] >= 6
    assert after[back]["tx_packets"] - before[back]["tx_packets"] >= 6


def test_full_size_tcp_crosses_machines(tm: TwoMachines) -> None:
    before = tm.counters()
    nbytes = 8 << 20
    assert tcp_transfer(tm.netns["node-a"], tm.netns["node-b"], "10.128.0.3", nbytes) == nbytes
    out = tm.mesh[0][0].port_name
    after = tm.counters_once(lambda c: c[out]["tx_bytes"] - before[out]["tx_bytes"] >= nbytes, timeout=10)
    assert after[out]["tx_bytes"] - before[out]["tx_bytes"] >= nbytes


def test_cutting_a_machine_off_its_underlay_stops_cross_machine_traffic_only(tm: TwoMachines) -> None:
    """The fabric half of a machine outage: machine 1's underlay link down, then up again."""
    tm.machines[1].set_underlay(False)
    try:
        assert ping(tm.netns["node-a"], "10.128.0.3", count=2, timeout=1.0) == 0
        assert ping(tm.netns["node-b"], "10.128.0.4", count=2, timeout=1.0) == 2  # inside machine 1
    finally:
        tm.machines[1].set_underlay(True)
    deadline = time.monotonic() + 10
    while ping(tm.netns["node-a"], "10.128.0.3", count=1, timeout=1.0) != 1 and time.monotonic() < deadline:
        pass
    assert ping(tm.netns["node-a"], "10.128.0.3") == 3

