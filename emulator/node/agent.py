"""The node agent: one emulated machine (cluster node or client host), hosted by a NodeHost.

A cluster node runs a Mininet host on the fabric, cbr0 and pods (kubelet), the
kube-proxy worker and the built-in workload servers; a client host (internet host,
VPC VM) is just a host on the fabric that can send traffic. Each agent owns what it
created and removes it in `shutdown`.
"""
from __future__ import annotations

import logging
import os
import time
import uuid

import ray

from emulator.api.apilink import NodeApiClient
from emulator.api.client import Informer
from emulator.boundedsync import BoundedSyncRunner
from emulator.config.timing import Timing
from emulator.impair.host import HostImpairer
from emulator.kernel import netns
from emulator.kernel.host import FabricHost
from emulator.kernel.iptables import IptablesRunner, node_lock_file
from emulator.kernel.sysctl import sysctl
from emulator.kubeapi.discovery import GIT_VERSION
from emulator.kubeproxy.health import HealthServer
from emulator.kubeproxy.proxier import Proxier
from emulator.naming import RunNames
from emulator.netpol.enforcer import NodePolicyAgent
from emulator.node import chaos
from emulator.node.kubelet import Kubelet
from emulator.node.lease import LeaseRenewer, sync_pod_status
from emulator.node.podnet import PodNetwork
from emulator.paths import state_dir
from emulator.records.hosts import HostInfo, HostSpec
from emulator.traffic.kinds import run_generator
from emulator.workloads.gfe_proxy import HaproxyRunner
from emulator.workloads.hc_prober import probe_batch
from emulator.workloads.host import WorkloadHost

log = logging.getLogger(__name__)


