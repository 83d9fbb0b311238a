"""Typed Service ports and endpoints built from Kubernetes object dicts.

Mirrors kube-proxy's BaseServicePortInfo / BaseEndpointInfo: a `v1` Service becomes one
`ServicePort` per `spec.ports[]` entry; a `discovery.k8s.io/v1` EndpointSlice becomes
`Endpoint`s keyed by the `ServicePortName` they serve (matched by port *name* and
protocol). `categorize_endpoints` is kube-proxy's CategorizeEndpoints without topology.
"""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
from typing import Any, Iterable

from emulator.kubeproxy import names

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_SECONDS = 10800
NamespacedName = tuple[str, str]


@dataclasses.dataclass(frozen=True, order=True)
class ServicePortName:
    """Identity of one Service port: namespace, Service, port name, protocol."""

    namespace: str
    name: str
    port: str
    protocol: str

    @property
    def nsn(self) -> NamespacedName:
        """(namespace, name) of the owning Service."""
        return (self.namespace, self.name)

    @functools.cached_property
    def string(self) -> str:
        """`ns/name:port` as kube-proxy prints it in comments and hashes it."""
        return names.port_name_string(self.namespace, self.name, self.port)


@dataclasses.dataclass(frozen=True)
class ServicePort:
    """Everything kube-proxy needs about one port of one Service."""

    name: ServicePortName
    cluster_ip: str
    port: int
    protocol: str                        # TCP, UDP or SCTP
    node_port: int = 0
    target_port: int | str = 0
    service_type: str = "ClusterIP"
    external_ips: tuple[str, ...] = ()
    lb_ips: tuple[str, ...] = ()
    lb_source_ranges: tuple[str, ...] = ()
    affinity_seconds: int = 0            # 0: no ClientIP session affinity
    external_policy_local: bool = False  # only ever True when externally accessible
    internal_policy_local: bool = False
    health_check_node_port: int = 0

    @property
    def proto(self) -> str:
        """Lowercase protocol as used in chain hashes and `-p`."""
        return self.protocol.lower()

    @property
    def externally_accessible(self) -> bool:
        """Reachable by NodePort, LoadBalancer IP or external IP."""
        return bool(self.node_port or self.lb_ips or self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        """Needs KUBE-SVC (Cluster policy or short-circuit of external traffic)."""
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        """Needs KUBE-SVL (a Local policy is in force)."""
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible)

    @functools.cached_property
    def chain_suffix(self) -> str:
        """Hash shared by this port's KUBE-SVC/SVL/EXT/FW chains."""
        return names.port_proto_hash(self.name.string, self.proto)

    @property
    def svc_chain(self) -> str:
        return names.SVC_PREFIX + self.chain_suffix

    @property
    def svl_chain(self) -> str:
        return names.SVL_PREFIX + self.chain_suffix

    @property
    def ext_chain(self) -> str:
        return names.EXT_PREFIX + self.chain_suffix

    @property
    def fw_chain(self) -> str:
        return names.FW_PREFIX + self.chain_suffix


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One backend address of a Service port, with its EndpointSlice conditions."""

    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""
    is_local: bool = False

    @property
    def string(self) -> str:
        """`IP:port`, the form used in DNAT targets and SEP hashes."""
        return f"{self.ip}:{self.port}"

    def sep_chain(self, spn: ServicePortName) -> str:
        """This endpoint's KUBE-SEP chain for the given Service port."""
        return names.sep_chain(spn.string, spn.protocol.lower(), self.string)


def _meta(obj: dict[str, Any]) -> NamespacedName:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "default", meta.get("name") or "")


def service_key(obj: dict[str, Any]) -> NamespacedName:
    """(namespace, name) of a Service dict."""
    return _meta(obj)


def _ipv4(values: Iterable[Any]) -> tuple[str, ...]:
    out = []
    for value in values:
        try:
            if ipaddress.ip_address(str(value).strip()).version == 4:
                out.append(str(value).strip())
        except ValueError:
            continue
    return tuple(out)


def _cidrs_v4(values: Iterable[Any]) -> tuple[str, ...]:
    out = []
    for value in values:
        try:
            net = ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            continue
        if net.version == 4:
            out.append(str(net))
    return tuple(out)


