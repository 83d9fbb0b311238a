"""Pure rendering of kube-proxy's iptables rules into `iptables-restore` text.

`render_service_port` turns one Service port and its endpoints into the lines it
contributes to each chain (kube-proxy's syncProxyRules loop body); `render_ruleset`
assembles the `*filter` and `*nat` payload of one sync, writing per-Service chains
only for the Services a partial sync must rewrite. No I/O, no clock.
"""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
from typing import Iterable

from emulator.kubeproxy import names as n
from emulator.kubeproxy.hooks import Jump
from emulator.kubeproxy.model import Endpoint, ServicePort, categorize_endpoints

FILTER_CHAINS = (n.KUBE_SERVICES, n.KUBE_EXTERNAL_SERVICES, n.KUBE_FORWARD, n.KUBE_NODEPORTS,
                 n.KUBE_PROXY_FIREWALL)
NAT_CHAINS = (n.KUBE_SERVICES, n.KUBE_NODEPORTS, n.KUBE_POSTROUTING, n.KUBE_MARK_MASQ)
LARGE_CLUSTER_ENDPOINTS = 1000   # above this many endpoints, per-endpoint comments are dropped


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """Node-wide settings that shape the rules (kube-proxy's flags)."""

    node_ip: str = ""              # primary node IP: LB source ranges may allow the node
    cluster_cidr: str = ""         # pod range; "" disables local-traffic detection
    masquerade_all: bool = False
    masquerade_mark: str = "0x4000"
    random_fully: bool = True
    localhost_nodeports: bool = True
    conntrack_tcp_liberal: bool = False


@dataclasses.dataclass
class ServiceRules:
    """Lines one Service port contributes, by destination chain."""

    nat_services: list[str] = dataclasses.field(default_factory=list)
    nat_nodeports: list[str] = dataclasses.field(default_factory=list)
    filter_services: list[str] = dataclasses.field(default_factory=list)
    filter_external: list[str] = dataclasses.field(default_factory=list)
    filter_nodeports: list[str] = dataclasses.field(default_factory=list)
    filter_firewall: list[str] = dataclasses.field(default_factory=list)
    chains: list[str] = dataclasses.field(default_factory=list)       # its own nat chains
    chain_rules: list[str] = dataclasses.field(default_factory=list)  # their rules


@functools.lru_cache(maxsize=None)
def probability(count: int) -> str:
    """1/count printed `%0.10f`, as the statistic match gets it."""
    return "%0.10f" % (1.0 / count)


