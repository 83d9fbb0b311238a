"""A cluster node: an emulated machine that runs kubelet, kube-proxy, the policy enforcer and a lease.

`ClusterNode` owns its components and their lifecycle: `start` boots them, `crash` stops
every one of them (pods, health servers, watches, the heartbeat) with the cable out and
the kernel's conntrack and neighbours forgotten, `recover` boots fresh ones (a reboot)
or, after a partition, reconnects the ones still running, `kube_proxy_crash` restarts
kube-proxy alone, and `stop` ends everything and removes the node's namespace. Every
part is the node's own, so a fault on one node leaves the other nodes of its process
untouched. How the parts are built is a `NodeParts` (a test passes its own).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from emulator.api.apilink import NodeApiClient
from emulator.api.client import Informer
from emulator.config.timing import Timing
from emulator.naming import RunNames
from emulator.netpol.enforcer import NodePolicyAgent
from emulator.node.emulated_host import HOST_SYSCTLS, EmulatedHost, stop_each
from emulator.node.kube_proxy import KubeProxy
from emulator.node.kubelet import Kubelet
from emulator.node.lease import LeaseRenewer
from emulator.node.podnet import PodNetwork
from emulator.records.hosts import HostSpec
from emulator.workloads.host import WorkloadHost

log = logging.getLogger(__name__)
NODE_SYSCTLS = {**HOST_SYSCTLS, "net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}


class NodeParts:
    """Builds a node's components from the node (its spec, API client, timing, informers)."""

    def workloads(self, node: "ClusterNode") -> WorkloadHost:
        """The event loop serving the node's pods and kube-proxy's health servers."""
        return WorkloadHost()

    def kube_proxy(self, node: "ClusterNode") -> KubeProxy:
        """The node's kube-proxy (started by `ClusterNode`)."""
        return KubeProxy(node.spec, node.netns, node.xtables_lock, node.timing, node.workloads,
                         node.informer, on_change=node.services_changed)

    def kubelet(self, node: "ClusterNode") -> Kubelet:
        """A fresh kubelet; its DNS zone reads kube-proxy's Services and EndpointSlices."""
        return Kubelet(node.api, node.name, node.spec.ip, node.names, node.podnet, node.workloads, node.timing,
                       node.run_dir, node.dns, services=lambda: node.kube_proxy.list("Service"),
                       slices=lambda: node.kube_proxy.list("EndpointSlice"),
                       watch=lambda handler: node.informer(["Pod"], handler, bound_here=True))

    def policy(self, node: "ClusterNode") -> NodePolicyAgent | None:
        """The NetworkPolicy enforcer (Calico's role), when the cluster enables network policy."""
        if not node.spec.network_policy:
            return None
        t = node.timing
        return NodePolicyAgent(node.api, node.name, node.netns, node.spec.iptables_backend,
                               t.kube_proxy_min_sync_period, t.kube_proxy_sync_period,
                               lock_file=node.xtables_lock, informers=node.informers)

    def lease(self, node: "ClusterNode") -> LeaseRenewer:
        """The heartbeat; its status sync re-posts the kubelet's pod readiness."""
        interval = node.timing.node_lease_interval
        group = node.leases.group(node.api, interval) if node.leases is not None else None
        return LeaseRenewer(node.api, node.name, interval, status_sync=lambda: node.kubelet and
                            node.kubelet.request_status_sync(), group=group)


