"""The desired VPC state for the SDN controller: hosts, load balancers and firewall rules.

Pure: run plan facts, Nodes, Services, health and the topology's firewall rules in, one
JSON-able dict out (the form `sdn.set_state` takes):

    {"gateways": [...],
     "endpoints": [{"name", "ip", "mac", "port_name", "dpid", "routes", "gateway", "kind", "tags"}],
     "vpc_ranges": [subnet, pod range],
     "load_balancers": [{"name", "ip", "protocol", "ports", "scheme", "backends", "all_backends"}],
     "firewall": [{"name", "direction", "action", "priority", "source_ranges",
                   "destination_ranges", "target_tags", "protocols": [{"protocol", "ports"}]}]}

Endpoints: every planned host. `kind` is node, vm, internet or prober; nodes carry GKE's
node tag `gke-<cluster>-<hash>-node` plus their pool's tags and route their pod range
(alias IP range). Firewall rules apply to VPC instances only (kind node and vm);
internet hosts and the prober are outside the VPC.

Load balancers: one entry per LoadBalancer Service with an address, per protocol (GCP
forwarding rules carry one protocol; a Service mixing TCP and UDP gets `ns/name/tcp` and
`ns/name/udp`). `backends` are the nodes whose health check passes (Cluster policy:
kube-proxy's /healthz on 10256; Local: the Service's healthCheckNodePort answers 200).
`all_backends` lists every node the load balancer targets (GKE's target pool / instance
groups: every Node not labelled node.kubernetes.io/exclude-from-external-load-balancers);
the SDN controller sends to them as GCP's last resort when no backend is healthy.

Firewall rules, in this order (a rule's priority decides, the order only reads well):
1. GKE's cluster rules (priority 1000, target: the node tag):
   `gke-<cluster>-<hash>-all`: from the pod range, all protocols;
   `gke-<cluster>-<hash>-vms`: from the subnet, tcp:1-65535, udp:1-65535, icmp.
2. `default-allow-internal` (priority 65534, every instance): from the VPC ranges,
   tcp:0-65535, udp:0-65535, icmp (the default network's pre-populated rule; lets VMs
   and nodes reach each other both ways).
3. Per LoadBalancer Service, what GKE's cloud provider creates (priority 1000, target:
   the node tag):
   `k8s-fw-<lb>`: source `spec.loadBalancerSourceRanges` (or the
   `service.beta.kubernetes.io/load-balancer-source-ranges` annotation), 0.0.0.0/0 when
   unset; destination the load balancer's IP; the Service's protocol and ports.
   Health checks: external `k8s-<cluster-id>-node-http-hc` (Cluster policy, shared, tcp:10256)
   or `k8s-<lb>-http-hc` (Local, tcp:healthCheckNodePort), from 35.191.0.0/16,
   130.211.0.0/22, 209.85.152.0/22, 209.85.204.0/22; internal `k8s-<cluster-id>-node-hc`
   or `<lb>-hc`, from 35.191.0.0/16 and 130.211.0.0/22. GKE gives these the load
   balancer IP as destination because GCP addresses probes to the forwarding rule;
   our probes go to node IPs, so they have no destination range.
4. The topology's rules.
5. GCP's implied rules (priority 65535): deny all ingress, allow all egress.

loadBalancerSourceRanges: GKE's cloud provider copies them into `k8s-fw-<lb>`'s source
ranges (`firewallObject(..., sourceRanges, ...)` in kubernetes/cloud-provider-gcp), so on
GKE the VPC firewall already drops other sources before kube-proxy's iptables would.
`source_ranges_in_firewall=False` leaves the rule at 0.0.0.0/0 so that only kube-proxy
filters (what FEATURES.md section 5 describes).

Conventions for consumers: an empty `destination_ranges` (ingress) or `source_ranges`
(egress) means any address; empty `target_tags` means every instance; empty `ports`
means every port of the protocol.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Iterable

from emulator.cloud import names
from emulator.cloud.healthcheck import HealthState, health_check_port
from emulator.gke import LEGACY_PROBER_RANGES, PROBER_RANGES
from emulator.cloud.lbip import is_load_balancer, lb_scheme, status_ip
from emulator.errors import ConfigError
from emulator.records.cloud import CloudHost

GKE_PRIORITY = 1000
DEFAULT_INTERNAL_PRIORITY = 65534
IMPLIED_PRIORITY = 65535
SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"
LB_PROTOCOLS = ("TCP", "UDP")
EXCLUDE_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


def rule(name: str, *, direction: str = "ingress", action: str = "allow", priority: int = GKE_PRIORITY,
         source_ranges: Iterable[str] = (), destination_ranges: Iterable[str] = (),
         target_tags: Iterable[str] = (), protocols: Iterable[dict] = ()) -> dict:
    """A firewall rule dict in the state's form."""
    return {"name": name, "direction": direction, "action": action, "priority": int(priority),
            "source_ranges": list(source_ranges), "destination_ranges": list(destination_ranges),
            "target_tags": list(target_tags),
            "protocols": [{"protocol": p["protocol"], "ports": list(p.get("ports", []))} for p in protocols]}


