"""The underlay between machines: tunnel addresses, VXLAN ports, and an emulated wire.

Pure part: every machine gets a tunnel address (`tunnel_address`) and a VXLAN port to
every other machine (`tunnel_mesh`); `vpc_tunnels` tells the SDN controller which port
of which bridge leads to which other bridge.

Kernel part. Userspace OVS tunnels (the `netdev` datapath) route the outer packet with
OVS's own router, which needs the tunnel address on an OVS bridge's internal port with
the underlay link as a port of that bridge (`attach_underlay`). For simulated machines on
one host, `EmulatedUnderlay` is the wire: a namespace `kubemu<id>-underlay` holding a
Linux bridge and one veth per machine, whose other end is born in that machine's fabric
namespace. Underlay addresses (RFC 2544's 198.18.0.0/15) exist only inside those
namespaces. The underlay MTU is 1600, so full 1500-byte VPC packets plus the 50 bytes of
VXLAN fit without fragmentation.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from emulator.kernel import links, netns
from emulator.kernel.links import disable_tx_offload
from emulator.kernel.ovs import OvsInstance
from emulator.kernel.sysctl import sysctl
from emulator.naming import RunNames

UNDERLAY_RANGE = ipaddress.IPv4Network("198.18.0.0/24")
UNDERLAY_MTU = 1600
VXLAN_UDP_PORT = 4789
MAX_MACHINES = 99  # tunnel port names: machine * 100 + remote machine


def tunnel_address(machine: int) -> str:
    """Machine i's tunnel address on the emulated underlay (198.18.0.i+1)."""
    if not 0 <= machine < MAX_MACHINES:
        raise ValueError(f"machine index {machine} out of range")
    return str(UNDERLAY_RANGE.network_address + machine + 1)


@dataclass(frozen=True)
class TunnelSpec:
    """One VXLAN port on machine `machine`'s VPC bridge, towards `remote`."""

    port_name: str
    machine: int
    remote: int
    remote_ip: str


def tunnel_mesh(names: RunNames, addresses: list[str]) -> list[list[TunnelSpec]]:
    """Full mesh: per machine, one tunnel to every other machine (by its underlay address)."""
    if len(addresses) > MAX_MACHINES:
        raise ValueError(f"at most {MAX_MACHINES} machines")
    return [[TunnelSpec(names.tunnel(i * 100 + j), i, j, addresses[j])
             for j in range(len(addresses)) if j != i] for i in range(len(addresses))]


def vpc_tunnels(mesh: list[list[TunnelSpec]], dpids: list[int]) -> list[dict]:
    """The `tunnels` of the VPC state: which port of bridge `dpid` reaches `remote_dpid`."""
    return [{"dpid": dpids[t.machine], "remote_dpid": dpids[t.remote], "port_name": t.port_name}
            for per in mesh for t in per]


def underlay_bridge(names: RunNames, machine: int) -> str:
    """The plain OVS bridge that carries machine i's tunnel address."""
    return names.ifname("u", machine)


def underlay_link(names: RunNames, machine: int) -> str:
    """Machine i's end of the underlay wire (in its fabric namespace)."""
    return names.ifname("v", machine)


def underlay_netns(names: RunNames) -> str:
    """The namespace of the emulated underlay's Linux bridge."""
    return f"{names.prefix}-underlay"


# --- kernel: one machine's side ---
def attach_underlay(ovs: OvsInstance, bridge: str, link: str, address: str, prefixlen: int,
                    fabric_netns: str | None) -> None:
    """A standalone (MAC-learning) bridge with `link` as port and `address` on its internal port."""
    ovs.vsctl("--may-exist", "add-br", bridge, "--", "set", "Bridge", bridge,
              f"datapath_type={ovs.datapath_type}", "fail_mode=standalone",
              "--", "set", "Interface", bridge, f"mtu_request={UNDERLAY_MTU}",
              "--", "--may-exist", "add-port", bridge, link)
    ovs.tune_port_sockets()
    disable_tx_offload(link, fabric_netns)
    links.ip_batch(fabric_netns, [f"link set {link} mtu {UNDERLAY_MTU} up",
                                  f"addr add {address}/{prefixlen} dev {bridge}",
                                  f"link set {bridge} mtu {UNDERLAY_MTU} up"])


def add_tunnels(ovs: OvsInstance, bridge: str, tunnels: list[TunnelSpec], local_ip: str) -> dict[str, int]:
    """VXLAN ports on the VPC bridge, one transaction; returns their OpenFlow port numbers."""
    if not tunnels:
        return {}
    args: list[str] = []
    for t in tunnels:
        args += ["--", "--may-exist", "add-port", bridge, t.port_name, "--", "set", "Interface", t.port_name,
                 "type=vxlan", f"options:remote_ip={t.remote_ip}", f"options:local_ip={local_ip}",
                 f"options:dst_port={VXLAN_UDP_PORT}"]
    ovs.vsctl(*args[1:])
    ports = ovs.ofports(bridge)
    return {t.port_name: ports.get(t.port_name, -1) for t in tunnels}


def tunnel_counters(ovs: OvsInstance, bridge: str, tunnels: list[str]) -> dict[str, dict[str, int]]:
    """rx/tx packets and bytes of each tunnel port, live from the datapath (`ovs-ofctl dump-ports`)."""
    numbers = ovs.ofports(bridge)
    stats = parse_dump_ports(ovs.ofctl("-O", "OpenFlow13", "--no-names", "dump-ports", bridge))
    return {name: stats.get(numbers.get(name, -1), {}) for name in tunnels}


_PORT_RE = re.compile(r"port\s+(\d+):\s*rx pkts=(\d+), bytes=(\d+).*?tx pkts=(\d+), bytes=(\d+)", re.S)


def parse_dump_ports(text: str) -> dict[int, dict[str, int]]:
    """OpenFlow port number -> rx/tx packets and bytes, from `ovs-ofctl dump-ports` output."""
    return {int(m[0]): {"rx_packets": int(m[1]), "rx_bytes": int(m[2]), "tx_packets": int(m[3]),
                        "tx_bytes": int(m[4])} for m in _PORT_RE.findall(text)}


# --- kernel: the wire between simulated machines ---
class EmulatedUnderlay:
    """A Linux bridge in `kubemu<id>-underlay` with a veth into each machine's fabric namespace."""

    def __init__(self, run_id: str, count: int) -> None:
        self.names = RunNames(run_id)
        self.count = count
        self.netns = underlay_netns(self.names)
        self.bridge = self.names.ifname("w", 0)

    def create(self) -> list[str]:
        """The namespace, bridge and wires; returns each machine's link name (in its fabric netns)."""
        netns.add(self.netns)
        sysctl(self.netns, {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"})
        lines = ["link set lo up", f"link add {self.bridge} mtu {UNDERLAY_MTU} type bridge",
                 f"link set {self.bridge} up"]
        wires = []
        for i in range(self.count):
            link, peer = underlay_link(self.names, i), self.names.ifname("w", i + 1)
            links.add_veth(link, peer, self.names.fabric_netns(i), self.netns, mtu=UNDERLAY_MTU)
            lines.append(f"link set {peer} master {self.bridge} up")
            wires.append(link)
        links.ip_batch(self.netns, lines)
        return wires

    def destroy(self) -> None:
        """Delete the namespace (its bridge and the veths with it)."""
        netns.delete(self.netns)
