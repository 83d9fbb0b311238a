"""Two simulated machines, each with its own private OVS, joined by VXLAN tunnels.

The tunnels are OVS's VXLAN ports over the simulated machines' Linux bridge or over the
real machines' UDP relay, or the real machines' kernel VXLAN devices, one per pair of
machines as the tunnel ports themselves (each "machine" then a namespace with its own
address on a wire, where its devices are born). One os-ken controller programs both bridges. Proves
that a node on machine 0 reaches a node and its pod range on machine 1 (ping), that a
multi-megabyte TCP transfer with full-size packets crosses (underlay MTU 1600), that the
packets really went through the tunnel ports (their counters), and that teardown leaves
no run-prefixed object behind.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Iterator

import pytest

from emulator.fabric import kwire, underlay
from emulator.fabric.machine import Machine
from emulator.fabric.sdn import SdnController
from emulator.naming import RunNames, new_run_id
from emulator.kernel import netns as kns
from emulator.kernel import vxlan
from fabric_helpers import free_port, join_by_veth, leftovers, sh
from test_fabric_netns import ROUTER_MAC, VPC_GW, ping, tcp_transfer

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None and not os.path.exists("/usr/sbin/ovs-vswitchd"),
                       reason="needs Open vSwitch (Debian openvswitch-switch)"),
]

VM_ADDRS = ["198.51.100.1", "198.51.100.2"]   # the kernel wire's "machines" (TEST-NET-2)
STRANGER = "198.51.100.9"
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
    vms: list[tuple[str, str]] = field(default_factory=list)   # kernel wire: (namespace, address) per machine
    infos: list[dict] = field(default_factory=list)

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
    """Build everything; ALWAYS tears it down. `wire`: the simulated machines' Linux bridge ("bridge"),
    the real machines' tap relayed over UDP between the machines' addresses ("udp"), or their
    kernel VXLAN tunnels ("kernel"), born in two namespaces with their own addresses on a wire."""
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
        infos: list[dict] = []
        if wire == "bridge":
            tm.wire = underlay.EmulatedUnderlay(names.run_id, 2)
            links = tm.wire.create()
            infos = [m.attach_underlay(link, addr, plen) for m, link, addr in zip(tm.machines, links, addrs)]
        elif wire == "kernel":
            tm.vms = [(f"{names.prefix}-vm{i}", VM_ADDRS[i]) for i in range(2)]
            join_by_veth(names.prefix, *tm.vms)
            tm.mesh = underlay.tunnel_mesh(names, VM_ADDRS)   # between the machines' own addresses
            assert [m.open_kernel_tunnels([t.__dict__ for t in per], ip, ns, ROUTER_MAC)
                    for m, per, (ns, ip) in zip(tm.machines, tm.mesh, tm.vms)] == [None, None]
        else:
            infos = [m.attach_udp_wire(addr, plen) for m, addr in zip(tm.machines, addrs)]
            for m in tm.machines:
                m.set_wire_peers({i["underlay_mac"]: i["wire"] for i in infos})
        tm.infos = infos
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
        for ns, _ in tm.vms:
            sh("ip", "netns", "del", ns)
        shutil.rmtree(state, ignore_errors=True)


# First in the file: os-ken is one per process, so this runs before the module fixture's.
def test_teardown_leaves_nothing() -> None:
    with two_machines() as t:
        prefix = t.names.prefix
        assert any("underlay" in x for x in leftovers(prefix))
    assert leftovers(prefix) == []


def test_kernel_tunnels_teardown_leaves_nothing() -> None:
    with two_machines("kernel") as t:
        prefix = t.names.prefix
        assert any("-vm0" in x for x in leftovers(prefix))
        # the devices are the VPC bridges' tunnel ports in the fabric namespaces; their sockets
        # in the machines' namespaces; no underlay bridge, no tunnel address (one encapsulation)
        dev = t.mesh[0][0].port_name
        assert dev in sh("ip", "-n", t.names.fabric_netns(0), "-o", "link")
        assert f":{kwire.UDP_PORT} " in sh("ip", "netns", "exec", t.vms[0][0], "ss", "-uan")
        m0 = t.machines[0]
        assert m0.ovs.vsctl("list-br").split() == [m0.bridge]
        assert m0.ovs.vsctl("get", "Interface", dev, "type").strip() in ("", '""', "system")
        assert "tx-checksumming: off" in sh("ip", "netns", "exec", t.names.fabric_netns(0), "ethtool", "-k", dev)
    assert leftovers(prefix) == []


def test_relay_peers_leave_out_the_machine_itself() -> None:
    with two_machines("udp") as t:
        assert all(len(m.wire.peers) == 1 for m in t.machines)
        own = {m.index: i["underlay_mac"].lower() for m, i in zip(t.machines, t.infos)}
        assert all(own[m.index] not in m.wire.peers for m in t.machines)


def _vxlan(vni: int, src_mac: str, dst_mac: str) -> bytes:
    """One VXLAN datagram's payload: header, then an Ethernet frame with an IPv4 packet (ICMP echo)."""
    mac = lambda m: bytes(int(x, 16) for x in m.split(":"))  # noqa: E731
    payload = b"\x08\x00\x00\x00" + b"kubemu" * 8
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, 1, 0,
                     socket.inet_aton("10.128.0.2"), socket.inet_aton("10.128.0.99"))
    csum = sum(struct.unpack("!10H", ip))
    csum = ~((csum & 0xFFFF) + (csum >> 16)) & 0xFFFF
    ip = ip[:10] + struct.pack("!H", csum) + ip[12:]
    return struct.pack("!II", 0x08000000, vni << 8) + mac(dst_mac) + mac(src_mac) + b"\x08\x00" + ip + payload