class ClusterNode(EmulatedHost):
    """A Kubernetes node: cbr0 and pods, kubelet, kube-proxy, policy enforcer and lease, with a lifecycle."""

    kind = "node"

    def __init__(self, names: RunNames, spec: HostSpec, run_dir: str, parts: NodeParts | None = None) -> None:
        super().__init__(names, spec, run_dir, names.node_netns(spec.name))
        self.parts = parts or NodeParts()
        self.podnet: PodNetwork | None = None
        self.api: NodeApiClient | None = None
        self.timing: Timing | None = None
        self.dns: dict | None = None
        self.informers = None        # the node host's SharedInformers, when it shares its watches
        self.leases = None           # the node host's LeaseGroups, when its nodes renew together
        self.workloads: WorkloadHost | None = None
        self.kube_proxy: KubeProxy | None = None
        self.kubelet: Kubelet | None = None
        self.policy: NodePolicyAgent | None = None
        self.lease: LeaseRenewer | None = None

    # --- bring-up ---
    def sysctls(self) -> dict[str, str]:
        return dict(NODE_SYSCTLS)

    def setup(self) -> None:
        """cbr0 (or the Calico-style routes) for the node's pods."""
        self.podnet = PodNetwork(self.netns, self.spec.pod_cidr, self.spec.network_mode)
        self.podnet.setup_node()

    def start(self, api: Any, timing: Timing, dns: dict | None, informers: Any = None, leases: Any = None) -> None:
        """Start kubelet, kube-proxy, the policy enforcer and the lease, talking to `api`
        (`informers`, `leases`: what the node host's nodes share, if anything)."""
        self.api = NodeApiClient(api, self.name)   # cut off while the node's link is down
        self.timing, self.dns, self.informers, self.leases = timing, dns, informers, leases
        self.workloads = self.parts.workloads(self)
        self.kube_proxy = self.parts.kube_proxy(self)
        self.boot()

    def boot(self) -> None:
        """What runs on the machine, started fresh: kubelet (restarting its pods), kube-proxy, policy, lease."""
        self.kubelet = self.parts.kubelet(self)
        self.kube_proxy.start()
        self.policy = self.parts.policy(self)
        if self.policy is not None:
            self.policy.start()
        self.kubelet.start()
        self.lease = self.parts.lease(self).start()

    def informer(self, kinds: list[str], handler: Callable[[str, dict], None], bound_here: bool = False) -> Any:
        """An informer of `kinds` for this node: on the node host's shared watch, or its own;
        `bound_here`: of the Pods only those bound to this node (the kubelet's field selector)."""
        if self.informers is not None:
            name = self.name
            accept = (lambda o: o["kind"] != "Pod" or o.get("spec", {}).get("nodeName") == name) if bound_here else None
            return self.informers.subscribe(self.api, kinds, handler, accept)
        return Informer(self.api, kinds, handler, node_name=self.name if bound_here else None)

    def services_changed(self) -> None:
        """kube-proxy saw a Service or EndpointSlice change: the cluster DNS zone follows."""
        if self.kubelet is not None:
            self.kubelet.write_dns()

    # --- faults ---
    def set_link(self, up: bool) -> None:
        """The cable; the node's API clients lose (or regain) the API server with it."""
        super().set_link(up)
        if self.api is not None:
            self.api.set_reachable(up)

    def halt(self) -> None:
        """Every process of the machine stops: heartbeat, kube-proxy, policy enforcer, kubelet and pods."""
        stop_each([self.lease, self.kube_proxy, self.policy], self.name)
        self.lease, self.policy = None, None
        if self.kubelet is not None:
            self.kubelet.stop()
            self.kubelet = None

    def reboot(self) -> None:
        """After a crash: everything starts fresh (the kubelet restarts the pods still bound here)."""
        if self.api is not None:
            self.boot()

    def pause(self) -> None:
        """Partitioned: the heartbeat stops reaching the API server; processes keep running."""
        if self.lease is not None:
            self.lease.pause()

    def resume(self) -> None:
        """Reconnected: renew now; the heartbeat's status sync posts the pods' readiness again."""
        if self.lease is not None:
            self.lease.resume()

    def kube_proxy_crash(self, down: float = 1.0) -> dict:
        """kube-proxy dies and is restarted after `down` seconds (full resync); rules stay meanwhile."""
        t = time.time()
        self.kube_proxy.stop()
        time.sleep(down)
        self.kube_proxy.start()
        log.warning("chaos: kube-proxy restarted after %.1fs", down)
        return {"t": t, "action": "kube_proxy_crash", "restarted": time.time()}

    # --- pods ---
    def netns_of(self, target: str) -> str:
        """The namespace of this node ("" target) or of one of its pods ("ns/name")."""
        if not target:
            return self.netns
        ns, name = target.split("/", 1)
        pod_netns = self.kubelet.pod_netns(ns, name) if self.kubelet is not None else None
        if pod_netns is None:
            raise KeyError(f"pod {target} is not running on {self.name}")
        return pod_netns

    def pod_exec(self, target: str, argv: list[str], stdin: bytes | None = None, timeout: float = 30,
                 container: str | None = None) -> dict:
        """Run an untrusted command in a pod, contained as its container is (kubectl exec)."""
        ns, name = target.split("/", 1)
        if self.kubelet is None:
            raise KeyError(f"pod {target} is not running on {self.name}")
        r = self.kubelet.exec(ns, name, argv, container, stdin, timeout)
        return {"rc": r.code, "stdout": r.stdout, "stderr": r.stderr, "timed_out": r.timed_out}

    # --- teardown ---
    def stop(self) -> None:
        """Stop every component, then remove the node's namespace and link."""
        stop_each([self.lease, self.kube_proxy, self.policy], self.name)
        if self.kubelet is not None:
            self.kubelet.stop()
        if self.workloads is not None:
            try:
                self.workloads.close()
            except Exception:
                log.exception("stopping workloads failed")
        super().stop()
