"""Pod networking on a node: a namespace per pod, a veth to the node, an IP from the node's range.

Two node networking modes, as on GKE:
- `native` (GKE's default CNI): the node end of each pod's veth is a port of the
  `cbr0` bridge, which holds the pod range's gateway address; pods get a /24.
- `calico` (network policy enabled): no bridge; the node end of each veth stands
  alone, the node routes each pod with a /32 route and answers ARP for the pod's
  gateway by proxy ARP (Calico's 169.254.1.1 trick).

Neighbours are static: a pod's MAC is a function of its IP (0a:58 and the IP's four
bytes, as OVN-Kubernetes does), the node holds a permanent entry for each of its pods
and each pod one for its gateway. The kernel keeps one ARP table for all namespaces and
refuses dynamic entries past `net.ipv4.neigh.default.gc_thresh3` (1024 by default)
host-wide; permanent entries do not count against it, so a thousand nodes' pods do not
crowd each other out of it.
"""
from __future__ import annotations

import ipaddress
import os
import shutil

from emulator.errors import KernelError
from emulator.kernel import links, netns
from emulator.kernel.sysctl import sysctl
from emulator.naming import pod_veth_name
from emulator.paths import ETC_NETNS

CALICO_GATEWAY = "169.254.1.1"
CALICO_VETH_MAC = "ee:ee:ee:ee:ee:ee"   # Calico's host-side veth MAC, the same on every veth
# Pod commands run unprivileged (sandbox.py): let them bind ports below 1024 in their own
# namespace, as a container runtime does (a per-namespace sysctl).
UNPRIVILEGED_PORTS = {"net.ipv4.ip_unprivileged_port_start": "0"}


def ip_mac(ip: str) -> str:
    """The MAC of the interface holding `ip`: locally administered, 0a:58 and the IP's bytes."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def permanent(ip: str, mac: str, dev: str) -> str:
    """The `ip -batch` line of a static neighbour entry."""
    return f"neigh replace {ip} lladdr {mac} dev {dev} nud permanent"


class PodIpam:
    """host-local IPAM: pod IPs from the node's range, skipping network and gateway."""

    def __init__(self, pod_cidr: str) -> None:
        self.net = ipaddress.ip_network(pod_cidr)
        self.gateway = str(self.net.network_address + 1)
        self._used: dict[str, str] = {}  # ip -> pod key

    def allocate(self, key: str) -> str:
        for ip in list(self.net.hosts())[1:]:
            s = str(ip)
            if s not in self._used:
                self._used[s] = key
                return s
        raise KernelError(f"pod range {self.net} is full")

    def owner(self, ip: str | None) -> str | None:
        """The pod key ("namespace/name") holding `ip`, or None."""
        return self._used.get(ip) if ip else None

    def release(self, ip: str | None) -> None:
        if ip:
            self._used.pop(ip, None)