def _flow_packets(m: Machine, match: str, timeout: float = 10.0) -> int:
    """Packets of the flow of table 0 whose line has `match` (waited for: the controller programs
    the bridge a moment after it connected)."""
    deadline = time.monotonic() + timeout
    while True:
        for ln in m.ovs.ofctl("-O", "OpenFlow13", "--no-names", "dump-flows", m.bridge, "table=0").splitlines():
            if match in ln:
                return int(re.search(r"n_packets=(\d+)", ln)[1])
        if time.monotonic() > deadline:
            raise AssertionError(f"no flow {match}")
        time.sleep(0.05)


def test_kernel_tunnel_takes_frames_only_from_its_peer() -> None:
    """Machine 1's tunnel from machine 0 refuses a datagram of its VNI sent from another address
    with the VPC router's MAC (the kernel drops it) or with another MAC (the VPC bridge drops and
    counts it); machine 0's frame gets in."""
    with two_machines("kernel") as t:
        vm0, m1 = t.vms[0][0], t.machines[1]
        dev = t.mesh[1][0].port_name   # machine 1's device towards machine 0
        port = m1.ovs.ofports(m1.bridge)[dev]
        node_b_mac = sh("ip", "-n", t.netns["node-b"], "-o", "link", "show", "eth0").split("link/ether ")[1].split()[0]
        sh("ip", "-n", vm0, "addr", "add", f"{STRANGER}/24", "dev", f"{t.names.prefix}va")
        vni = kwire.vni(t.names.run_id, 0, 1)

        def send(src_ip: str, src_mac: str) -> None:
            with contextlib.closing(kns.socket_in(vm0, socket.AF_INET, socket.SOCK_DGRAM, bind=(src_ip, 0))) as s:
                s.sendto(_vxlan(vni, src_mac, node_b_mac), (VM_ADDRS[1], kwire.UDP_PORT))

        def settled(read, want: int) -> int:
            deadline = time.monotonic() + 5
            while (got := read()) < want and time.monotonic() < deadline:
                time.sleep(0.05)
            return got

        accepted = lambda: _flow_packets(m1, f"priority=300,ip,in_port={port},dl_src={ROUTER_MAC}")  # noqa: E731
        refused = lambda: m1.underlay_counters()["devices"][dev]["refused_frames"]  # noqa: E731
        base, base_refused = accepted(), refused()
        send(STRANGER, ROUTER_MAC)                 # spoofed: the router's MAC from elsewhere
        send(STRANGER, "02:00:00:00:00:99")        # a stranger's own MAC
        assert settled(refused, base_refused + 1) == base_refused + 1
        m1.wait_revalidated()   # the spoofed frame, sent first, is counted by now if it got in
        assert accepted() == base
        send(VM_ADDRS[0], ROUTER_MAC)              # the real machine 0
        assert settled(accepted, base + 1) == base + 1   # only this one reached the VPC's pipeline
        assert refused() == base_refused + 1
        assert m1.underlay_counters()["kind"] == "kernel-vxlan"


def test_kubemu_clean_on_a_machine_removes_a_kernel_tunnel_left_in_its_namespace() -> None:
    """A driver killed between creating a machine's device and moving it leaves it in the
    machine's root namespace: `kubemu clean ID` run there (as on a VM) removes it."""
    names = RunNames(new_run_id())
    vm = f"kbvm{new_run_id()}-vm0"   # the "machine": not of the run, so clean leaves it
    dev = names.tunnel(1)
    sh("ip", "netns", "add", vm)
    try:
        vxlan.add(dev, kwire.vni(names.run_id, 0, 1), VM_ADDRS[0], kwire.UDP_PORT, 2, 1500, vm, VM_ADDRS[1])
        assert dev in sh("ip", "-n", vm, "-o", "link")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        out = sh("ip", "netns", "exec", vm, "env", f"PYTHONPATH={root}", sys.executable, "-m", "emulator.cli",
                 "clean", names.run_id)
        assert dev not in sh("ip", "-n", vm, "-o", "link"), out
    finally:
        sh("ip", "netns", "del", vm)


