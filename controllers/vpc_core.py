"""Pure core of the VPC router, the stand-in for a GCP VPC network: state in, flows out.

No OpenFlow and no I/O here: `compute` turns a `VpcState` into the `FlowSpec`s and
`GroupSpec`s of one bridge, `diff_flows`/`diff_groups` say which to add and delete, and
`controllers.vpc_app` (the thin os-ken adapter) turns them into OpenFlow 1.3 messages.
`tests/fakes/flow_sim.py` traces packets (with groups and conntrack) through the same specs.

The VPC is L3 like GCP's: hosts have /32 addresses and a gateway; the fabric answers ARP
for gateway addresses itself (an OVS flow rewrites the request into the reply) and routes
each endpoint's IP and its routed ranges (GKE alias IP ranges) to it, rewriting MACs and
decrementing the TTL. Nothing floods; anything not routed is dropped.

Pipeline (one table per concern). Every endpoint has a stable id (1..65535, from its name)
that is its conntrack zone, its ct_mark value as a load-balancer backend and its register
value; the sender's id is in reg6, the receiver's in reg5, a chosen backend's in reg7.
  0  CLASSIFY    ARP responder; IPv4 from a local endpoint: reg6 := id, ct(zone=id) -> 10;
                 from tunnels, the VPC router's frames -> 40 (the sender's bridge already did
                 10..30), anything else from a tunnel dropped by a flow that counts it
  10 FW_EGRESS   sender's egress rules (stateful; vpc_firewall) -> commit -> 20
  20 LB          forwarding rules: recorded backend (ct_mark) or SELECT group -> 25 (vpc_lb)
  25 LB_BACKEND  reg7 = backend id -> router hop to that endpoint (dest IP unchanged)
  30 ROUTE       longest-prefix match on ipv4_dst -> router hop
     (a router hop: new MACs, TTL - 1, then -> 40 for a local endpoint or out of the tunnel)
  40 CT_INGRESS  by eth_dst: reg5 := receiver's id, ct(zone=id) -> 45
  45 FW_INGRESS  receiver's ingress rules (after the LB chose it) -> commit -> 50
  50 DELIVER     output by eth_dst
"""
from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from emulator.errors import ConfigError

from controllers.vpc_firewall import FirewallRule, firewall_flows, parse_firewall
from controllers.vpc_lb import LoadBalancer, lb_program, parse_load_balancers, validate_load_balancers
from controllers.vpc_types import (  # noqa: F401  (re-exported: the core's public names)
    ARP_REPLY, ARP_REQUEST, COOKIE_TAG, COOKIE_TAG_MASK, COOKIE_TAG_SHIFT, DEFAULT_ROUTER_MAC,
    ENDPOINT_KINDS, ETH_TYPE_ARP, ETH_TYPE_IP, IN_PORT, INSTANCE_KINDS, MAC_RE, PRIO_MISS, REG_DST,
    REG_LB, REG_SRC, TABLE_CLASSIFY, TABLE_CT_INGRESS, TABLE_DELIVER, TABLE_FW_EGRESS,
    TABLE_FW_INGRESS, TABLE_LB, TABLE_LB_BACKEND, TABLE_ROUTE, Action, Endpoint, FlowSpec,
    GroupSpec, Tunnel, ct, known, parse_cidr, parse_ip, prefix, str_list,
)

PRIO_INGRESS = 100
PRIO_ARP = 200
PRIO_ROUTE_BASE = 100  # + prefix length: longest prefix wins
PRIO_DELIVER = 100
PRIO_TUNNEL = 300            # above the ARP responder: a tunnel carries only the router's IPv4 frames
PRIO_TUNNEL_REFUSED = 299    # the rest from a tunnel port: dropped, counted (the underlay's refused_frames)

_ENDPOINT_KEYS = {"name", "ip", "mac", "port_name", "ofport", "routes", "dpid", "gateway", "kind", "tags"}
_STATE_KEYS = {"router_mac", "gateways", "endpoints", "tunnels", "vpc_ranges", "load_balancers", "firewall"}