def _rule(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def render_service_port(sp: ServicePort, endpoints: list[Endpoint], cfg: RenderConfig,
                        large_cluster: bool = False) -> ServiceRules:
    """The rules of one Service port, exactly as kube-proxy's iptables mode writes them."""
    r = ServiceRules()
    name = sp.name.string
    proto = sp.proto
    match = f"-m {proto} -p {proto}"
    cluster_eps, local_eps, reachable, has_any = categorize_endpoints(endpoints, sp)
    svc, svl, ext, fw = sp.svc_chain, sp.svl_chain, sp.ext_chain, sp.fw_chain

    uses_cluster_chain = bool(cluster_eps) and sp.uses_cluster_endpoints
    uses_local_chain = bool(local_eps) and sp.uses_local_endpoints
    internal_chain, has_internal = svc, has_any
    if sp.internal_policy_local:
        internal_chain = svl
        has_internal = has_internal and bool(local_eps)
    external_policy_chain, has_external = svc, has_any
    if sp.external_policy_local:
        external_policy_chain = svl
        has_external = has_external and bool(local_eps)
    uses_ext_chain = has_any and sp.externally_accessible
    uses_fw_chain = has_any and bool(sp.lb_ips) and bool(sp.lb_source_ranges)
    lb_chain = fw if uses_fw_chain else ext

    itarget = icomment = etarget = ecomment = ""
    if not has_any:
        itarget = etarget = "REJECT"
        icomment = ecomment = f'"{name} has no endpoints"'
    else:
        if not has_internal:
            itarget, icomment = "DROP", f'"{name} has no local endpoints"'
        if not has_external:
            etarget, ecomment = "DROP", f'"{name} has no local endpoints"'

    dport = f"--dport {sp.port}"
    # ClusterIP.
    if has_internal:
        r.nat_services.append(_rule(f"-A {n.KUBE_SERVICES} -m comment --comment \"{name} cluster IP\"",
                                    match, f"-d {sp.cluster_ip}", dport, f"-j {internal_chain}"))
    else:
        r.filter_services.append(_rule(f"-A {n.KUBE_SERVICES} -m comment --comment {icomment}",
                                       match, f"-d {sp.cluster_ip}", dport, f"-j {itarget}"))
    # External IPs.
    for ip in sp.external_ips:
        if has_any:
            r.nat_services.append(_rule(f"-A {n.KUBE_SERVICES} -m comment --comment \"{name} external IP\"",
                                        match, f"-d {ip}", dport, f"-j {ext}"))
        if not has_external:
            r.filter_external.append(_rule(f"-A {n.KUBE_EXTERNAL_SERVICES} -m comment --comment {ecomment}",
                                           match, f"-d {ip}", dport, f"-j {etarget}"))
    # LoadBalancer ingress IPs.
    for ip in sp.lb_ips:
        if has_any:
            r.nat_services.append(_rule(f"-A {n.KUBE_SERVICES} -m comment --comment \"{name} loadbalancer IP\"",
                                        match, f"-d {ip}", dport, f"-j {lb_chain}"))
        if uses_fw_chain:
            r.filter_firewall.append(_rule(
                f"-A {n.KUBE_PROXY_FIREWALL} -m comment --comment \"{name} traffic not accepted by {fw}\"",
                match, f"-d {ip}", dport, "-j DROP"))
    if not has_external:
        for ip in sp.lb_ips:
            r.filter_external.append(_rule(f"-A {n.KUBE_EXTERNAL_SERVICES} -m comment --comment {ecomment}",
                                           match, f"-d {ip}", dport, f"-j {etarget}"))
    # NodePort (never subject to loadBalancerSourceRanges).
    if sp.node_port:
        if has_any:
            r.nat_nodeports.append(_rule(f"-A {n.KUBE_NODEPORTS} -m comment --comment {name}",
                                         match, f"--dport {sp.node_port}", f"-j {ext}"))
        if not has_external:
            r.filter_external.append(_rule(f"-A {n.KUBE_EXTERNAL_SERVICES} -m comment --comment {ecomment}",
                                           "-m addrtype --dst-type LOCAL", match,
                                           f"--dport {sp.node_port}", f"-j {etarget}"))
    if sp.health_check_node_port:
        r.filter_nodeports.append(_rule(
            f"-A {n.KUBE_NODEPORTS} -m comment --comment \"{name} health check node port\"",
            "-m tcp -p tcp", f"--dport {sp.health_check_node_port}", "-j ACCEPT"))

    rules = r.chain_rules
    # Internal traffic: masquerade what comes from outside the pod range.
    if has_internal:
        args = _rule(f"-A {internal_chain} -m comment --comment \"{name} cluster IP\"", match,
                     f"-d {sp.cluster_ip}", dport)
        if cfg.masquerade_all:
            rules.append(f"{args} -j {n.KUBE_MARK_MASQ}")
        elif cfg.cluster_cidr:
            rules.append(f"{args} ! -s {cfg.cluster_cidr} -j {n.KUBE_MARK_MASQ}")
    # External traffic (NodePort, LB, external IPs) enters KUBE-EXT.
    if uses_ext_chain:
        r.chains.append(ext)
        if not sp.external_policy_local:
            rules.append(f"-A {ext} -m comment --comment \"masquerade traffic for {name} external destinations\""
                         f" -j {n.KUBE_MARK_MASQ}")
        else:
            if cfg.cluster_cidr:
                rules.append(f"-A {ext} -m comment --comment \"pod traffic for {name} external destinations\""
                             f" -s {cfg.cluster_cidr} -j {svc}")
            rules.append(f"-A {ext} -m comment --comment \"masquerade LOCAL traffic for {name} external "
                         f"destinations\" -m addrtype --src-type LOCAL -j {n.KUBE_MARK_MASQ}")
            rules.append(f"-A {ext} -m comment --comment \"route LOCAL traffic for {name} external "
                         f"destinations\" -m addrtype --src-type LOCAL -j {svc}")
        if has_external:
            rules.append(f"-A {ext} -j {external_policy_chain}")
    # loadBalancerSourceRanges.
    if uses_fw_chain:
        r.chains.append(fw)
        head = f"-A {fw} -m comment --comment \"{name} loadbalancer IP\""
        allow_from_node = False
        for cidr in sp.lb_source_ranges:
            rules.append(f"{head} -s {cidr} -j {ext}")
            allow_from_node = allow_from_node or _contains(cidr, cfg.node_ip)
        if allow_from_node:
            rules.extend(f"{head} -s {ip} -j {ext}" for ip in sp.lb_ips)
        rules.append(f"-A {fw} -m comment --comment \"other traffic to {name} will be dropped by "
                     f"KUBE-PROXY-FIREWALL\"")
    seps = {ep.string: ep.sep_chain(sp.name) for ep in reachable}
    if uses_cluster_chain:
        r.chains.append(svc)
        _endpoint_rules(rules, sp, svc, cluster_eps, seps, large_cluster)
    if uses_local_chain:
        r.chains.append(svl)
        _endpoint_rules(rules, sp, svl, local_eps, seps, large_cluster)
    # One KUBE-SEP per reachable endpoint: hairpin masquerade, affinity, DNAT.
    comment = "" if large_cluster else f" -m comment --comment {name}"
    affinity = sp.affinity_seconds > 0
    for ep in reachable:
        sep = seps[ep.string]
        r.chains.append(sep)
        rules.append(f"-A {sep}{comment} -s {ep.ip} -j {n.KUBE_MARK_MASQ}")
        recent = f" -m recent --name {sep} --set" if affinity else ""
        rules.append(f"-A {sep}{comment}{recent} {match} -j DNAT --to-destination {ep.string}")
    return r


def _endpoint_rules(rules: list[str], sp: ServicePort, chain: str, endpoints: list[Endpoint],
                    sep_names: dict[str, str], large_cluster: bool) -> None:
    """Affinity checks then the random load-balancing rules of a SVC/SVL chain."""
    name = sp.name.string
    seps = [sep_names[ep.string] for ep in endpoints]
    if sp.affinity_seconds > 0:
        for ep, sep in zip(endpoints, seps):
            comment = "" if large_cluster else f" -m comment --comment \"{name} -> {ep.string}\""
            rules.append(f"-A {chain}{comment} -m recent --name {sep} --rcheck --seconds "
                         f"{sp.affinity_seconds} --reap -j {sep}")
    count = len(endpoints)
    for i, (ep, sep) in enumerate(zip(endpoints, seps)):
        comment = "" if large_cluster else f" -m comment --comment \"{name} -> {ep.string}\""
        stat = f" -m statistic --mode random --probability {probability(count - i)}" if i < count - 1 else ""
        rules.append(f"-A {chain}{comment}{stat} -j {sep}")


def _contains(cidr: str, ip: str) -> bool:
    if not ip:
        return False
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def render_ruleset(services: Iterable[tuple[ServiceRules, bool]], cfg: RenderConfig, *,
                   full: bool, stale_chains: Iterable[str] = (), jumps: Iterable[Jump] = ()) -> str:
    """The whole `iptables-restore --noflush` payload of one sync.

    `services` pairs each Service port's rules with whether its own chains are written
    (always on a full sync; only for changed Services on a partial one). Top-level
    chains are rewritten every time; `stale_chains` are flushed and deleted; `jumps`
    (missing hooks) are inserted into built-in chains.
    """
    f_services: list[str] = []
    f_external: list[str] = []
    f_nodeports: list[str] = []
    f_firewall: list[str] = []
    n_services: list[str] = []
    n_nodeports: list[str] = []
    chain_decls: list[str] = []
    chain_rules: list[str] = []
    for rules, write in services:
        f_services += rules.filter_services
        f_external += rules.filter_external
        f_nodeports += rules.filter_nodeports
        f_firewall += rules.filter_firewall
        n_services += rules.nat_services
        n_nodeports += rules.nat_nodeports
        if write or full:
            chain_decls += [f":{c} - [0:0]" for c in rules.chains]
            chain_rules += rules.chain_rules
    jumps = list(jumps)
    stale = sorted(stale_chains)
    mark = cfg.masquerade_mark
    out: list[str] = []
    if full:
        out += ["*mangle", f":{n.KUBE_PROXY_CANARY} - [0:0]", "COMMIT"]
    # ---- filter ----
    out.append("*filter")
    out += [f":{c} - [0:0]" for c in FILTER_CHAINS]
    if cfg.localhost_nodeports:
        out.append(f":{n.KUBE_FIREWALL} - [0:0]")
    if full:
        out.append(f":{n.KUBE_PROXY_CANARY} - [0:0]")
    out += [j.insert_line() for j in jumps if j.table == "filter"]
    if cfg.localhost_nodeports:
        out.append(f"-A {n.KUBE_FIREWALL} -m comment --comment \"block incoming localnet connections\" "
                   "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")
    out += f_services + f_external + f_nodeports + f_firewall
    if not cfg.conntrack_tcp_liberal:
        out.append(f"-A {n.KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP")
    out.append(f"-A {n.KUBE_FORWARD} -m comment --comment \"kubernetes forwarding rules\" "
               f"-m mark --mark {mark}/{mark} -j ACCEPT")
    out.append(f"-A {n.KUBE_FORWARD} -m comment --comment \"kubernetes forwarding conntrack rule\" "
               "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    out.append("COMMIT")
    # ---- nat ----
    out.append("*nat")
    out += [f":{c} - [0:0]" for c in NAT_CHAINS]
    if full:
        out.append(f":{n.KUBE_PROXY_CANARY} - [0:0]")
    out += chain_decls
    out += [f":{c} - [0:0]" for c in stale]
    out += [j.insert_line() for j in jumps if j.table == "nat"]
    out.append(f"-A {n.KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN")
    out.append(f"-A {n.KUBE_POSTROUTING} -j MARK --xor-mark {mark}")
    out.append(f"-A {n.KUBE_POSTROUTING} -m comment --comment \"kubernetes service traffic requiring SNAT\" "
               f"-j MASQUERADE" + (" --random-fully" if cfg.random_fully else ""))
    out.append(f"-A {n.KUBE_MARK_MASQ} -j MARK --or-mark {mark}")
    out += n_services
    local = "-m addrtype --dst-type LOCAL" + ("" if cfg.localhost_nodeports else " ! -d 127.0.0.0/8")
    out.append(f"-A {n.KUBE_SERVICES} -m comment --comment \"kubernetes service nodeports; NOTE: this must "
               f"be the last rule in this chain\" {local} -j {n.KUBE_NODEPORTS}")
    out += n_nodeports
    out += chain_rules
    out += [f"-X {c}" for c in stale]
    out.append("COMMIT")
    out.append("")
    return "\n".join(out)