def _tunnel(names: RunNames, machine: int, remote: int, fabric: str, vm: str) -> kwire.KernelTunnel:
    return kwire.KernelTunnel(names.run_id, names.tunnel(machine * 100 + remote), machine, remote, fabric,
                              "127.0.0.1", "127.0.0.2", 1500, host_netns=vm)


def test_kernel_tunnel_refused_when_its_port_is_taken_leaves_no_device() -> None:
    """UDP 48479 held by another program on the machine: the kernel path fails (the run falls
    back to the relay) and neither namespace keeps the device."""
    names = RunNames(new_run_id())
    vm, fabric = f"kbvm{new_run_id()}-vm0", names.fabric_netns(0)
    sh("ip", "netns", "add", vm)
    sh("ip", "netns", "add", fabric)
    try:
        sh("ip", "-n", vm, "link", "set", "lo", "up")
        with contextlib.closing(kns.socket_in(vm, socket.AF_INET, socket.SOCK_DGRAM,
                                              bind=("0.0.0.0", kwire.UDP_PORT), reuse=False)):
            tunnel = _tunnel(names, 0, 1, fabric, vm)
            with pytest.raises(Exception, match="(?i)address already in use|in use"):
                tunnel.start(ROUTER_MAC)
        assert tunnel.name not in sh("ip", "-n", vm, "-o", "link") + sh("ip", "-n", fabric, "-o", "link")
    finally:
        sh("ip", "netns", "del", fabric)
        sh("ip", "netns", "del", vm)


def test_tunnels_of_one_machine_coexist_but_two_machines_sharing_an_address_get_none() -> None:
    """One machine's devices towards machines 1 and 2 share its socket (distinct VNIs). Two Ray nodes
    in one namespace (one address): machine 1's device towards machine 0 is refused there (the
    pair's VNI is taken by machine 0's), so such a run falls back to the relay."""
    names = RunNames(new_run_id())
    vm, fabrics = f"kbvm{new_run_id()}-vm0", [names.fabric_netns(i) for i in range(2)]
    for ns in (vm, *fabrics):
        sh("ip", "netns", "add", ns)
    try:
        ours = [_tunnel(names, 0, j, fabrics[0], vm) for j in (1, 2)]
        for tunnel in ours:
            tunnel.start(ROUTER_MAC)
        assert all(t.name in sh("ip", "-n", fabrics[0], "-o", "link") for t in ours)
        other = _tunnel(names, 1, 0, fabrics[1], vm)
        with pytest.raises(Exception, match="VNI"):
            other.start(ROUTER_MAC)
        assert other.name not in sh("ip", "-n", vm, "-o", "link") + sh("ip", "-n", fabrics[1], "-o", "link")
        for tunnel in ours:
            tunnel.stop()
        assert not any(t.name in sh("ip", "-n", fabrics[0], "-o", "link") for t in ours)
    finally:
        for ns in (*fabrics, vm):
            sh("ip", "netns", "del", ns)


@pytest.fixture(scope="module", params=["bridge", "udp", "kernel"])
def tm(request) -> Iterator[TwoMachines]:
    with two_machines(request.param) as t:
        yield t


def test_underlay_addresses_only_inside_kubemu_namespaces(tm: TwoMachines) -> None:
    root = sh("ip", "-o", "addr")
    assert "198.18." not in root
    fabric0 = sh("ip", "-n", tm.names.fabric_netns(0), "-o", "addr")
    if tm.vms:   # kernel tunnels: no tunnel address at all, the devices use the machines' own
        assert "198.18." not in fabric0
    else:
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
    if tm.vms or any(m.wire for m in tm.machines):   # real machines' underlay links: what OVS read of them
        into = tm.machines[1].underlay_counters()
        delivered = into["rx_packets"] if tm.vms else into["to_tap"]
        assert delivered >= (nbytes >> 11)   # >= 1 frame per 2 KiB of the transfer
        assert 0 < into["ovs_rx_packets"] <= delivered
        assert into["lost_before_ovs"] == delivered - into["ovs_rx_packets"]


def test_cutting_a_machine_off_its_underlay_stops_cross_machine_traffic_only(tm: TwoMachines) -> None:
    """The fabric half of a machine outage: machine 1's underlay link down, then up again."""
    tm.machines[1].set_underlay(False)
    try:
        assert ping(tm.netns["node-a"], "10.128.0.3", count=2, timeout=1.0) == 0
        assert ping(tm.netns["node-b"], "10.128.0.4", count=2, timeout=1.0) == 2  # inside machine 1
    finally:
        tm.machines[1].set_underlay(True)
    # Back: three pings in a row answered, within 20 s (a lone loss on a loaded machine is not
    # the link staying down; a link that stays down answers none).
    deadline, answered = time.monotonic() + 20, 0
    while answered < 3 and time.monotonic() < deadline:
        answered = answered + 1 if ping(tm.netns["node-a"], "10.128.0.3", count=1, timeout=1.0) == 1 else 0
    assert answered == 3