def port_ranges(ports: Iterable[int]) -> list[str]:
    """Ports as GKE writes them in firewall rules: consecutive ports merged ("80", "8080-8081")."""
    out: list[str] = []
    run: list[int] = []
    for p in sorted(set(int(p) for p in ports)):
        if run and p == run[-1] + 1:
            run.append(p)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [p]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return out


def normalize_rule(r: dict, where: str = "firewall") -> dict:
    """A topology rule (dict or `FirewallRule`) in the state's form, with defaults filled."""
    if hasattr(r, "to_state"):
        r = r.to_state()
    if not isinstance(r, dict) or not r.get("name"):
        raise ConfigError("a firewall rule needs a name", field=where)
    direction = r.get("direction", "ingress")
    action = r.get("action", "allow")
    if direction not in ("ingress", "egress") or action not in ("allow", "deny"):
        raise ConfigError(f"bad direction/action {direction!r}/{action!r}", field=f"{where}.{r['name']}")
    protocols = r.get("protocols") or [{"protocol": "all"}]
    for p in protocols:
        if p.get("protocol") not in ("tcp", "udp", "icmp", "all"):
            raise ConfigError(f"bad protocol {p.get('protocol')!r}", field=f"{where}.{r['name']}")
    src = [str(x) for x in r.get("source_ranges") or []]
    dst = [str(x) for x in r.get("destination_ranges") or []]
    if direction == "ingress" and not src:
        src = ["0.0.0.0/0"]
    if direction == "egress" and not dst:
        dst = ["0.0.0.0/0"]
    return rule(r["name"], direction=direction, action=action, priority=r.get("priority", GKE_PRIORITY),
                source_ranges=src, destination_ranges=dst, target_tags=r.get("target_tags") or [],
                protocols=[{"protocol": p["protocol"], "ports": [str(x) for x in p.get("ports") or []]}
                           for p in protocols])


def cluster_rules(cluster_name: str, subnet: str, pod_ranges: list[str], vpc_ranges: list[str]) -> list[dict]:
    """GKE's cluster firewall rules and the default network's internal rule."""
    tag = names.node_tag(cluster_name)
    prefix = names.gke_prefix(cluster_name)
    return [
        rule(f"{prefix}-all", source_ranges=pod_ranges, target_tags=[tag], protocols=[{"protocol": "all"}]),
        rule(f"{prefix}-vms", source_ranges=[subnet], target_tags=[tag],
             protocols=[{"protocol": "tcp", "ports": ["1-65535"]}, {"protocol": "udp", "ports": ["1-65535"]},
                        {"protocol": "icmp"}]),
        rule("default-allow-internal", priority=DEFAULT_INTERNAL_PRIORITY, source_ranges=vpc_ranges,
             protocols=[{"protocol": "tcp", "ports": ["0-65535"]}, {"protocol": "udp", "ports": ["0-65535"]},
                        {"protocol": "icmp"}]),
    ]


