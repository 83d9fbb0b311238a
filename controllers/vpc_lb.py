"""Passthrough load balancers (GCP external / internal passthrough Network Load Balancers).

A forwarding rule (IP, protocol, ports) sends each connection to one backend node with
the destination IP unchanged; the node accepts the LB IP locally (on GKE, kube-proxy's
rules do). Like GCP, the choice is made in two parts (table 20):

1. **Connection tracking.** The sender's conntrack entry (its zone, see `vpc_firewall`)
   carries the chosen backend's id in `ct_mark`. A packet whose entry has a mark goes to
   that backend (table 25), whatever the group currently holds: existing connections do
   not move when the backend list changes. GCP's default connection persistence is
   followed: TCP connections stay on their backend even when it turns unhealthy (as long
   as the endpoint exists); UDP flows whose backend left the healthy list are re-balanced.
2. **Selection** for unmarked packets: an OpenFlow SELECT group, one bucket per eligible
   backend; a bucket sets reg7 and ends in `ct(commit, zone=reg6, exec(ct_mark := id),
   table=25)`. (OVS runs bucket actions as an OpenFlow action *set*: set-fields plus only
   one of output/group/resubmit/ct survive, so the commit must be that one.) No
   `selection_method` is given, so OVS (3.1, `group_set_selection_method`) uses `dp_hash`
   with the symmetric L4 hash (`hash(sym_l4(0))`: addresses, protocol and ports) mapped
   onto hash slots; every packet of one 5-tuple picks the same bucket (seen in the
   datapath: `hash(sym_l4(0)),recirc(...)`, then a match on `dp_hash`). OVS uses
   max(16, next power of two) slots, which would give 6 backends 3,3,3,3,2,2 of 16
   (18.8% against 12.5% of the connections): the adapter repeats each bucket so that
   every backend gets within one slot of 256 (`vpc_app.bucket_copies`). A changed
   backend list is a new group here (group ids are content hashes; the select flows move
   to it, the old group is deleted after them), and OVS also rebuilds the slot map when
   a group's buckets are modified: it is not consistent hashing, many 5-tuples map to
   another bucket. Hence step 1. Limits: the pin lives in the conntrack of the client's
   bridge; when that OVS restarts or the entry expires (a TCP connection idle past the
   userspace conntrack timeouts), the next packet is hashed again: same backend if the
   group did not change, else possibly another one (which answers with a RST).

Eligible backends: `backends` (the healthy nodes, in order). When none is healthy, GCP
distributes new connections among all backends as a last resort ("Traffic distribution
for external passthrough Network Load Balancers" / "... internal ...": when all backends
are unhealthy every backend is eligible), so the group then holds `all_backends`
(default: every endpoint of kind `node`, the instance groups GKE attaches). With no
backend at all, packets are dropped.

`internal` forwarding rules accept only sources inside the state's `vpc_ranges`; other
sources, and other protocols or ports on a load balancer's IP, are dropped.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from emulator.errors import ConfigError

from controllers.vpc_types import (
    ETH_TYPE_IP, IP_PROTO, REG_LB, REG_SRC, TABLE_LB, TABLE_LB_BACKEND, Endpoint, FlowSpec,
    GroupSpec, ct, known, one_of, parse_ip, port_masks, port_range, prefix, str_list,
)

PRIO_LB_NEW = 300      # no backend recorded yet: select one
PRIO_LB_PINNED = 200   # recorded backend, still eligible (per-backend counters)
PRIO_LB_KEEP = 100     # recorded backend no longer eligible: TCP keeps it, UDP re-selects
PRIO_LB_VIP = 10       # anything else to a load balancer's IP: drop

SCHEMES = ("external", "internal")
LB_PROTOCOLS = ("TCP", "UDP")


@dataclass(frozen=True)
class LoadBalancer:
    """A forwarding rule with its backend service."""

    name: str
    ip: str
    protocol: str                             # TCP | UDP
    ports: tuple[tuple[int, int], ...]        # port ranges (a single port is (p, p))
    scheme: str = "external"
    backends: tuple[str, ...] = ()            # endpoint names of the healthy backends, in order
    all_backends: tuple[str, ...] | None = None  # every backend (None: every `node` endpoint)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "ip": self.ip, "protocol": self.protocol,
            "ports": [lo if lo == hi else f"{lo}-{hi}" for lo, hi in self.ports],
            "scheme": self.scheme, "backends": list(self.backends)}
        if self.all_backends is not None:
            out["all_backends"] = list(self.all_backends)
        return out

    def eligible(self, endpoints: Sequence[Endpoint]) -> tuple[str, ...]:
        """Backends new connections may go to: the healthy ones, else all of them."""
        if self.backends:
            return self.backends
        if self.all_backends is not None:
            return self.all_backends
        return tuple(e.name for e in endpoints if e.kind == "node")


_LB_KEYS = {"name", "ip", "protocol", "ports", "scheme", "backends", "all_backends"}


def parse_load_balancers(data: Any) -> tuple[LoadBalancer, ...]:
    """The state's `load_balancers` list (field errors name the entry)."""
    if data is None:
        return ()
    if not isinstance(data, (list, tuple)):
        raise ConfigError("expected a list", field="load_balancers")
    out = []
    for i, raw in enumerate(data):
        where = f"load_balancers[{i}]"
        known(raw, _LB_KEYS, where)
        for key in ("name", "ip", "ports"):
            if key not in raw:
                raise ConfigError(f"missing key {key!r}", field=where)
        protocol = one_of(raw, "protocol", "TCP", LB_PROTOCOLS, where, upper=True)
        scheme = one_of(raw, "scheme", "external", SCHEMES, where)
        ports_raw = raw["ports"]
        if isinstance(ports_raw, (str, int)) or not isinstance(ports_raw, (list, tuple)) or not ports_raw:
            raise ConfigError("expected a non-empty list", field=f"{where}.ports")
        ports = tuple(port_range(p, f"{where}.ports[{k}]") for k, p in enumerate(ports_raw))
        if any(lo == 0 for lo, _ in ports):
            raise ConfigError("port 0 is not a port", field=f"{where}.ports")
        all_raw = raw.get("all_backends")
        out.append(LoadBalancer(
            name=str(raw["name"]), ip=parse_ip(str(raw["ip"]), f"{where}.ip"), protocol=protocol,
            ports=ports, scheme=scheme, backends=str_list(raw.get("backends"), f"{where}.backends"),
            all_backends=None if all_raw is None else str_list(all_raw, f"{where}.all_backends")))
    return tuple(out)