def parse_service(obj: dict[str, Any]) -> dict[ServicePortName, ServicePort]:
    """The Service's ports as kube-proxy sees them; empty when kube-proxy ignores it.

    Headless (`clusterIP: None`), IP-less and ExternalName Services are skipped. A
    Service without selector is still proxied: its EndpointSlices are managed by hand
    (as for `default/kubernetes`).
    """
    namespace, name = _meta(obj)
    spec = obj.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    cluster_ip = spec.get("clusterIP") or ""
    if svc_type == "ExternalName" or cluster_ip in ("", "None") or not _ipv4([cluster_ip]):
        return {}
    externally = svc_type in ("NodePort", "LoadBalancer") or bool(spec.get("externalIPs"))
    etp_local = externally and spec.get("externalTrafficPolicy") == "Local"
    itp_local = spec.get("internalTrafficPolicy") == "Local"
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS)
    lb_ips: tuple[str, ...] = ()
    if svc_type == "LoadBalancer":
        ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        lb_ips = _ipv4(i.get("ip") for i in ingress
                       if i.get("ip") and i.get("ipMode", "VIP") in (None, "VIP"))
    hc_port = int(spec.get("healthCheckNodePort") or 0) if (svc_type == "LoadBalancer" and etp_local) else 0
    common = dict(
        cluster_ip=cluster_ip, service_type=svc_type,
        external_ips=_ipv4(spec.get("externalIPs") or []),
        lb_ips=lb_ips,
        lb_source_ranges=_cidrs_v4(spec.get("loadBalancerSourceRanges") or []),
        affinity_seconds=affinity, external_policy_local=etp_local,
        internal_policy_local=itp_local, health_check_node_port=hc_port,
    )
    ports: dict[ServicePortName, ServicePort] = {}
    for port in spec.get("ports") or []:
        protocol = (port.get("protocol") or "TCP").upper()
        spn = ServicePortName(namespace, name, port.get("name") or "", protocol)
        node_port = int(port.get("nodePort") or 0) if svc_type in ("NodePort", "LoadBalancer") else 0
        target = port.get("targetPort", port.get("port"))
        ports[spn] = ServicePort(name=spn, port=int(port["port"]), protocol=protocol,
                                 node_port=node_port, target_port=target, **common)
    return ports


def slice_service(obj: dict[str, Any]) -> NamespacedName | None:
    """(namespace, Service name) an EndpointSlice belongs to, from its label."""
    meta = obj.get("metadata") or {}
    svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not svc:
        return None
    return (meta.get("namespace") or "default", svc)


def parse_endpoint_slice(obj: dict[str, Any], node_name: str) -> dict[ServicePortName, list[Endpoint]]:
    """The slice's endpoints per Service port (IPv4 slices only)."""
    key = slice_service(obj)
    if key is None or (obj.get("addressType") or "IPv4") != "IPv4":
        return {}
    endpoints: list[tuple[str, bool, bool, bool, str]] = []
    for ep in obj.get("endpoints") or []:
        addresses = ep.get("addresses") or []
        if not addresses:
            continue
        cond = ep.get("conditions") or {}
        ready = cond.get("ready") is not False          # nil means ready
        serving = ready if cond.get("serving") is None else bool(cond.get("serving"))
        terminating = bool(cond.get("terminating"))
        endpoints.append((addresses[0], ready, serving, terminating, ep.get("nodeName") or ""))
    out: dict[ServicePortName, list[Endpoint]] = {}
    for port in obj.get("ports") or []:
        if port.get("port") is None:
            continue
        spn = ServicePortName(key[0], key[1], port.get("name") or "",
                              (port.get("protocol") or "TCP").upper())
        out[spn] = [Endpoint(ip=ip, port=int(port["port"]), ready=ready, serving=serving,
                             terminating=term, node_name=node,
                             is_local=bool(node_name) and node == node_name)
                    for ip, ready, serving, term, node in endpoints]
    return out


def categorize_endpoints(endpoints: list[Endpoint], sp: ServicePort
                         ) -> tuple[list[Endpoint], list[Endpoint], list[Endpoint], bool]:
    """(cluster, local, all locally reachable endpoints, has any usable endpoint).

    Ready endpoints are used; when none is ready, serving-and-terminating ones are
    (separately for the Cluster and the Local lists).
    """
    cluster: list[Endpoint] = []
    local: list[Endpoint] = []
    has_any = False
    fallback = False
    if sp.uses_cluster_endpoints:
        cluster = [ep for ep in endpoints if ep.ready]
        if not cluster:
            cluster = [ep for ep in endpoints if ep.serving and ep.terminating]
        has_any = bool(cluster)
    if not sp.uses_local_endpoints:
        return cluster, local, cluster, has_any
    local_ready = local_term = False
    for ep in endpoints:
        if ep.ready:
            has_any = True
            local_ready = local_ready or ep.is_local
        elif ep.serving and ep.terminating:
            has_any = True
            local_term = local_term or ep.is_local
    if local_ready:
        local = [ep for ep in endpoints if ep.is_local and ep.ready]
    elif local_term:
        fallback = True
        local = [ep for ep in endpoints if ep.is_local and ep.serving and ep.terminating]
    if not sp.uses_cluster_endpoints:
        return cluster, local, local, has_any
    if not fallback:
        return cluster, local, cluster, has_any
    merged = {ep.string: ep for ep in cluster}
    merged.update((ep.string, ep) for ep in local)
    return cluster, local, sorted(merged.values(), key=lambda e: e.string), has_any
