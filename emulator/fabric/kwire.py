"""The underlay between real machines, in the kernel: a VXLAN device born in the machine's own namespace.

Each machine's underlay link (the port of its underlay OVS bridge, where a simulated
machine has its veth) is a Linux VXLAN device `kubemu<id>x<i>`. It is created in the
namespace the `Machine` actor runs in (the machine's root namespace), so its UDP socket
uses the machine's real address and routing, with `local` = the machine's address and
no address added anywhere; then it is moved into the fabric namespace (the socket stays
where the device was born). It carries Ethernet frames of the underlay bridges (the VPC's
own VXLAN packets between the 198.18.0.x tunnel addresses) to the other machines: a
permanent FDB entry per other machine (its underlay MAC -> its real address) and a
flood entry per other machine; never to itself. VNI = the run id read in base 36 plus 1
(distinct runs on the same machines never share a VNI), UDP port `UDP_PORT`.

Only the run's machines get frames in. The device learns (`learning`) but its FDB is
full (`maxaddress` = its permanent entries), so it keeps no stranger's address, and the
kernel drops a frame whose source MAC is a permanent entry of another address (the
other machines' MACs are spoofed from nowhere else). The underlay bridge then accepts
from the device only frames whose source is one of those MACs (`filter_flows`; the
rest is counted by a drop flow). No firewall rule anywhere.

Why not OVS's own tunnel ports towards the real addresses: the userspace datapath sends
tunnel packets out of an OVS bridge port by its own router, so the machine's NIC and
address would have to become part of an OVS bridge in the root namespace. The kernel
device leaves the machine's network as it is and runs in the kernel (bench/underlay.py:
about 2x the relay's cross-machine iperf3 throughput, no frame lost on the wire).
"""
from __future__ import annotations

import json
import re

from emulator.kernel import links, vxlan
from emulator.naming import RunNames

UDP_PORT = 48479
VXLAN_OVERHEAD = 50
ZERO_MAC = "00:00:00:00:00:00"
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def vni(run_id: str) -> int:
    """The run's VNI: its 4-character id in base 36, plus 1 (1 .. 1679616, under 2**24)."""
    return int(run_id, 36) + 1


def link_name(names: RunNames, machine: int) -> str:
    """Machine i's kernel VXLAN device."""
    return names.ifname("x", machine)


def fdb_lines(name: str, own_mac: str, peers: dict[str, str]) -> list[str]:
    """`bridge -batch` lines: each other machine's MAC -> its address, and a flood entry per other machine.

    `peers`: underlay MAC -> real address of every machine of the run (this one is left out)."""
    others = {mac.lower(): ip for mac, ip in peers.items() if mac.lower() != own_mac.lower()}
    for mac in others:
        if not _MAC_RE.match(mac):
            raise ValueError(f"bad MAC {mac!r}")
    return ([f"fdb replace {mac} dev {name} dst {ip} permanent" for mac, ip in sorted(others.items())]
            + [f"fdb append {ZERO_MAC} dev {name} dst {ip} permanent" for ip in sorted(set(others.values()))])


def filter_flows(link_port: int, macs: list[str]) -> list[str]:
    """Flows of the underlay bridge: from the device only the run's machines' MACs; the rest as before."""
    return ([f"priority=100,in_port={link_port},dl_src={m.lower()},actions=NORMAL" for m in sorted(macs)]
            + [f"priority=90,in_port={link_port},actions=drop", "priority=0,actions=NORMAL"])


def parse_link_stats(text: str) -> dict[str, int]:
    """rx/tx packets, bytes and drops of one link from `ip -s -j link show` output."""
    [link] = json.loads(text)
    st = link.get("stats64", {})
    rx, tx = st.get("rx", {}), st.get("tx", {})
    return {"rx_packets": rx.get("packets", 0), "rx_bytes": rx.get("bytes", 0), "rx_dropped": rx.get("dropped", 0),
            "tx_packets": tx.get("packets", 0), "tx_bytes": tx.get("bytes", 0), "tx_dropped": tx.get("dropped", 0),
            "tx_errors": tx.get("errors", 0)}


class KernelWire:
    """Machine i's VXLAN device: created in `host_netns` (None: here), living in `fabric_netns`."""

    kind = "kernel-vxlan"

    def __init__(self, names: RunNames, machine: int, fabric_netns: str, local_ip: str, peers: int, mtu: int,
                 host_netns: str | None = None) -> None:
        self.names, self.fabric_netns, self.local_ip = names, fabric_netns, local_ip
        self.name = link_name(names, machine)
        self.peers, self.mtu, self.host_netns = peers, mtu, host_netns

    def start(self) -> None:
        """Create the device where the machine's address is, move it into the fabric namespace, up.

        Raises KernelError if the kernel cannot (no vxlan module, the UDP port taken, the VNI
        in use); the device is gone again then."""
        vxlan.add(self.name, vni(self.names.run_id), self.local_ip, UDP_PORT, self.peers + 1, self.mtu,
                  self.host_netns)   # FDB: a permanent entry per other machine and the flood entry
        try:
            vxlan.move(self.name, self.host_netns, self.fabric_netns)
            links.set_link_up(self.fabric_netns, self.name, True)  # binds the UDP socket
        except Exception:
            self.stop()
            raise

    def set_peers(self, own_mac: str, peers: dict[str, str]) -> None:
        """The FDB towards the other machines (see `fdb_lines`)."""
        vxlan.fdb_batch(self.fabric_netns, fdb_lines(self.name, own_mac, peers))

    def counters(self) -> dict[str, int]:
        return parse_link_stats(vxlan.stats_json(self.fabric_netns, self.name))

    def stop(self) -> None:
        """Delete the device wherever it is (it also goes with the fabric namespace)."""
        links.delete_link(self.host_netns, self.name)
        try:
            links.delete_link(self.fabric_netns, self.name)
        except Exception:  # the fabric namespace is already gone
            pass
