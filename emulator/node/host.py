"""An emulated machine on the VPC fabric: a Mininet host with eth0 on the OVS bridge.

Cluster nodes and client hosts (internet hosts, VPC VMs) are both `FabricHost`s: a
Mininet `Host` (a real network namespace held by a shell), named in /run/netns so
`ip netns exec` reaches it, with a veth whose other end (in the machine's fabric
namespace, no address) is a port of the machine's OVS bridge. Addresses are /32 with
the gateway on-link, as on a GCP VM.
"""
from __future__ import annotations

import logging
import os

from emulator.node import kernel

log = logging.getLogger(__name__)


class FabricHost:
    """Creates and removes one host's namespace and its link to the fabric."""

    def __init__(self, mininet_name: str, netns: str, fabric_port: str, fabric_netns: str | None,
                 ip: str, gateway: str) -> None:
        self.mininet_name, self.netns, self.fabric_port = mininet_name, netns, fabric_port
        self.fabric_netns = fabric_netns
        self.ip, self.gateway = ip, gateway
        self.host = None
        self.mac: str | None = None

    def create(self) -> None:
        """Namespace (Mininet host), veth to the fabric, addresses and routes."""
        from mininet.node import Host  # imported late: needs mnexec on PATH
        os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
        self.host = Host(self.mininet_name)
        kernel.netns_attach(self.netns, self.host.pid)
        # Both ends are born in their namespaces (with a system OVS, the fabric end stays
        # in the root namespace, without any address).
        where = ["netns", self.fabric_netns] if self.fabric_netns else []
        kernel.run(["ip", "link", "add", self.fabric_port, *where, "type", "veth",
                    "peer", "name", "eth0", "netns", self.netns])
        if not self.fabric_netns:
            kernel.sysctl_root_ipv6_off(self.fabric_port)
        kernel.ip_batch(self.netns, [
            "link set lo up",
            "link set eth0 up",
            f"addr add {self.ip}/32 dev eth0",
            f"route add {self.gateway}/32 dev eth0 scope link",
            f"route add default via {self.gateway} dev eth0 onlink",
        ])
        kernel.tx_offload_off("eth0", self.netns)
        self.mac = kernel.link_mac(self.netns, "eth0")

    def destroy(self) -> None:
        """Kill what runs inside, remove the namespace, its name and the fabric link."""
        for pid in kernel.netns_pids(self.netns):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        if self.host is not None:
            try:
                self.host.terminate()
            except Exception:  # the shell may already be gone
                log.debug("mininet host terminate failed", exc_info=True)
            self.host = None
        kernel.run(["ip", *(["-n", self.fabric_netns] if self.fabric_netns else []), "link", "del",
                    self.fabric_port], check=False)
        kernel.netns_delete(self.netns)