def validate_load_balancers(lbs: Sequence[LoadBalancer], endpoints: Sequence[Endpoint],
                            vpc_ranges: Sequence[str]) -> None:
    """Names unique, backends exist, IPs claimed by no endpoint, no two rules on one port."""
    names = {e.name for e in endpoints}
    claimed = [(ipaddress.IPv4Network(r), e.name) for e in endpoints for r in (f"{e.ip}/32", *e.routes)]
    seen: set[str] = set()
    ports: dict[tuple[str, str, int], str] = {}
    schemes: dict[str, str] = {}
    for i, lb in enumerate(lbs):
        where = f"load_balancers[{i}]"
        if lb.name in seen:
            raise ConfigError(f"duplicate load balancer name {lb.name!r}", field=f"{where}.name")
        seen.add(lb.name)
        for key in ("backends", "all_backends"):
            for j, b in enumerate(getattr(lb, key) or ()):
                if b not in names:
                    raise ConfigError(f"no endpoint named {b!r}", field=f"{where}.{key}[{j}]")
        addr = ipaddress.IPv4Address(lb.ip)
        for net, owner in claimed:
            if addr in net:
                raise ConfigError(f"{lb.ip} is already routed to {owner}", field=f"{where}.ip")
        if schemes.setdefault(lb.ip, lb.scheme) != lb.scheme:
            raise ConfigError(f"{lb.ip} is used by both an internal and an external load balancer",
                              field=f"{where}.scheme")
        if lb.scheme == "internal" and not vpc_ranges:
            raise ConfigError("an internal load balancer needs the state's vpc_ranges", field=f"{where}.scheme")
        for lo, hi in lb.ports:
            for p in range(lo, hi + 1):
                other = ports.setdefault((lb.ip, lb.protocol, p), lb.name)
                if other != lb.name:
                    raise ConfigError(f"{lb.protocol} {lb.ip}:{p} is also served by {other!r}",
                                      field=f"{where}.ports")


def lb_program(lbs: Sequence[LoadBalancer], endpoints: Sequence[Endpoint], ids: Mapping[str, int],
               reachable: set[str], vpc_ranges: Sequence[str]) -> tuple[list[FlowSpec], list[GroupSpec]]:
    """Table 20 flows and the SELECT groups of every load balancer (the same on every bridge,
    except that backends this bridge cannot reach yet are left out)."""
    flows: list[FlowSpec] = []
    groups: list[GroupSpec] = []
    sources: list[str | None] = [prefix(n) for n in ipaddress.collapse_addresses(
        ipaddress.IPv4Network(r) for r in vpc_ranges)]
    for lb in lbs:
        eligible = [b for b in dict.fromkeys(lb.eligible(endpoints)) if b in reachable]
        group = None
        if eligible:
            group = GroupSpec(lb.name, tuple(
                (("set_field", REG_LB, ids[b]), ct(REG_SRC, commit=True, table=TABLE_LB_BACKEND, mark=ids[b]))
                for b in eligible), bucket_notes=tuple(eligible))
            groups.append(group)
        select = (("group", group.group_id),) if group else ()
        l4 = IP_PROTO[lb.protocol.lower()]
        field = f"{lb.protocol.lower()}_dst"
        for src in (sources if lb.scheme == "internal" else [None]):
            for lo, hi in lb.ports:
                for port in port_masks(lo, hi):
                    base: dict[str, Any] = {"eth_type": ETH_TYPE_IP, "ipv4_dst": lb.ip, "ip_proto": l4, field: port}
                    if src is not None:
                        base["ipv4_src"] = src
                    flows.append(FlowSpec(TABLE_LB, PRIO_LB_NEW, dict(base, ct_mark=0), select,
                                          note=f"lb {lb.name}: select" if group else f"lb {lb.name}: no backend"))
                    for b in eligible:
                        flows.append(FlowSpec(TABLE_LB, PRIO_LB_PINNED, dict(base, ct_mark=ids[b]),
                                              (("set_field", REG_LB, ids[b]), ("goto", TABLE_LB_BACKEND)),
                                              note=f"lb {lb.name} -> {b}"))
                    if lb.protocol == "TCP":  # GCP: TCP connections persist on unhealthy backends
                        keep = (("move", "ct_mark", REG_LB, 32), ("goto", TABLE_LB_BACKEND))
                        flows.append(FlowSpec(TABLE_LB, PRIO_LB_KEEP, base, keep, note=f"lb {lb.name}: keep backend"))
                    else:                     # ... UDP ones do not
                        flows.append(FlowSpec(TABLE_LB, PRIO_LB_KEEP, base, select, note=f"lb {lb.name}: re-select"))
    for ip in dict.fromkeys(lb.ip for lb in lbs):
        flows.append(FlowSpec(TABLE_LB, PRIO_LB_VIP, {"eth_type": ETH_TYPE_IP, "ipv4_dst": ip}, (),
                              note=f"lb ip {ip}: other traffic dropped"))
    return flows, groups
