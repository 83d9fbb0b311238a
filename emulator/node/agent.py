"""The node agent: the calls the driver makes on one emulated host, routed to the host's role object.

A `NodeHost` (emulator/node/host_process.py) dispatches each call to the `NodeAgent` of
the host it names; the agent holds that host's role object and passes the call on:
a `ClusterNode` (emulator/node/cluster_node.py: kubelet, kube-proxy, policy enforcer,
lease, and their lifecycle under faults), a `ClientHost` (a VM or internet host) or the
`ProberHost` (health-check probes and the Ingress front-end proxy, emulator/node/roles.py).
Calls a role does not have answer as for a host that runs nothing of the kind.
"""
from __future__ import annotations

from typing import Any

from emulator.config.timing import Timing
from emulator.errors import KubemuError
from emulator.naming import RunNames
from emulator.node import chaos
from emulator.node.cluster_node import ClusterNode
from emulator.node.emulated_host import EmulatedHost
from emulator.node.roles import ClientHost, ProberHost
from emulator.records.hosts import HostInfo, HostSpec


class RoleError(KubemuError):
    """A call for a role this host does not have (health checks on a node...)."""


def host_for(names: RunNames, spec: HostSpec, run_dir: str) -> EmulatedHost:
    """The role object of `spec`: a cluster node, the prober host or a client host."""
    if spec.is_node:
        return ClusterNode(names, spec, run_dir)
    role = ProberHost if spec.kind == "prober" else ClientHost
    return role(names, spec, run_dir, names.host_netns(spec.name))


class NodeAgent:
    """One emulated host's calls (create, start, traffic, exec, faults, shutdown), passed to its role."""

    def __init__(self, run_id: str, spec: HostSpec, run_dir: str) -> None:
        self.name = spec.name
        self.host = host_for(RunNames(run_id), spec, run_dir)
        self.informers = None   # the node host's SharedInformers, when it shares its watches
        self.leases = None      # the node host's LeaseGroups (its nodes' heartbeats in one call per interval)

    @property
    def netns(self) -> str:
        """The host's network namespace."""
        return self.host.netns

    def _node(self) -> ClusterNode | None:
        return self.host if isinstance(self.host, ClusterNode) else None

    def _prober(self) -> ProberHost:
        if not isinstance(self.host, ProberHost):
            raise RoleError(f"{self.name} is a {self.host.kind}, not the prober host")
        return self.host

    # --- lifecycle ---
    def create(self, fabric_netns: str | None, mac: str | None = None) -> HostInfo:
        """Namespace, eth0 on the fabric (its other end in `fabric_netns`; MAC `mac`, as before a
        machine failure, else the kernel's); nodes: forwarding, cbr0."""
        return self.host.create(fabric_netns, mac)

    def start(self, api: Any, timing: Timing, dns: dict | None) -> bool:
        """Start kubelet, kube-proxy, the policy enforcer and the lease (cluster nodes only)."""
        node = self._node()
        if node is not None:
            node.start(api, timing, dns, self.informers, self.leases)
        return True

    def chaos(self, action: str, **params: Any) -> dict:
        """A fault or its repair on this host (emulator/node/chaos.py): crash, partition, recover..."""
        return chaos.run(self.host, action, **params)

    def shutdown(self) -> bool:
        """Stop everything and remove every kernel object this host created."""
        self.host.stop()
        return True

    # --- kube-proxy and policy marks ---
    def proxy_synced_rv(self) -> int:
        """The API resourceVersion of the newest Service/EndpointSlice change in the node's rules."""
        node = self._node()
        return node.kube_proxy.synced_rv() if node is not None and node.kube_proxy is not None else 0

    def late_probes(self) -> tuple[int, int]:
        """(answers, passed) of readiness probes answered late from load (emulator/node/probes.py)."""
        node = self._node()
        kubelet = node.kubelet if node is not None else None
        return (kubelet.probes.late, kubelet.probes.late_passed) if kubelet is not None else (0, 0)

    def netpol_synced_rv(self) -> int:
        """The API resourceVersion of the newest policy/pod/namespace change in the node's rules."""
        node = self._node()
        return node.policy.synced_mark if node is not None and node.policy is not None else 0

    def iptables_save(self) -> str:
        """The node's iptables rules ("" on a host without kube-proxy)."""
        node = self._node()
        return node.kube_proxy.iptables_save() if node is not None and node.kube_proxy is not None else ""

    def iptables_backend(self) -> str | None:
        """The iptables backend kube-proxy uses (None on a host without kube-proxy)."""
        node = self._node()
        return node.kube_proxy.backend() if node is not None and node.kube_proxy is not None else None

    # --- traffic and inspection ---
    def run_http_load(self, target: str, params: dict, out_name: str) -> list[dict]:
        """Run the HTTP load generator in a pod ("ns/name") or this host ("" target)."""
        return self.run_flow(target, "http", params, out_name)

    def run_flow(self, target: str, kind: str, params: dict, out_name: str) -> list[dict]:
        """Run a generator (http, tcp, udp, ping, iperf3) in a pod ("ns/name") or this host ("").

        `params` are keyword arguments of the kind's argv builder in `emulator.traffic.kinds`;
        returns the records the generator wrote to flows/OUT_NAME.jsonl.
        """
        return self.host.run_flow(target, kind, params, out_name)

    def exec(self, target: str, argv: list[str], timeout: float = 30) -> dict:
        """Run a command in a pod's or this host's namespace (like kubectl exec)."""
        return self.host.exec(target, argv, timeout)

    def conntrack_from(self, source_ip: str) -> list[str]:
        """This host's conntrack entries of flows `source_ip` started."""
        return self.host.conntrack_from(source_ip)

    def pod_exec(self, target: str, argv: list[str], stdin: bytes | None = None, timeout: float = 30,
                 container: str | None = None) -> dict:
        """Run an untrusted command in a pod, contained as its container is (kubectl exec)."""
        node = self._node()
        if node is None:
            raise KeyError(f"pod {target} is not running on {self.name}")
        return node.pod_exec(target, argv, stdin, timeout, container)

    def impair(self, classes: list[dict]) -> dict:
        """Impair this host's egress as `classes` say (emulator.impair); returns what enforces each."""
        return self.host.impair(classes)

    def ping(self) -> str:
        """This host's name (a liveness check)."""
        return self.name

    # --- the prober host: health checks and the Ingress proxy ---
    def http_probes(self, targets: list, timeout: float, late_cap: float | None = None) -> list:
        """HTTP probes from the GCP health-check prober host: (passed, answered late) per target."""
        return self._prober().http_probes(targets, timeout, late_cap)

    def proxy_apply(self, config: str, files: dict, addresses: list) -> dict:
        """Google front end host: install and (re)load the Ingress proxy (HAProxy)."""
        return self._prober().proxy_apply(config, files, addresses)

    def proxy_servers(self) -> dict:
        """The Ingress proxy's health view: backend -> server -> UP/DOWN ({} on other hosts)."""
        return self.host.proxy_servers() if isinstance(self.host, ProberHost) else {}