def implied_rules() -> list[dict]:
    """GCP's implied rules every VPC network has."""
    return [rule("implied-deny-ingress", action="deny", priority=IMPLIED_PRIORITY,
                 source_ranges=["0.0.0.0/0"], protocols=[{"protocol": "all"}]),
            rule("implied-allow-egress", direction="egress", priority=IMPLIED_PRIORITY,
                 destination_ranges=["0.0.0.0/0"], protocols=[{"protocol": "all"}])]


def source_ranges(svc: dict) -> list[str] | None:
    """loadBalancerSourceRanges (spec first, then the annotation), canonical; None when unset.

    Invalid entries are dropped (the API server rejects them in a real cluster).
    """
    raw = svc.get("spec", {}).get("loadBalancerSourceRanges")
    if not raw:
        ann = (svc.get("metadata", {}).get("annotations") or {}).get(SOURCE_RANGES_ANNOTATION, "")
        raw = [x for x in ann.split(",") if x.strip()]
    if not raw:
        return None
    out = []
    for r in raw:
        try:
            out.append(str(ipaddress.ip_network(str(r).strip(), strict=False)))
        except ValueError:
            continue
    return out


def service_ports(svc: dict) -> dict[str, list[int]]:
    """Ports per protocol ("TCP"/"UDP") of a Service; other protocols are left out."""
    out: dict[str, list[int]] = {}
    for p in svc.get("spec", {}).get("ports") or []:
        proto = p.get("protocol", "TCP")
        if proto in LB_PROTOCOLS and p.get("port"):
            out.setdefault(proto, []).append(int(p["port"]))
    return {k: sorted(set(v)) for k, v in out.items()}


def service_rules(svc: dict, cluster_name: str, health_port: int | None, shared_check: bool,
                  source_ranges_in_firewall: bool = True) -> list[dict]:
    """The firewall rules GKE creates for one LoadBalancer Service with an address."""
    ip = status_ip(svc)
    ports = service_ports(svc)
    if not ip or not ports:
        return []
    lb = names.lb_name(svc)
    scheme = lb_scheme(svc)
    tag = names.node_tag(cluster_name)
    out = []
    src = source_ranges(svc) if source_ranges_in_firewall else None
    if src is None or src:  # given but all invalid: no rule (nothing allowed)
        out.append(rule(names.lb_firewall_name(lb), source_ranges=src or ["0.0.0.0/0"],
                        destination_ranges=[ip], target_tags=[tag],
                        protocols=[{"protocol": proto.lower(), "ports": port_ranges(nums)}
                                   for proto, nums in sorted(ports.items())]))
    if health_port:
        ranges = PROBER_RANGES if scheme == "internal" else LEGACY_PROBER_RANGES
        out.append(rule(names.hc_firewall_name(cluster_name, lb, scheme, shared_check),
                        source_ranges=ranges, target_tags=[tag],
                        protocols=[{"protocol": "tcp", "ports": [str(health_port)]}]))
    return out


def node_ips(nodes: Iterable[dict]) -> dict[str, str]:
    """Node name -> InternalIP for the Nodes a load balancer targets.

    Every Node except those labelled node.kubernetes.io/exclude-from-external-load-balancers;
    NotReady nodes stay (Kubernetes 1.28+: health checks decide, not readiness).
    """
    out = {}
    for n in nodes:
        meta = n.get("metadata", {})
        if EXCLUDE_LB_LABEL in (meta.get("labels") or {}):
            continue
        for a in n.get("status", {}).get("addresses") or []:
            if a.get("type") == "InternalIP":
                out[meta["name"]] = a["address"]
                break
    return out


def load_balancer_entries(svc: dict, backends: list[str], all_backends: list[str]) -> list[dict]:
    """The state's load balancer entries of one Service (one per protocol)."""
    ip = status_ip(svc)
    ports = service_ports(svc)
    if not ip or not ports:
        return []
    key = names.service_key(svc)
    scheme = lb_scheme(svc)
    multi = len(ports) > 1
    return [{"name": f"{key}/{proto.lower()}" if multi else key, "ip": ip, "protocol": proto,
             "ports": nums, "scheme": scheme, "backends": list(backends), "all_backends": list(all_backends)}
            for proto, nums in sorted(ports.items())]


