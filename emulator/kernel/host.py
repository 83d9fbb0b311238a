"""An emulated machine on the VPC fabric: a Mininet host with eth0 on the OVS bridge.

Cluster nodes and client hosts (internet hosts, VPC VMs) are both `FabricHost`s: a
Mininet `Host` (a real network namespace held by a shell), named in /run/netns so
`ip netns exec` reaches it, with a veth whose other end (in the machine's fabric
namespace, no address) is a port of the machine's OVS bridge. Mininet makes the veth
(`makeIntfPair`, run by the host's shell) and owns eth0 as the host's `Intf`, which it
deletes at teardown; addresses and routes go in one `ip -batch` (/32 with the gateway
on-link, as on a GCP VM, which Mininet's ifconfig-based `setIP` cannot express).
"""
from __future__ import annotations

import logging
import os

from emulator.errors import KernelError
from emulator.kernel import links, netns
from emulator.kernel.sysctl import disable_ipv6

log = logging.getLogger(__name__)
ROOT_NETNS = "1"       # `ip link add ... netns 1`: the namespace of pid 1, the root one


class _NamedNetns:
    """Where Mininet's `makeIntfPair` puts the peer end: it only reads `pid` (`... netns PID`),
    and `ip` takes a namespace name there as well as a pid."""

    def __init__(self, name: str) -> None:
        self.pid = name


class FabricHost:
    """Creates and removes one host's namespace and its link to the fabric."""

    def __init__(self, mininet_name: str, netns: str, fabric_port: str, fabric_netns: str | None,
                 ip: str, gateway: str, mac: str | None = None, gateway_mac: str | None = None) -> None:
        self.mininet_name, self.netns, self.fabric_port = mininet_name, netns, fabric_port
        self.fabric_netns = fabric_netns
        self.ip, self.gateway = ip, gateway
        self.gateway_mac = gateway_mac   # None: the host learns it by ARP
        self.host = None
        self.mac: str | None = mac   # None: the kernel picks one

    def create(self) -> None:
        """Namespace (Mininet host), veth to the fabric, addresses and routes."""
        # imported late: mininet needs mnexec on PATH
        from mininet.link import Intf
        from mininet.node import Host
        from mininet.util import makeIntfPair
        path = os.environ.get("PATH", "")
        if "/usr/sbin" not in path.split(":"):   # once per process: a node host builds many hosts
            os.environ["PATH"] = path + ":/usr/sbin:/sbin"
        self.host = Host(self.mininet_name)
        netns.attach(self.netns, self.host.pid)
        # Both ends are born in their namespaces (with a system OVS, the fabric end stays
        # in the root namespace, without any address).
        try:
            makeIntfPair("eth0", self.fabric_port, node1=self.host, node2=_NamedNetns(self.fabric_netns or ROOT_NETNS),
                         deleteIntfs=False, runCmd=self.host.cmd)
        except Exception as exc:   # Mininet raises a bare Exception with ip's output
            raise KernelError("could not create the fabric link", f"ip link add eth0 {self.fabric_port}",
                              str(exc)) from exc
        Intf("eth0", node=self.host, moveIntfFn=lambda *_a, **_k: True)   # born in the host
        if not self.fabric_netns:
            disable_ipv6(self.fabric_port)
        links.ip_batch(self.netns, [
            "link set lo up",
            *([f"link set eth0 address {self.mac}"] if self.mac else []),
            "link set eth0 up",
            f"addr add {self.ip}/32 dev eth0",
            f"route add {self.gateway}/32 dev eth0 scope link",
            f"route add default via {self.gateway} dev eth0 onlink",
            # a static entry: the kernel's ARP table is one for all namespaces, and dynamic
            # entries past gc_thresh3 (1024) are refused host-wide (docs/architecture.md)
            *([f"neigh replace {self.gateway} lladdr {self.gateway_mac} dev eth0 nud permanent"]
              if self.gateway_mac else []),
        ])
        links.disable_tx_offload("eth0", self.netns, check=False)
        self.mac = links.link_mac(self.netns, "eth0")

    def destroy(self) -> None:
        """Kill what runs inside, remove the namespace, its name and the fabric link."""
        if self.host is not None and self.host.shell is not None and self.host.shell.poll() is None:
            try:
                self.host.deleteIntfs(checkName=False)   # eth0, and its fabric end with it
            except Exception:  # the shell may be gone meanwhile: the fabric end goes below
                log.debug("mininet host could not delete its interfaces", exc_info=True)
        for pid in netns.pids(self.netns):
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
        links.delete_link(self.fabric_netns, self.fabric_port)
        netns.delete(self.netns)
