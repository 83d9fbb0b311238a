"""Pure core of the VPC router, the stand-in for a GCP VPC network: state in, flows out.

No OpenFlow and no I/O here: `compute_flows` turns a `VpcState` into `FlowSpec`s for one
bridge, `diff_flows` says which to add and delete, and `controllers.vpc_app` (the thin
os-ken adapter) turns them into OpenFlow 1.3 messages. `controllers.flow_sim` traces
packets through the same specs in unit tests.

The VPC is L3 like GCP's: hosts have /32 addresses and a gateway; the fabric answers ARP
for gateway addresses itself (an OVS flow rewrites the request into the reply) and routes
each endpoint's IP and its routed ranges (GKE alias IP ranges) to it, rewriting MACs and
decrementing the TTL. Nothing floods; anything not routed is dropped.

Pipeline (one table per concern, so later issues add tables, not special cases):
  0  INGRESS   ARP responder; IPv4 from local endpoints -> FIREWALL; from tunnels -> DELIVER
  10 FIREWALL  extension point (VPC firewall rules, stateful with ct()); now: pass
  20 LB        extension point (forwarding rules: VIP -> select group / hash per connection,
               destination IP kept, like GCP passthrough LBs); now: pass
  30 ROUTE     longest-prefix match on ipv4_dst -> set MACs, dec TTL, output (or tunnel)
  40 DELIVER   packets routed by another machine's bridge: output by eth_dst
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from emulator.errors import ConfigError

TABLE_INGRESS = 0
TABLE_FIREWALL = 10
TABLE_LB = 20
TABLE_ROUTE = 30
TABLE_DELIVER = 40

PRIO_MISS = 0
PRIO_INGRESS = 100
PRIO_ARP = 200
PRIO_ROUTE_BASE = 100  # + prefix length: longest prefix wins
PRIO_DELIVER = 100

ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ARP_REQUEST, ARP_REPLY = 1, 2

COOKIE_TAG = 0x6B75  # "ku": top 16 bits of every cookie this app installs
COOKIE_TAG_SHIFT = 48
COOKIE_TAG_MASK = 0xFFFF << COOKIE_TAG_SHIFT
IN_PORT = "in_port"  # output target meaning "back out of the port it came in on"

DEFAULT_ROUTER_MAC = "42:01:0a:80:00:01"  # GCP style: 42:01 + the gateway's address
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

# An action is a small tuple, readable in tests and turned into OpenFlow by the adapter:
#   ("output", port | IN_PORT)       ("set_field", field, value)   ("dec_ttl",)
#   ("move", src_field, dst_field, n_bits)                         ("goto", table)
# Later: ("group", group_id), ("ct", ...), ("controller",).
Action = tuple[Any, ...]


@dataclass(frozen=True, eq=False)
class FlowSpec:
    """One flow entry: match fields use os-ken OFPMatch names; masked IPs are `a.b.c.d/len`."""

    table: int
    priority: int
    match: Mapping[str, Any]
    actions: tuple[Action, ...]
    note: str = ""
    cookie: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "match", dict(self.match))
        object.__setattr__(self, "actions", tuple(tuple(a) for a in self.actions))
        digest = hashlib.sha1(repr(self.key).encode()).digest()
        object.__setattr__(self, "cookie", (COOKIE_TAG << COOKIE_TAG_SHIFT)
                           | int.from_bytes(digest[:6], "big"))

    @property
    def key(self) -> tuple[Any, ...]:
        """Identity of the flow's content; the cookie is a hash of it."""
        return (self.table, self.priority, tuple(sorted(self.match.items())), self.actions)

    @property
    def slot(self) -> tuple[Any, ...]:
        """What OpenFlow considers the same entry: table, priority and match."""
        return (self.table, self.priority, tuple(sorted(self.match.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlowSpec) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"table": self.table, "priority": self.priority, "match": dict(self.match),
                "actions": [list(a) for a in self.actions], "note": self.note, "cookie": self.cookie}


@dataclass(frozen=True)
class Endpoint:
    """A host on the fabric: a node's or VM's eth0, or an internet host."""

    name: str
    ip: str
    mac: str
    port_name: str
    ofport: int | None = None
    routes: tuple[str, ...] = ()  # CIDRs routed to it (GKE alias IP ranges: the pod range)
    dpid: int = 1                 # the bridge (machine) its port is on
    gateway: str | None = None    # the gateway it uses (must be one of the state's gateways)


@dataclass(frozen=True)
class Tunnel:
    """A port on bridge `dpid` that reaches bridge `remote_dpid` (VXLAN between machines)."""

    dpid: int
    remote_dpid: int
    port_name: str
    ofport: int | None = None


@dataclass(frozen=True)
class VpcState:
    """Everything the VPC router needs; later issues add firewall rules and load balancers."""

    router_mac: str
    gateways: tuple[str, ...]     # answered by ARP: VPC subnet gateway, internet range gateway...
    endpoints: tuple[Endpoint, ...] = ()
    tunnels: tuple[Tunnel, ...] = ()

    def __post_init__(self) -> None:
        validate_state(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VpcState":
        """Build and validate from the JSON-able dict form (the one that crosses Ray)."""
        _known(data, {"router_mac", "gateways", "endpoints", "tunnels"}, "state")
        try:
            endpoints = []
            for i, e in enumerate(data.get("endpoints", [])):
                _known(e, {"name", "ip", "mac", "port_name", "ofport", "routes", "dpid", "gateway"},
                       f"endpoints[{i}]")
                endpoints.append(Endpoint(
                    name=str(e["name"]), ip=str(e["ip"]), mac=str(e["mac"]).lower(),
                    port_name=str(e["port_name"]), ofport=e.get("ofport"),
                    routes=tuple(str(r) for r in e.get("routes", ())), dpid=int(e.get("dpid", 1)),
                    gateway=e.get("gateway")))
            tunnels = []
            for i, t in enumerate(data.get("tunnels", [])):
                _known(t, {"dpid", "remote_dpid", "port_name", "ofport"}, f"tunnels[{i}]")
                tunnels.append(Tunnel(dpid=int(t["dpid"]), remote_dpid=int(t["remote_dpid"]),
                                      port_name=str(t["port_name"]), ofport=t.get("ofport")))
            return cls(router_mac=str(data.get("router_mac", DEFAULT_ROUTER_MAC)).lower(),
                       gateways=tuple(str(g) for g in data["gateways"]),
                       endpoints=tuple(endpoints), tunnels=tuple(tunnels))
        except KeyError as exc:
            raise ConfigError(f"missing key {exc.args[0]!r}", field="state") from exc

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able dict form."""
        return {
            "router_mac": self.router_mac, "gateways": list(self.gateways),
            "endpoints": [{"name": e.name, "ip": e.ip, "mac": e.mac, "port_name": e.port_name,
                           "ofport": e.ofport, "routes": list(e.routes), "dpid": e.dpid,
                           "gateway": e.gateway}
                          for e in self.endpoints],
            "tunnels": [{"dpid": t.dpid, "remote_dpid": t.remote_dpid, "port_name": t.port_name,
                         "ofport": t.ofport} for t in self.tunnels],
        }


def _known(data: Mapping[str, Any], keys: set[str], where: str) -> None:
    """Unknown keys are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError("expected a mapping", field=where)
    extra = sorted(set(data) - keys)
    if extra:
        raise ConfigError(f"unknown key {extra[0]!r}", field=where)


def validate_state(state: VpcState) -> None:
    """Addresses parse, names are unique and no two endpoints claim the same destination."""
    if not _MAC_RE.match(state.router_mac):
        raise ConfigError(f"bad MAC {state.router_mac!r}", field="router_mac")
    for i, gw in enumerate(state.gateways):
        _ip(gw, f"gateways[{i}]")
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
        if not _MAC_RE.match(ep.mac):
            raise ConfigError(f"bad MAC {ep.mac!r}", field=f"{where}.mac")
        if ep.gateway is not None and ep.gateway not in state.gateways:
            raise ConfigError(f"gateway {ep.gateway} is not one of {list(state.gateways)}",
                              field=f"{where}.gateway")
        nets = [ipaddress.IPv4Network(f"{_ip(ep.ip, where + '.ip')}/32")]
        for j, r in enumerate(ep.routes):
            try:
                nets.append(ipaddress.IPv4Network(r, strict=True))
            except ValueError as exc:
                raise ConfigError(f"bad CIDR {r!r}: {exc}", field=f"{where}.routes[{j}]") from exc
        for net in nets:
            if net in claimed:
                raise ConfigError(f"{net} is already routed to {claimed[net]}", field=where)
            claimed[net] = ep.name
    for i, t in enumerate(state.tunnels):
        if (t.dpid, t.port_name) in ports:
            raise ConfigError(f"port {t.port_name} used twice", field=f"tunnels[{i}].port_name")
        ports.add((t.dpid, t.port_name))


def _ip(text: str, where: str) -> str:
    """An IPv4 address in canonical form, or a ConfigError naming the field."""
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError as exc:
        raise ConfigError(f"bad IPv4 address {text!r}", field=where) from exc


def _prefix(net: ipaddress.IPv4Network) -> str:
    """Match value for an IPv4 prefix: plain address for /32, `a.b.c.d/len` otherwise."""
    return str(net.network_address) if net.prefixlen == 32 else str(net)


def endpoint_prefixes(ep: Endpoint) -> list[ipaddress.IPv4Network]:
    """The endpoint's own /32 followed by its routed ranges."""
    return [ipaddress.IPv4Network(f"{ep.ip}/32")] + [ipaddress.IPv4Network(r) for r in ep.routes]


def arp_responder(gateway: str, router_mac: str) -> FlowSpec:
    """Turn an ARP request for `gateway` into the reply, in the switch, back out the in_port."""
    return FlowSpec(
        TABLE_INGRESS, PRIO_ARP,
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


def _route_actions(router_mac: str, mac: str, port: int) -> tuple[Action, ...]:
    """Actions of a router hop: new MACs, TTL - 1, out of `port`."""
    return (("set_field", "eth_src", router_mac), ("set_field", "eth_dst", mac),
            ("dec_ttl",), ("output", port))


def compute_flows(state: VpcState, dpid: int = 1,
                  ports: Mapping[str, int] | None = None) -> list[FlowSpec]:
    """All flows bridge `dpid` needs; endpoints whose port number is unknown yet are skipped."""
    ports = ports or {}

    def port_of(name: str, explicit: int | None) -> int | None:
        return explicit if explicit is not None else ports.get(name)

    flows: list[FlowSpec] = [
        FlowSpec(TABLE_INGRESS, PRIO_MISS, {}, (), note="ingress miss: drop"),
        FlowSpec(TABLE_FIREWALL, PRIO_MISS, {}, (("goto", TABLE_LB),), note="firewall: pass"),
        FlowSpec(TABLE_LB, PRIO_MISS, {}, (("goto", TABLE_ROUTE),), note="lb: pass"),
        FlowSpec(TABLE_ROUTE, PRIO_MISS, {}, (), note="route miss: drop"),
        FlowSpec(TABLE_DELIVER, PRIO_MISS, {}, (), note="deliver miss: drop"),
    ]
    flows += [arp_responder(gw, state.router_mac) for gw in dict.fromkeys(state.gateways)]

    tunnel_to: dict[int, int] = {}
    for t in state.tunnels:
        port = port_of(t.port_name, t.ofport)
        if t.dpid != dpid or port is None:
            continue
        tunnel_to[t.remote_dpid] = port
        flows.append(FlowSpec(TABLE_INGRESS, PRIO_INGRESS, {"in_port": port, "eth_type": ETH_TYPE_IP},
                              (("goto", TABLE_DELIVER),), note=f"from tunnel {t.port_name}"))

    for ep in state.endpoints:
        if ep.dpid == dpid:
            port = port_of(ep.port_name, ep.ofport)
            if port is None:
                continue
            flows.append(FlowSpec(
                TABLE_INGRESS, PRIO_INGRESS,
                {"in_port": port, "eth_type": ETH_TYPE_IP, "eth_dst": state.router_mac},
                (("goto", TABLE_FIREWALL),), note=f"from {ep.name}"))
            flows.append(FlowSpec(TABLE_DELIVER, PRIO_DELIVER, {"eth_dst": ep.mac},
                                  (("output", port),), note=f"deliver {ep.name}"))
        else:
            port = tunnel_to.get(ep.dpid)
            if port is None:
                continue
        for net in endpoint_prefixes(ep):
            flows.append(FlowSpec(
                TABLE_ROUTE, PRIO_ROUTE_BASE + net.prefixlen,
                {"eth_type": ETH_TYPE_IP, "ipv4_dst": _prefix(net)},
                _route_actions(state.router_mac, ep.mac, port), note=f"route {net} -> {ep.name}"))
    _check_unique(flows)
    return flows


def _check_unique(flows: Sequence[FlowSpec]) -> None:
    """Two flows in one slot would silently replace each other: a bug in the state or here."""
    seen: dict[tuple[Any, ...], FlowSpec] = {}
    for f in flows:
        if f.slot in seen:
            raise ConfigError(f"flows {seen[f.slot].note!r} and {f.note!r} collide", field="state")
        seen[f.slot] = f


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