def endpoints(plan_hosts: Iterable[CloudHost], host_macs: dict[str, str], cluster_name: str,
              dpid: int = 1) -> list[dict]:
    """Every planned host as a fabric endpoint, with its kind and network tags."""
    tag = names.node_tag(cluster_name)
    out = []
    for h in plan_hosts:
        is_node = h.role == "node"
        kind = "node" if is_node else h.kind or "vm"
        tags = [tag] if is_node else []
        tags += [t for t in h.tags if t not in tags]
        mac = host_macs.get(h.name) or h.mac
        if not mac:
            raise ConfigError(f"no MAC known for host {h.name}", field="hosts")
        out.append({"name": h.name, "ip": h.ip, "mac": mac, "port_name": h.fabric_port,
                    "dpid": h.dpid if h.dpid is not None else dpid,
                    "routes": [h.pod_cidr] if is_node and h.pod_cidr else list(h.routes),
                    "gateway": h.gateway, "kind": kind, "tags": tags})
    return out


def desired_vpc_state(plan_hosts: Iterable[CloudHost], host_macs: dict[str, str], nodes: list[dict],
                      services: list[dict], health: HealthState | None, firewall_rules: Iterable[Any],
                      vpc_ranges: list[str], *, cluster_name: str, gateways: Iterable[str],
                      dpid: int = 1, source_ranges_in_firewall: bool = True, implied: bool = True, extra: dict | None = None) -> dict:
    """The whole VPC state (see the module docstring).

    `vpc_ranges` is [subnet, pod range, ...]. `health` None means no health checking:
    every targeted node is a backend. `extra` keys (router_mac, tunnels...) are copied in.
    """
    vpc_ranges = [str(r) for r in vpc_ranges]
    subnet, pod_ranges = vpc_ranges[0], vpc_ranges[1:]
    targets = sorted(node_ips(nodes))
    lbs: list[dict] = []
    fw_lb: list[dict] = []
    shared_done: set[str] = set()
    for svc in sorted((s for s in services if is_load_balancer(s)), key=names.service_key):
        key = names.service_key(svc)
        backends = targets if health is None else [n for n in health.healthy_nodes(key) if n in targets]
        lbs += load_balancer_entries(svc, backends, targets)
        hc_port, shared = health_check_port(svc)
        rules = service_rules(svc, cluster_name, hc_port, shared, source_ranges_in_firewall)
        for r in rules:
            if shared and r["name"] in shared_done:
                continue  # the shared node health check rule exists once
            shared_done.add(r["name"])
            fw_lb.append(r)
    user = [normalize_rule(r, f"firewall[{i}]") for i, r in enumerate(firewall_rules or [])]
    firewall = cluster_rules(cluster_name, subnet, pod_ranges, vpc_ranges) + fw_lb + user
    if implied:
        firewall += implied_rules()
    seen: set[str] = set()
    for r in firewall:
        if r["name"] in seen:
            raise ConfigError(f"firewall rule name {r['name']!r} is used twice (GKE creates it)",
                              field="firewall")
        seen.add(r["name"])
    state = {"gateways": sorted(set(gateways)),
             "endpoints": endpoints(plan_hosts, host_macs, cluster_name, dpid),
             "vpc_ranges": vpc_ranges, "load_balancers": lbs, "firewall": firewall}
    for k, v in (extra or {}).items():
        state.setdefault(k, v)
    return state


def lb_converged(state: dict | None, svc: dict, endpoint_nodes: Iterable[str], down_nodes: Iterable[str]) -> bool:
    """Whether a state's load balancer entries of `svc` send to exactly the nodes that should pass
    their health checks: the nodes with a ready endpoint (Local) or every targeted node that is up
    (Cluster). False while the Service has no entry."""
    key = names.service_key(svc)
    lbs = [lb for lb in (state or {}).get("load_balancers", []) if lb["name"] == key or lb["name"].startswith(key + "/")]
    if not lbs:
        return False
    if svc["spec"].get("externalTrafficPolicy") == "Local":
        want = set(endpoint_nodes)
    else:
        want = set(lbs[0]["all_backends"]) - set(down_nodes)
    return all(set(lb["backends"]) == want for lb in lbs)
