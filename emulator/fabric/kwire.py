"""The underlay between real machines, in the kernel: a VXLAN device per other machine as the VPC bridge's tunnel port.

Machine i reaches machine j through a Linux VXLAN device named as the tunnel port of the
mesh (`kubemu<id>t<i*100+j>`), point to point: `local` = machine i's address, `remote` =
machine j's, UDP port `UDP_PORT`, VNI `vni(run, i, j)`, the same at both ends. It is
created in the namespace the `Machine` actor runs in (the machine's root namespace), so
its UDP socket uses the machine's real address and routing, no address added anywhere;
then moved into the fabric namespace (the socket stays where the device was born) and
plugged into the VPC bridge, where the SDN controller outputs to it for the bridge of
machine j as to any tunnel port. One encapsulation, one userspace OVS pass per machine.

Distinct devices do not collide: the kernel hands a datagram arriving on a namespace's
VXLAN socket (one per UDP port) to the device of its VNI, and refuses a second device with
the same VNI and port in one namespace ("VNI already exists"). So every pair of machines
has its own VNI, distinct from the run's other pairs and, for the same pair, from every
other run's (`vni`); two machines sharing one namespace (one address) cannot both have
their device, and the run falls back to the relay.

Only the run's machines get frames in. A VNI is no secret, so: the device learns
(`learning`) but its FDB is full (`maxaddress` 2: the default entry towards the peer and a
permanent entry of the VPC router's MAC, the source of every frame the VPC sends into a
tunnel, towards the peer's address), so the kernel drops a frame with the router's MAC
from any other address and keeps no stranger's; and the SDN controller takes from a
tunnel port only frames from the router's MAC, dropping and counting the rest
(controllers/vpc_core.py, `refused_frames`). No firewall rule anywhere.

Why not OVS's own tunnel ports towards the real addresses: the userspace datapath sends
tunnel packets out of an OVS bridge port by its own router, so the machine's NIC and
address would have to become part of an OVS bridge in the root namespace. The kernel
device leaves the machine's network as it is and runs in the kernel.
"""
from __future__ import annotations

import json
import re

from emulator.kernel import links, vxlan

UDP_PORT = 48479
KIND = "kernel-vxlan"
OVERHEAD = 50   # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet header 14
MAX_ADDRESSES = 2   # the default entry (towards the peer) and the router's MAC
PAIRS = 99 * 98 // 2   # pairs of machines at most (underlay.MAX_MACHINES)
_VNI_SPAN = 2 ** 24 - 1
_STRIDE = PAIRS + 1   # coprime to 2**24 - 1: the same pair of two runs never shares a VNI
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def pair_index(a: int, b: int) -> int:
    """The unordered pair {a, b} of machines (a != b) as 0 .. PAIRS - 1."""
    lo, hi = sorted((a, b))
    if lo == hi or lo < 0:
        raise ValueError(f"no pair of machines {a} and {b}")
    return hi * (hi - 1) // 2 + lo


def vni(run_id: str, a: int, b: int) -> int:
    """The VNI of machines a and b in the run (1 .. 2**24 - 1): distinct per pair within a run, and
    for the same pair between runs (the run id in base 36 times a stride coprime to the span)."""
    return 1 + (int(run_id, 36) * _STRIDE + pair_index(a, b)) % _VNI_SPAN


def fdb_lines(name: str, router_mac: str, remote_ip: str) -> list[str]:
    """`bridge -batch` lines: the VPC router's MAC only from (and to) the peer's address."""
    mac = router_mac.lower()
    if not _MAC_RE.match(mac):
        raise ValueError(f"bad MAC {router_mac!r}")
    return [f"fdb replace {mac} dev {name} dst {remote_ip} permanent"]


def parse_link_stats(text: str) -> dict[str, int]:
    """rx/tx packets, bytes and drops of one link from `ip -s -j link show` output."""
    [link] = json.loads(text)
    st = link.get("stats64", {})
    rx, tx = st.get("rx", {}), st.get("tx", {})
    return {"rx_packets": rx.get("packets", 0), "rx_bytes": rx.get("bytes", 0), "rx_dropped": rx.get("dropped", 0),
            "tx_packets": tx.get("packets", 0), "tx_bytes": tx.get("bytes", 0), "tx_dropped": tx.get("dropped", 0),
            "tx_errors": tx.get("errors", 0)}


def fragmenting_note(lan_mtu: int | None, vpc_mtu: int) -> str:
    """'' when a full-size VPC packet in its tunnel fits the LAN; else what happens and what avoids it."""
    need = vpc_mtu + OVERHEAD
    if lan_mtu is None or lan_mtu >= need:
        return ""
    return (f"LAN MTU {lan_mtu}: full-size VPC packets ({vpc_mtu} bytes + {OVERHEAD} of tunnel) are "
            f"fragmented between machines, which costs throughput; an MTU of {need} or more between the "
            f"machines avoids it")


def sum_counters(per_device: list[dict[str, int]]) -> dict[str, int]:
    """The counters of several devices added up, key by key."""
    total: dict[str, int] = {}
    for c in per_device:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return total


class KernelTunnel:
    """Machine `machine`'s VXLAN device towards machine `remote`: created in `host_netns` (None:
    here), living in `fabric_netns`."""

    def __init__(self, run_id: str, name: str, machine: int, remote: int, fabric_netns: str, local_ip: str,
                 remote_ip: str, mtu: int, host_netns: str | None = None) -> None:
        self.name, self.fabric_netns, self.host_netns = name, fabric_netns, host_netns
        self.local_ip, self.remote_ip, self.mtu = local_ip, remote_ip, mtu
        self.vni = vni(run_id, machine, remote)

    def start(self, router_mac: str) -> None:
        """Create the device where the machine's address is, move it into the fabric namespace,
        its FDB, up (plugging it into the bridge turns its TX offload off, `OvsInstance.add_ports`).

        Raises KernelError if the kernel cannot (no vxlan module, the UDP port taken, the VNI
        in use); the device is gone again then."""
        vxlan.add(self.name, self.vni, self.local_ip, UDP_PORT, MAX_ADDRESSES, self.mtu, self.host_netns,
                  self.remote_ip)
        try:
            vxlan.move(self.name, self.host_netns, self.fabric_netns)
            vxlan.fdb_batch(self.fabric_netns, fdb_lines(self.name, router_mac, self.remote_ip))
            links.set_link_up(self.fabric_netns, self.name, True)  # binds the UDP socket
        except Exception:
            self.stop()
            raise

    def lan_mtu(self) -> int | None:
        """The machine's MTU towards the peer (its route there, where the device's socket is)."""
        return vxlan.path_mtu(self.host_netns, self.remote_ip)

    def counters(self) -> dict[str, int]:
        return parse_link_stats(vxlan.stats_json(self.fabric_netns, self.name))

    def stop(self) -> None:
        """Delete the device wherever it is (it also goes with the fabric namespace)."""
        links.delete_link(self.host_netns, self.name)
        try:
            links.delete_link(self.fabric_netns, self.name)
        except Exception:  # the fabric namespace is already gone
            pass