class PodNetwork:
    """Builds and removes pods' network plumbing inside one node."""

    def __init__(self, node_netns: str, pod_cidr: str, mode: str = "native") -> None:
        self.node_netns, self.mode = node_netns, mode
        self.ipam = PodIpam(pod_cidr)
        self.prefixlen = ipaddress.ip_network(pod_cidr).prefixlen

    def setup_node(self) -> None:
        """Per-node plumbing: cbr0 with the gateway address (native mode only)."""
        if self.mode == "native":
            links.ip_batch(self.node_netns, [
                f"link add cbr0 address {ip_mac(self.ipam.gateway)} type bridge",
                f"addr add {self.ipam.gateway}/{self.prefixlen} dev cbr0",
                "link set cbr0 up",
            ])

    def allow_unprivileged_ports(self, netns: str) -> None:
        """Low ports for unprivileged pod commands in `netns` (the node's, for hostNetwork pods)."""
        sysctl(netns, UNPRIVILEGED_PORTS)

    def add_pod(self, pod_netns: str, namespace: str, name: str, dns: dict | None = None) -> str:
        """Create the pod's namespace and veth; returns the pod IP."""
        ip = self.ipam.allocate(f"{namespace}/{name}")
        veth = pod_veth_name(namespace, name)
        try:
            netns.add(pod_netns)
            links.add_veth(veth, "eth0", self.node_netns, pod_netns)
            if self.mode == "native":
                # A reused IP gets the new pod's entry (the CNI bridge plugin sends a gratuitous ARP).
                links.ip_batch(self.node_netns, [
                    f"link set {veth} master cbr0",
                    f"link set {veth} type bridge_slave hairpin on",
                    f"link set {veth} up",
                    permanent(ip, ip_mac(ip), "cbr0"),
                ])
                links.ip_batch(pod_netns, [
                    "link set lo up", f"link set eth0 address {ip_mac(ip)}",
                    f"addr add {ip}/{self.prefixlen} dev eth0", "link set eth0 up",
                    permanent(self.ipam.gateway, ip_mac(self.ipam.gateway), "eth0"),
                    f"route add default via {self.ipam.gateway} dev eth0",
                ])
            else:
                links.ip_batch(self.node_netns, [f"link set {veth} address {CALICO_VETH_MAC}",
                                                 f"link set {veth} up",
                                                 f"route add {ip}/32 dev {veth} scope link",
                                                 permanent(ip, ip_mac(ip), veth)])
                sysctl(self.node_netns, {f"net.ipv4.conf.{veth}.proxy_arp": "1",
                                         f"net.ipv4.neigh.{veth}.proxy_delay": "0"})
                links.ip_batch(pod_netns, [
                    "link set lo up", f"link set eth0 address {ip_mac(ip)}",
                    f"addr add {ip}/32 dev eth0", "link set eth0 up",
                    f"route add {CALICO_GATEWAY}/32 dev eth0 scope link",
                    permanent(CALICO_GATEWAY, CALICO_VETH_MAC, "eth0"),
                    f"route add default via {CALICO_GATEWAY} dev eth0 onlink",
                ])
            sysctl(pod_netns, {"net.ipv6.conf.all.disable_ipv6": "1", **UNPRIVILEGED_PORTS})
            self._write_etc(pod_netns, name, ip, dns)
        except BaseException:
            self.remove_pod(pod_netns, ip)
            raise
        return ip

    def remove_pod(self, pod_netns: str, ip: str | None) -> None:
        """Kill the pod's processes, delete its namespace (the veth goes with it) and the node's
        static neighbour entry for its IP."""
        for pid in netns.pids(pod_netns):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        owner = self.ipam.owner(ip)
        veth = pod_veth_name(*owner.split("/", 1)) if owner else None
        if veth and self.mode == "calico":   # now, with its route and neighbour, not when the kernel
            links.delete_link(self.node_netns, veth)   # gets round to the namespace: the IP may come back
        netns.delete(pod_netns)
        if veth and self.mode == "native":
            links.neigh_delete(self.node_netns, ip, "cbr0")
        shutil.rmtree(os.path.join(ETC_NETNS, pod_netns), ignore_errors=True)
        self.ipam.release(ip)

    @staticmethod
    def _write_etc(pod_netns: str, name: str, ip: str, dns: dict | None) -> None:
        """/etc/netns/<pod>/{resolv.conf,hosts}: `ip netns exec` mounts them over /etc."""
        d = os.path.join(ETC_NETNS, pod_netns)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "hosts"), "w") as f:
            hosts = (dns or {}).get("hosts")      # the kubelet's: a function of the pod IP
            f.write(hosts(ip) if hosts else f"127.0.0.1 localhost\n{ip} {name}\n")
        if dns and "resolv_conf" in dns:        # the kubelet's text (resolvconf.py)
            with open(os.path.join(d, "resolv.conf"), "w") as f:
                f.write(dns["resolv_conf"])
        elif dns:
            with open(os.path.join(d, "resolv.conf"), "w") as f:
                f.write(f"search {' '.join(dns['search'])}\nnameserver {dns['nameserver']}\n"
                        "options ndots:5\n")
