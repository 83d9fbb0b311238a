"""Address management: node IPs, per-node pod ranges, ClusterIPs and node ports.

Pure allocators; the API server uses the Service ones at admission (like the real
kube-apiserver), the run planner uses `plan_cluster_addresses` before anything starts.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from emulator.api.store import ApiError
from emulator.gke import NODE_PORT_RANGE



@dataclass(frozen=True)
class NodeAddressing:
    """Addresses of one node: its VPC IP and its pod range (alias IP range)."""

    name: str
    ip: str
    pod_cidr: str


def plan_cluster_addresses(subnet: str, pod_range: str, nodes: list[tuple[str, int]],
                           vms: list[str]) -> tuple[list[NodeAddressing], dict[str, str]]:
    """Node IPs from the subnet (after the gateway), one pod range per node, VM IPs.

    `nodes` is [(name, pod range prefix length)]; ranges are carved in order, each
    aligned to its own size (flexible pod CIDR lets pools use /25, /26, ...).
    """
    net = ipaddress.ip_network(subnet)
    hosts = net.hosts()
    next(hosts)  # .1 is the VPC gateway
    pods = ipaddress.ip_network(pod_range)
    cursor = int(pods.network_address)
    out = []
    for name, plen in nodes:
        size = 2 ** (32 - plen)
        cursor = (cursor + size - 1) // size * size
        cidr = ipaddress.ip_network((cursor, plen))
        if not cidr.subnet_of(pods):
            raise ApiError(507, f"pod range {pod_range} has no room left for node {name}")
        out.append(NodeAddressing(name, str(next(hosts)), str(cidr)))
        cursor += size
    vm_ips = {vm: str(next(hosts)) for vm in vms}
    return out, vm_ips


class IpAllocator:
    """Allocates single addresses from a range, honouring explicit requests."""

    def __init__(self, cidr: str, reserved: int = 1) -> None:
        self.net = ipaddress.ip_network(cidr)
        self._used: set[int] = set()
        first = int(self.net.network_address)
        self._reserved = {first, int(self.net.broadcast_address)} | {first + i for i in range(1, reserved + 1)}
        self._next = first + reserved + 1

    def allocate(self, wanted: str | None = None) -> str:
        """A free address (the wanted one if given: 422 when outside or taken)."""
        if wanted:
            addr = ipaddress.ip_address(wanted)
            if addr not in self.net:
                raise ApiError(422, f"{wanted} is not in the range {self.net}")
            if int(addr) in self._used:
                raise ApiError(422, f"{wanted} is already allocated")
            self._used.add(int(addr))
            return wanted
        size = self.net.num_addresses
        first = int(self.net.network_address)
        for i in range(size):
            cand = first + (self._next - first + i) % size
            if cand not in self._used and cand not in self._reserved:
                self._used.add(cand)
                self._next = cand + 1
                return str(ipaddress.ip_address(cand))
        raise ApiError(507, f"range {self.net} is full")

    def reserve(self, addr: str) -> None:
        """Mark an address used (e.g. the well-known kube-dns ClusterIP)."""
        self._used.add(int(ipaddress.ip_address(addr)))

    def release(self, addr: str | None) -> None:
        if addr:
            self._used.discard(int(ipaddress.ip_address(addr)))


class PortAllocator:
    """Node ports from 30000-32767 (also used for healthCheckNodePorts)."""

    def __init__(self, lo: int = NODE_PORT_RANGE[0], hi: int = NODE_PORT_RANGE[1]) -> None:
        self.lo, self.hi = lo, hi
        self._used: set[int] = set()
        self._next = lo

    def allocate(self, wanted: int | None = None) -> int:
        if wanted:
            if not self.lo <= wanted <= self.hi:
                raise ApiError(422, f"port {wanted} is not in the range {self.lo}-{self.hi}")
            if wanted in self._used:
                raise ApiError(422, f"port {wanted} is already allocated")
            self._used.add(wanted)
            return wanted
        for i in range(self.hi - self.lo + 1):
            cand = self.lo + (self._next - self.lo + i) % (self.hi - self.lo + 1)
            if cand not in self._used:
                self._used.add(cand)
                self._next = cand + 1
                return cand
        raise ApiError(507, "node port range is full")

    def release(self, port: int | None) -> None:
        if port:
            self._used.discard(port)