def node_info(ident: str) -> dict:
    """status.nodeInfo as a kubelet reports it: this machine's kernel and OS, kubemu's versions, IDs from `ident`."""
    os_image = "Linux"
    try:
        with open("/etc/os-release") as f:
            os_image = next((ln.split("=", 1)[1].strip().strip('"') for ln in f if ln.startswith("PRETTY_NAME=")),
                            os_image)
    except OSError:
        pass
    machine = os.uname().machine
    return {"architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine),
            "operatingSystem": "linux", "osImage": os_image, "kernelVersion": os.uname().release,
            "containerRuntimeVersion": "kubemu://bubblewrap", "kubeletVersion": GIT_VERSION,
            "kubeProxyVersion": GIT_VERSION, "machineID": uuid.uuid5(uuid.NAMESPACE_OID, ident).hex,
            "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, ident)), "bootID": str(uuid.uuid4())}


def _ray_node_id() -> str | None:
    """The Ray node (machine) this agent runs on; None outside Ray."""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


class NodeAgent:
    """Builds one host from `spec`, then runs its node components until shutdown."""

    def __init__(self, run_id: str, spec: HostSpec, run_dir: str) -> None:
        self.names = RunNames(run_id)
        self.spec, self.run_dir = spec, run_dir
        self.name = spec.name
        self.role = spec.role  # node | host
        self.netns = self.names.node_netns(self.name) if self.role == "node" else self.names.host_netns(self.name)
        self.host: FabricHost | None = None
        self.kubelet = None
        self.proxy_worker = None
        self.proxier = None
        self.health = None
        self.workloads = None
        self.svc_informer = None
        self.impairer = None
        self.lease = None
        self.netpol = None
        self.gfe = None   # the Ingress proxy, on Google's front end (prober) host only
        # this host's own xtables lock: kube-proxy, the policy enforcer and impairments share it
        self.xtables_lock = node_lock_file(state_dir(run_id), self.netns)
        self.informers = None   # the node host's SharedInformers, when it shares its watches

    # --- bring-up ---
    def create(self, fabric_netns: str | None) -> HostInfo:
        """Namespace, eth0 on the fabric (its other end in `fabric_netns`); nodes: forwarding, cbr0."""
        t0 = time.time()
        self.host = FabricHost(self.names.mininet_name(self.name), self.netns, self.spec.fabric_port,
                               fabric_netns, self.spec.ip, self.spec.gateway)
        self.host.create()
        settings = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
        if self.role == "node":
            settings.update({"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"})
        sysctl(self.netns, settings)
        if self.role == "node":
            self.podnet = PodNetwork(self.netns, self.spec.pod_cidr, self.spec.network_mode)
            self.podnet.setup_node()
        return HostInfo(name=self.name, mac=self.host.mac, netns=self.netns, fabric_port=self.spec.fabric_port,
                        seconds=time.time() - t0, hostname=os.uname().nodename, ray_node_id=_ray_node_id(),
                        node_info=node_info(self.netns))

    def start(self, api, timing: Timing, dns: dict | None) -> bool:
        """Start kubelet, kube-proxy and the workload servers (cluster nodes only)."""
        if self.role != "node":
            return True
        t = self.timing = timing
        api = self.api = NodeApiClient(api, self.name)   # cut off while the node's link is down
        self.dns = dns
        self.workloads = WorkloadHost()
        self.kubelet = Kubelet(api, self.name, self.spec.ip, self.names, self.podnet, self.workloads,
                               t, self.run_dir, dns, services=lambda: self.svc_informer.list("Service"),
                               slices=lambda: self.svc_informer.list("EndpointSlice"))
        self.start_kube_proxy()
        self.start_network_policy()
        self.kubelet.start()
        self.lease = LeaseRenewer(api, self.name, t.node_lease_interval,
                                  status_sync=lambda: sync_pod_status(self.kubelet)).start()
        return True

    def start_kube_proxy(self) -> None:
        """A fresh kube-proxy (rules, health servers, watch) with a full sync; also after a crash."""
        t = self.timing
        runner = IptablesRunner.in_netns(self.netns, backend=self.spec.iptables_backend, lock_file=self.xtables_lock)
        self.proxier = Proxier(self.name, [self.spec.ip], self.spec.cluster_cidr, runner,
                               min_sync_period=t.kube_proxy_min_sync_period, sync_period=t.kube_proxy_sync_period)
        self.seen_rv = 0
        self.proxier.sync_mark_fn = lambda: self.seen_rv
        self.proxy_worker = BoundedSyncRunner(self.proxier)
        self.health = HealthServer(self.workloads.loop, self._node_socket, self.proxier)
        self.svc_informer = self._informer(["Service", "EndpointSlice"], self._on_proxy_event)
        self.svc_informer.start()
        self.svc_informer.synced.wait(30)
        self.proxy_worker.start()
        self.workloads.call(self.health.start())

    def start_network_policy(self) -> None:
        """The NetworkPolicy enforcer (Calico's role), when the cluster enables network policy."""
        if not self.spec.network_policy:
            return
        self.netpol = NodePolicyAgent(self.api, self.name, self.netns, self.spec.iptables_backend,
                                      self.timing.kube_proxy_min_sync_period, self.timing.kube_proxy_sync_period,
                                      lock_file=self.xtables_lock, informers=self.informers)
        self.netpol.start()

    def _informer(self, kinds: list[str], handler):
        """An informer of `kinds` for this node: on the node host's shared watch, or its own."""
        if self.informers is not None:
            return self.informers.subscribe(self.api, kinds, handler)
        return Informer(self.api, kinds, handler)

    def netpol_synced_rv(self) -> int:
        """The API resourceVersion of the newest policy/pod/namespace change in the node's rules."""
        return self.netpol.synced_mark if self.netpol is not None else 0

    def chaos(self, action: str, **params) -> dict:
        """A fault or its repair on this node (emulator/node/chaos.py): crash, partition, recover..."""
        return chaos.ACTIONS[action](self, **params)

    def _node_socket(self, port: int):
        """A listening TCP socket in the node's namespace (kube-proxy's health servers)."""
        return netns.socket_in(self.netns, bind=("0.0.0.0", port))

    def _on_proxy_event(self, type_: str, obj: dict) -> None:
        if obj["kind"] == "Service":
            self.proxier.on_service(type_, obj)
        else:
            self.proxier.on_endpointslice(type_, obj)
        if self.kubelet is not None:      # the cluster DNS zone follows both kinds
            self.kubelet.write_dns()
        # After the proxier has the change: a sync that reads this mark includes it.
        self.seen_rv = max(self.seen_rv, int(obj["metadata"].get("resourceVersion", 0)))
        # The proxier already asked for a sync when it recorded the change, and that sync
        # may have read the mark before the line above: ask again, so that a sync starting
        # from now on publishes the new mark. Otherwise `proxy_synced_rv` would lag until
        # the next periodic sync (sync_period: 5 s fast, 30 s gke) although the rules were
        # applied. Merged with the pending request when that sync has not started yet.
        if self.proxy_worker is not None:
            self.proxy_worker.notify()

    def proxy_synced_rv(self) -> int:
        """The API resourceVersion of the newest Service/EndpointSlice change in the node's rules."""
        return self.proxier.synced_mark if self.proxier is not None else 0

    # --- traffic and inspection ---
    def run_http_load(self, target: str, params: dict, out_name: str) -> list[dict]:
        """Run the HTTP load generator in a pod ("ns/name") or this host ("" target)."""
        return self.run_flow(target, "http", params, out_name)

    def run_flow(self, target: str, kind: str, params: dict, out_name: str) -> list[dict]:
        """Run a generator (http, tcp, udp, ping, iperf3) in a pod ("ns/name") or this host ("").

        `params` are keyword arguments of the kind's argv builder in `emulator.traffic.kinds`;
        returns the records the generator wrote to flows/OUT_NAME.jsonl.
        """
        out = os.path.join(self.run_dir, "flows", out_name + ".jsonl")
        return run_generator(self._netns_of(target), kind, params, out)

    def exec(self, target: str, argv: list[str], timeout: float = 30) -> dict:
        """Run a command in a pod's or this host's namespace (like kubectl exec)."""
        ns_name = self._netns_of(target)
        p = netns.run_in(ns_name, argv, timeout=timeout)
        return {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}

    def pod_exec(self, target: str, argv: list[str], stdin: bytes | None = None, timeout: float = 30,
                 container: str | None = None) -> dict:
        """Run an untrusted command in a pod, contained as its container is (kubectl exec)."""
        ns, name = target.split("/", 1)
        if self.kubelet is None:
            raise KeyError(f"pod {target} is not running on {self.name}")
        r = self.kubelet.exec(ns, name, argv, container, stdin, timeout)
        return {"rc": r.code, "stdout": r.stdout, "stderr": r.stderr, "timed_out": r.timed_out}

    def _netns_of(self, target: str) -> str:
        if not target:
            return self.netns
        ns, name = target.split("/", 1)
        pod_netns = self.kubelet.pod_netns(ns, name) if self.kubelet else None
        if pod_netns is None:
            raise KeyError(f"pod {target} is not running on {self.name}")
        return pod_netns

    def http_probes(self, targets: list, timeout: float) -> list[bool]:
        """HTTP probes from this host (the GCP health-check prober): True for a 200 in time."""
        return probe_batch(self.netns, targets, timeout)

    def proxy_apply(self, config: str, files: dict, addresses: list) -> dict:
        """Google front end host: install and (re)load the Ingress proxy (HAProxy)."""
        if self.gfe is None:
            self.gfe = HaproxyRunner(self.netns, os.path.join(state_dir(self.names.run_id), "gfe"),
                                     os.path.join(self.run_dir, "logs"), self.names.run_id)
        return self.gfe.apply(config, files, addresses)

    def proxy_servers(self) -> dict:
        """The Ingress proxy's health view: backend -> server -> UP/DOWN."""
        return self.gfe.server_states() if self.gfe is not None else {}

    def iptables_save(self) -> str:
        if self.proxier is None:
            return ""
        return self.proxier.runner.save()

    def iptables_backend(self) -> str | None:
        return self.proxier.runner.backend if self.proxier is not None else None

    def ping(self) -> str:
        return self.name

    def impair(self, classes: list[dict]) -> dict:
        """Impair this host's egress as `classes` say (emulator.impair); returns what enforces each."""
        if self.impairer is None:
            self.impairer = HostImpairer.for_host(self.netns, self.names.prefix, self.name,
                                                  self.spec.iptables_backend, self.run_dir, self.xtables_lock)
        return self.impairer.apply_dicts(classes)

    # --- teardown ---
    def shutdown(self) -> bool:
        """Stop everything and remove every kernel object this agent created."""
        if self.gfe is not None:
            self.gfe.stop()
        if self.health is not None and self.workloads is not None:
            try:
                self.workloads.call(self.health.stop())
            except Exception:
                log.exception("stopping health servers failed")
        for part in (self.lease, self.svc_informer, self.proxy_worker, self.netpol):
            if part is not None:
                try:
                    part.stop()
                except Exception:
                    log.exception("stopping %s failed", part)
        if self.kubelet is not None:
            self.kubelet.stop()
        if self.workloads is not None:
            try:
                self.workloads.close()
            except Exception:
                log.exception("stopping workloads failed")
        if self.impairer is not None:
            self.impairer.stop()
        if self.host is not None:
            self.host.destroy()
        return True
