"""GKE's Ingress controller for the cloud controller: addresses, status, proxy config, VPC bits.

`IngressCore.sync` is pure apart from its own allocation memory: every Ingress of class
gce gets an external address (from the top of the external range, so it never meets
the bottom-up L4 allocator before the range is full), its load balancer is built and
rendered into one haproxy.cfg for the Google front end host, and it returns what the
cloud controller must do: Ingress status patches, the proxy's config, files and
addresses, the routes the VPC needs (the Ingress addresses go to the front end host)
and GKE's L7 firewall rule (`k8s-fw-l7--<cluster-id>`: health checks and proxies from
130.211.0.0/22 and 35.191.0.0/16 to the node ports and, with NEG, the pod ports).
"""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field

from emulator.cloud import names
from emulator.cloud.haproxy_cfg import ProxySettings, render
from emulator.cloud.ingress_model import Resolver, build_load_balancer, ingress_key, is_gce_ingress
from emulator.cloud.vpcstate import port_ranges, rule
from emulator.gke import NODE_PORT_RANGE_TEXT, PROBER_RANGES

log = logging.getLogger(__name__)
GFE_RANGES = list(PROBER_RANGES)   # Google front ends proxy and probe from these


@dataclass
class IngressPlan:
    """What one pass decided."""

    config: str = ""
    files: dict[str, str] = field(default_factory=dict)
    addresses: list[str] = field(default_factory=list)
    patches: list[tuple[str, str, dict]] = field(default_factory=list)   # (ns, name, status)
    firewall: list[dict] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)
    backends: dict[str, dict] = field(default_factory=dict)
    uses: dict[str, list[str]] = field(default_factory=dict)      # Ingress -> its backends


class IngressIps:
    """External addresses of Ingresses, top of the external range downwards."""

    def __init__(self, external_range: str) -> None:
        self.net = ipaddress.ip_network(external_range)
        self.assigned: dict[str, str] = {}

    def sync(self, keys: list[str], taken: set[str], have: dict[str, str]) -> dict[str, str]:
        """key -> address for these Ingresses (an address already in status is kept)."""
        for k in list(self.assigned):
            if k not in keys:
                del self.assigned[k]
        used = set(self.assigned.values()) | set(taken)
        for k in sorted(keys):
            if k in self.assigned:
                continue
            ip = have.get(k)
            if ip and ip not in used and ipaddress.ip_address(ip) in self.net:
                self.assigned[k] = ip
                used.add(ip)
                continue
            addr = self.net.broadcast_address - 1
            while addr > self.net.network_address and str(addr) in used:
                addr -= 1
            if addr > self.net.network_address:
                self.assigned[k] = str(addr)
                used.add(str(addr))
        return dict(self.assigned)


def status_of(ing: dict) -> dict:
    return ing.get("status") or {}


class IngressCore:
    """Ingress objects -> IngressPlan (see the module docstring)."""

    def __init__(self, external_range: str, cluster_name: str, settings: ProxySettings) -> None:
        self.ips = IngressIps(external_range)
        self.cluster_name = cluster_name
        self.settings = settings

    def sync(self, objs: dict[str, list[dict]], node_ips: dict[str, str], taken: set[str]) -> IngressPlan:
        """One pass over Ingress, Service, EndpointSlice, BackendConfig, SecurityPolicy, Secret."""
        ings = [i for i in objs.get("Ingress", []) if is_gce_ingress(i)]
        have = {ingress_key(i): ((status_of(i).get("loadBalancer") or {}).get("ingress") or [{}])[0].get("ip")
                for i in ings}
        ips = self.ips.sync([ingress_key(i) for i in ings], taken, {k: v for k, v in have.items() if v})
        res = Resolver(objs.get("Service", []), objs.get("EndpointSlice", []), node_ips,
                       objs.get("BackendConfig", []), objs.get("SecurityPolicy", []), objs.get("Secret", []))
        plan = IngressPlan()
        lbs = []
        for ing in sorted(ings, key=ingress_key):
            key = ingress_key(ing)
            lb = build_load_balancer(ing, ips.get(key), res)
            if lb.ip is None:
                lb.errors.append("no free external address left")
            lbs.append(lb)
            plan.errors[key] = lb.errors
            plan.uses[key] = sorted({r.backend for r in lb.routes} | ({lb.default_backend} - {None}))
            for f, pem in lb.certs:
                plan.files[f] = pem
            if lb.ip:
                plan.addresses.append(lb.ip)
            want = {"loadBalancer": {"ingress": [{"ip": lb.ip}]} if lb.ip else {}, "errors": list(lb.errors)}
            st = status_of(ing)
            if st.get("loadBalancer") != want["loadBalancer"] or (st.get("errors") or []) != want["errors"]:
                meta = ing["metadata"]
                plan.patches.append((meta.get("namespace", "default"), meta["name"], want))
        backends = list(res.backends.values())
        plan.backends = {b.name: {"service": b.service, "neg": b.neg,
                                  "servers": [f"{s.name}={s.ip}:{s.port}" for s in b.servers]} for b in backends}
        if lbs:
            plan.config = render(lbs, backends, self.settings)
            plan.firewall = [self.firewall_rule(backends)]
        return plan

    def firewall_rule(self, backends) -> dict:
        """GKE's L7 rule: proxies and health checks to node ports and NEG pod ports."""
        neg_ports = {s.port for b in backends if b.neg for s in b.servers}
        ports = [NODE_PORT_RANGE_TEXT] + port_ranges(neg_ports)
        return rule(f"k8s-fw-l7--{names.cluster_id(self.cluster_name)}", source_ranges=GFE_RANGES,
                    target_tags=[names.node_tag(self.cluster_name)],
                    protocols=[{"protocol": "tcp", "ports": ports}])
