"""The run plan: every host's addresses and fabric port, computed before anything starts.

Pure: a validated Topology in, a typed `RunPlan` of `HostSpec`s (handed to node agents)
out. Node IPs and VM IPs come from the VPC subnet, pod ranges from the cluster's pod
range, internet hosts from the internet range.
"""
from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field

from controllers.vpc_types import DEFAULT_ROUTER_MAC
from emulator.api.ipam import plan_cluster_addresses
from emulator.naming import RunNames
from emulator.records.hosts import HostSpec

KUBE_DNS_INDEX = 10  # kube-dns takes the 10th address of the service range, as on GKE
# Google's L4 health checks come from 35.191.0.0/16 and 130.211.0.0/22: the emulated
# prober host sits in the first range, behind its own router address.
PROBER = {"name": "gcp-prober", "ip": "35.191.0.2", "gateway": "35.191.0.1"}


class RunPlan(BaseModel):
    """Hosts of the run and the cluster-wide addressing facts."""

    model_config = ConfigDict(extra="forbid")

    nodes: list[HostSpec] = Field(default_factory=list)
    clients: list[HostSpec] = Field(default_factory=list)
    gateway: str = ""
    internet_gateway: str = ""
    prober_gateway: str = PROBER["gateway"]
    cluster_cidr: str = ""
    service_range: str = ""
    dns_ip: str = ""
    cluster_name: str = ""
    subnet: str = ""
    external_range: str = ""
    firewall: list[dict] = Field(default_factory=list, description="the topology's VPC firewall rules (to_state())")

    probers: list[HostSpec] = Field(default_factory=list)

    @property
    def hosts(self) -> list[HostSpec]:
        """Every host on the fabric: nodes, client hosts, and the health-check prober."""
        return self.nodes + self.clients + self.probers


def make_plan(topology, names: RunNames, iptables_backend: str = "auto") -> RunPlan:
    """Addresses, fabric ports and labels for every node and client host."""
    nodes = topology.nodes()
    vms = [c.name for c in topology.clients if c.kind == "vm"]
    addrs, vm_ips = plan_cluster_addresses(str(topology.vpc.subnet), str(topology.cluster.pod_range),
                                           [(n.name, n.pod_prefixlen) for n in nodes], vms)
    gateway = str(topology.vpc.gateway)
    inet = topology.vpc.internet_range
    inet_gw = str(inet.network_address + 1)
    svc = ipaddress.ip_network(str(topology.cluster.service_range))
    plan = RunPlan(gateway=gateway, internet_gateway=inet_gw, cluster_cidr=str(topology.cluster.pod_range),
                   service_range=str(svc), dns_ip=str(svc.network_address + KUBE_DNS_INDEX),
                   cluster_name=topology.cluster.name, subnet=str(topology.vpc.subnet),
                   external_range=str(topology.vpc.external_range),
                   firewall=[r.to_state() for r in topology.firewall])
    port = 0
    for spec, a in zip(nodes, addrs):
        plan.nodes.append(HostSpec(
            name=spec.name, role="node", ip=a.ip, pod_cidr=a.pod_cidr, gateway=gateway, gateway_mac=DEFAULT_ROUTER_MAC,
            zone=spec.zone, pool=spec.pool, labels=dict(spec.labels), tags=list(spec.tags),
            fabric_port=names.fabric_port(port), cluster_cidr=str(topology.cluster.pod_range),
            network_mode=topology.cluster.network_mode, iptables_backend=iptables_backend,
            network_policy=topology.cluster.network_policy))
        port += 1
    inet_hosts = inet.hosts()
    next(inet_hosts)  # the internet side's router
    for c in topology.clients:
        if c.kind == "vm":
            ip, gw = vm_ips[c.name], gateway
        else:
            ip, gw = str(next(inet_hosts)), inet_gw
        plan.clients.append(HostSpec(name=c.name, role="host", kind=c.kind, ip=ip, gateway=gw,
                                     gateway_mac=DEFAULT_ROUTER_MAC,
                                     zone=topology.client_zone(c), fabric_port=names.fabric_port(port)))
        port += 1
    plan.probers.append(HostSpec(**PROBER, role="host", kind="prober", zone=None, gateway_mac=DEFAULT_ROUTER_MAC,
                                 fabric_port=names.fabric_port(port)))
    return plan


def node_object(spec: HostSpec, mac: str, machine: str, info: dict | None = None) -> dict:
    """The v1 Node object registered for a planned node (`info`: its status.nodeInfo)."""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": spec.name, "labels": dict(spec.labels),
                         "annotations": {"kubemu.io/fabric-port": spec.fabric_port,
                                         "kubemu.io/mac": mac, "kubemu.io/machine": machine,
                                         "kubemu.io/tags": ",".join(spec.tags)}},
            "spec": {"podCIDR": spec.pod_cidr, "podCIDRs": [spec.pod_cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": spec.ip},
                                     {"type": "Hostname", "address": spec.name}],
                       "conditions": [{"type": "Ready", "status": "False", "reason": "Starting"}],
                       **({"nodeInfo": info} if info else {})}}


def system_objects(dns_ip: str) -> list[dict]:
    """kube-system with kube-dns (dnsmasq) behind its well-known ClusterIP."""
    labels = {"k8s-app": "kube-dns"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system",
                                                               "labels": {"kubernetes.io/metadata.name": "kube-system"}}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default",
                                                               "labels": {"kubernetes.io/metadata.name": "default"}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"clusterIP": dns_ip, "selector": labels,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{
                                   "name": "dnsmasq", "image": "kubemu/kube-dns",
                                   "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                             {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
                                   "readinessProbe": {"tcpSocket": {"port": 53}, "periodSeconds": 2}}]}}}},
    ]