@dataclass(frozen=True)
class VpcState:
    """Everything the VPC router needs: hosts, tunnels, load balancers and firewall rules.

    `firewall` None (the key absent) means no firewall is enforced at all; a list (even an
    empty one) turns on GCP semantics, implied ingress deny-all included.
    """

    router_mac: str
    gateways: tuple[str, ...]     # answered by ARP: VPC subnet gateway, internet range gateway...
    endpoints: tuple[Endpoint, ...] = ()
    tunnels: tuple[Tunnel, ...] = ()
    vpc_ranges: tuple[str, ...] = ()   # addresses inside the VPC (subnet and alias ranges)
    load_balancers: tuple[LoadBalancer, ...] = ()
    firewall: tuple[FirewallRule, ...] | None = None

    def __post_init__(self) -> None:
        validate_state(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VpcState":
        """Build and validate from the JSON-able dict form (the one that crosses Ray)."""
        known(data, _STATE_KEYS, "state")
        try:
            endpoints = []
            for i, e in enumerate(data.get("endpoints", [])):
                where = f"endpoints[{i}]"
                known(e, _ENDPOINT_KEYS, where)
                endpoints.append(Endpoint(
                    name=str(e["name"]), ip=str(e["ip"]), mac=str(e["mac"]).lower(),
                    port_name=str(e["port_name"]), ofport=e.get("ofport"),
                    routes=str_list(e.get("routes"), f"{where}.routes"), dpid=int(e.get("dpid", 1)),
                    gateway=e.get("gateway"), kind=str(e.get("kind", "node")),
                    tags=str_list(e.get("tags"), f"{where}.tags")))
            tunnels = []
            for i, t in enumerate(data.get("tunnels", [])):
                known(t, {"dpid", "remote_dpid", "port_name", "ofport"}, f"tunnels[{i}]")
                tunnels.append(Tunnel(dpid=int(t["dpid"]), remote_dpid=int(t["remote_dpid"]),
                                      port_name=str(t["port_name"]), ofport=t.get("ofport")))
            return cls(router_mac=str(data.get("router_mac", DEFAULT_ROUTER_MAC)).lower(),
                       gateways=tuple(str(g) for g in data["gateways"]),
                       endpoints=tuple(endpoints), tunnels=tuple(tunnels),
                       vpc_ranges=str_list(data.get("vpc_ranges"), "vpc_ranges"),
                       load_balancers=parse_load_balancers(data.get("load_balancers")),
                       firewall=parse_firewall(data.get("firewall")))
        except KeyError as exc:
            raise ConfigError(f"missing key {exc.args[0]!r}", field="state") from exc

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able dict form."""
        out: dict[str, Any] = {
            "router_mac": self.router_mac, "gateways": list(self.gateways),
            "endpoints": [{"name": e.name, "ip": e.ip, "mac": e.mac, "port_name": e.port_name,
                           "ofport": e.ofport, "routes": list(e.routes), "dpid": e.dpid,
                           "gateway": e.gateway, "kind": e.kind, "tags": list(e.tags)}
                          for e in self.endpoints],
            "tunnels": [{"dpid": t.dpid, "remote_dpid": t.remote_dpid, "port_name": t.port_name,
                         "ofport": t.ofport} for t in self.tunnels],
            "vpc_ranges": list(self.vpc_ranges),
            "load_balancers": [lb.to_dict() for lb in self.load_balancers],
        }
        if self.firewall is not None:
            out["firewall"] = [r.to_dict() for r in self.firewall]
        return out


def validate_state(state: VpcState) -> None:
    """Addresses parse, names are unique and no two endpoints claim the same destination."""
    if not MAC_RE.match(state.router_mac):
        raise ConfigError(f"bad MAC {state.router_mac!r}", field="router_mac")
    for i, gw in enumerate(state.gateways):
        parse_ip(gw, f"gateways[{i}]")
    for i, r in enumerate(state.vpc_ranges):
        parse_cidr(r, f"vpc_ranges[{i}]")
    names: set[str] = set()
    ports: set[tuple[int, str]] = set()
    claimed: dict[ipaddress.IPv4Network, str] = {}
    for i, ep in enumerate(state.endpoints):
        where = f"endpoints[{i}]"
        if ep.name in names:
            raise ConfigError(f"duplicate endpoint name {ep.name!r}", field=f"{where}.name")
        names.add(ep.name)
        if (ep.dpid, ep.port_name) in ports:
            raise ConfigError(f"port {ep.port_name} used twice", field=f"{where}.port_name")
        ports.add((ep.dpid, ep.port_name))
        if not MAC_RE.match(ep.mac):
            raise ConfigError(f"bad MAC {ep.mac!r}", field=f"{where}.mac")
        if ep.gateway is not None and ep.gateway not in state.gateways:
            raise ConfigError(f"gateway {ep.gateway} is not one of {list(state.gateways)}",
                              field=f"{where}.gateway")
        if ep.kind not in ENDPOINT_KINDS:
            raise ConfigError(f"must be one of {list(ENDPOINT_KINDS)}", field=f"{where}.kind")
        nets = [ipaddress.IPv4Network(f"{parse_ip(ep.ip, where + '.ip')}/32")]
        nets += [parse_cidr(r, f"{where}.routes[{j}]") for j, r in enumerate(ep.routes)]
        for net in nets:
            if net in claimed:
                raise ConfigError(f"{net} is already routed to {claimed[net]}", field=where)
            claimed[net] = ep.name
    for i, t in enumerate(state.tunnels):
        if (t.dpid, t.port_name) in ports:
            raise ConfigError(f"port {t.port_name} used twice", field=f"tunnels[{i}].port_name")
        ports.add((t.dpid, t.port_name))
    validate_load_balancers(state.load_balancers, state.endpoints, state.vpc_ranges)


def endpoint_ids(endpoints: Iterable[Endpoint]) -> dict[str, int]:
    """A stable id 1..65535 per endpoint: a hash of its name, so adding or removing other
    endpoints leaves it (and its conntrack zone) alone; collisions move on to the next free id,
    in name order."""
    ids: dict[str, int] = {}
    used: set[int] = set()
    for name in sorted(e.name for e in endpoints):
        i = zlib.crc32(name.encode()) % 0xFFFF + 1
        while i in used:
            i = i % 0xFFFF + 1
        used.add(i)
        ids[name] = i
    return ids


def endpoint_prefixes(ep: Endpoint) -> list[ipaddress.IPv4Network]:
    """The endpoint's own /32 followed by its routed ranges."""
    return [ipaddress.IPv4Network(f"{ep.ip}/32")] + [ipaddress.IPv4Network(r) for r in ep.routes]


def arp_responder(gateway: str, router_mac: str) -> FlowSpec:
    """Turn an ARP request for `gateway` into the reply, in the switch, back out the in_port."""
    return FlowSpec(
        TABLE_CLASSIFY, PRIO_ARP,
        {"eth_type": ETH_TYPE_ARP, "arp_op": ARP_REQUEST, "arp_tpa": gateway},
        (("move", "eth_src", "eth_dst", 48),
         ("set_field", "eth_src", router_mac),
         ("set_field", "arp_op", ARP_REPLY),
         ("move", "arp_sha", "arp_tha", 48),
         ("set_field", "arp_sha", router_mac),
         ("move", "arp_spa", "arp_tpa", 32),
         ("set_field", "arp_spa", gateway),
         ("output", IN_PORT)),
        note=f"arp {gateway}")


@dataclass(frozen=True)
class Program:
    """What one bridge needs: its flows and its groups."""

    flows: tuple[FlowSpec, ...]
    groups: tuple[GroupSpec, ...] = ()


def compute(state: VpcState, dpid: int = 1, ports: Mapping[str, int] | None = None) -> Program:
    """All flows and groups bridge `dpid` needs; endpoints whose port number is unknown yet
    are skipped."""
    ports = ports or {}
    ids = endpoint_ids(state.endpoints)

    def port_of(name: str, explicit: int | None) -> int | None:
        return explicit if explicit is not None else ports.get(name)

    flows: list[FlowSpec] = [
        FlowSpec(TABLE_CLASSIFY, PRIO_MISS, {}, (), note="classify miss: drop"),
        FlowSpec(TABLE_FW_EGRESS, PRIO_MISS, {}, (), note="fw egress miss: drop"),
        FlowSpec(TABLE_LB, PRIO_MISS, {}, (("goto", TABLE_ROUTE),), note="lb: not a load balancer"),
        FlowSpec(TABLE_LB_BACKEND, PRIO_MISS, {}, (), note="lb backend miss: drop"),
        FlowSpec(TABLE_ROUTE, PRIO_MISS, {}, (), note="route miss: drop"),
        FlowSpec(TABLE_CT_INGRESS, PRIO_MISS, {}, (), note="ct ingress miss: drop"),
        FlowSpec(TABLE_FW_INGRESS, PRIO_MISS, {}, (), note="fw ingress: implied deny"),
        FlowSpec(TABLE_DELIVER, PRIO_MISS, {}, (), note="deliver miss: drop"),
    ]
    flows += [arp_responder(gw, state.router_mac) for gw in dict.fromkeys(state.gateways)]

    tunnel_to: dict[int, int] = {}
    for t in state.tunnels:
        port = port_of(t.port_name, t.ofport)
        if t.dpid != dpid or port is None:
            continue
        tunnel_to[t.remote_dpid] = port
        flows += [FlowSpec(TABLE_CLASSIFY, PRIO_TUNNEL,
                           {"in_port": port, "eth_type": ETH_TYPE_IP, "eth_src": state.router_mac},
                           (("goto", TABLE_CT_INGRESS),), note=f"from tunnel {t.port_name}"),
                  FlowSpec(TABLE_CLASSIFY, PRIO_TUNNEL_REFUSED, {"in_port": port}, (),
                           note=f"from tunnel {t.port_name}: not the VPC router's, refused")]

    local: list[tuple[Endpoint, int]] = []
    hops: dict[str, tuple[Action, ...]] = {}  # endpoint name -> router hop actions from here
    for ep in state.endpoints:
        ep_id = ids[ep.name]
        macs: tuple[Action, ...] = (("set_field", "eth_src", state.router_mac),
                                    ("set_field", "eth_dst", ep.mac), ("dec_ttl",))
        if ep.dpid == dpid:
            port = port_of(ep.port_name, ep.ofport)
            if port is None:
                continue
            local.append((ep, ep_id))
            hops[ep.name] = macs + (("goto", TABLE_CT_INGRESS),)
            flows += [
                FlowSpec(TABLE_CLASSIFY, PRIO_INGRESS,
                         {"in_port": port, "eth_type": ETH_TYPE_IP, "eth_dst": state.router_mac},
                         (("set_field", REG_SRC, ep_id), ct(ep_id, table=TABLE_FW_EGRESS)),
                         note=f"from {ep.name}"),
                FlowSpec(TABLE_CT_INGRESS, PRIO_DELIVER, {"eth_type": ETH_TYPE_IP, "eth_dst": ep.mac},
                         (("set_field", REG_DST, ep_id), ct(ep_id, table=TABLE_FW_INGRESS)),
                         note=f"to {ep.name}"),
                FlowSpec(TABLE_DELIVER, PRIO_DELIVER, {"eth_dst": ep.mac}, (("output", port),),
                         note=f"deliver {ep.name}"),
            ]
        elif ep.dpid in tunnel_to:
            hops[ep.name] = macs + (("output", tunnel_to[ep.dpid]),)
        else:
            continue
        for net in endpoint_prefixes(ep):
            flows.append(FlowSpec(TABLE_ROUTE, PRIO_ROUTE_BASE + net.prefixlen,
                                  {"eth_type": ETH_TYPE_IP, "ipv4_dst": prefix(net)},
                                  hops[ep.name], note=f"route {net} -> {ep.name}"))
        if ep.kind in INSTANCE_KINDS:
            flows.append(FlowSpec(TABLE_LB_BACKEND, PRIO_DELIVER, {"eth_type": ETH_TYPE_IP, REG_LB: ep_id},
                                  hops[ep.name], note=f"lb backend {ep.name}"))

    flows += firewall_flows(state.firewall, local)
    lb_flows, groups = lb_program(state.load_balancers, state.endpoints, ids, set(hops), state.vpc_ranges)
    flows += lb_flows
    flows = list(dict.fromkeys(flows))  # one rule's expansions may repeat a flow exactly
    _check_unique(flows, groups)
    return Program(tuple(flows), tuple(groups))


def compute_flows(state: VpcState, dpid: int = 1, ports: Mapping[str, int] | None = None) -> list[FlowSpec]:
    """The flows of `compute`."""
    return list(compute(state, dpid, ports).flows)


def compute_groups(state: VpcState, dpid: int = 1, ports: Mapping[str, int] | None = None) -> list[GroupSpec]:
    """The groups of `compute`."""
    return list(compute(state, dpid, ports).groups)


def _check_unique(flows: Sequence[FlowSpec], groups: Sequence[GroupSpec] = ()) -> None:
    """Two flows in one slot would silently replace each other: a bug in the state or here."""
    seen: dict[tuple[Any, ...], FlowSpec] = {}
    for f in flows:
        if f.slot in seen:
            raise ConfigError(f"flows {seen[f.slot].note!r} and {f.note!r} collide", field="state")
        seen[f.slot] = f
    ids: dict[int, GroupSpec] = {}
    for g in groups:
        if ids.setdefault(g.group_id, g) is not g:
            raise ConfigError(f"groups {ids[g.group_id].name!r} and {g.name!r} hash to one id", field="state")


@dataclass(frozen=True)
class FlowDiff:
    """What to send to go from one flow set to another: adds first, then deletes by cookie."""

    add: tuple[FlowSpec, ...]
    delete: tuple[int, ...]

    def __bool__(self) -> bool:
        return bool(self.add or self.delete)


def diff_flows(old: Iterable[FlowSpec | int], new: Iterable[FlowSpec]) -> FlowDiff:
    """Flows to add and cookies to delete; `old` may be cookies read back from a switch.

    Adding first is safe: a changed flow keeps its slot, so the add replaces it in place
    (no gap in forwarding) and the later delete by the old cookie finds nothing.
    """
    old_cookies = {f.cookie if isinstance(f, FlowSpec) else int(f) for f in old}
    new_by = {f.cookie: f for f in new}
    return FlowDiff(add=tuple(f for c, f in new_by.items() if c not in old_cookies),
                    delete=tuple(sorted(c for c in old_cookies if c not in new_by)))


@dataclass(frozen=True)
class GroupDiff:
    """Groups to add (before the flows that use them) and ids to delete (after the flows)."""

    add: tuple[GroupSpec, ...]
    delete: tuple[int, ...]

    def __bool__(self) -> bool:
        return bool(self.add or self.delete)


def diff_groups(old: Iterable[GroupSpec | int], new: Iterable[GroupSpec]) -> GroupDiff:
    """Like `diff_flows`, by group id (a hash of the content): `old` may be ids from a switch."""
    old_ids = {g.group_id if isinstance(g, GroupSpec) else int(g) for g in old}
    new_by = {g.group_id: g for g in new}
    return GroupDiff(add=tuple(g for i, g in new_by.items() if i not in old_ids),
                     delete=tuple(sorted(i for i in old_ids if i not in new_by)))
