"""VPC firewall rules, GCP semantics, as stateful OpenFlow flows (tables 10 and 45).

How GCP evaluates them, and how the flows do the same:

* Rules apply to instances (endpoints of kind `node` or `vm`); internet hosts and probers
  have no firewall. Egress rules are evaluated for the sender, ingress rules for the
  receiver; `target_tags` pick instances by network tag, no tags means every instance.
* Stateful: every endpoint has its own connection-tracking zone (its id), used for its
  egress on its own bridge (table 0 -> 10) and for its ingress on its own bridge
  (table 40 -> 45). A reply therefore meets the entry its connection's first packet
  committed, in both directions, even when the peers sit on different bridges.
  `+est`/`+rel` pass, `+inv` is dropped, `+new` is evaluated against the rules and
  committed when allowed.
* Lowest priority number wins; at equal priority deny wins over allow. OpenFlow wants
  the opposite order in 16 bits, so the distinct (priority, deny-first) pairs of the
  whole state are ranked and each rank gets one OpenFlow priority (the same on every
  bridge). Flows expanded from one rule (ranges x protocols x port masks x targets) share
  its priority and its action.
* Implied rules: egress allow-all and ingress deny-all at 65535 (below every rule). When
  the state has no `firewall` key at all, nothing is enforced (everything is allowed,
  still tracked), which keeps states written before firewall rules existed working.
* Port ranges become value/mask matches (30000-32767: five flows); a range covering
  1-65535 needs no port match at all (port 0 carries no traffic), one flow instead of 16.
* Sources of ingress rules match the packet's source IP, destinations its destination IP
  (for load-balanced traffic that is the load balancer's IP: passthrough). Ingress is
  evaluated after the load balancer chose a backend, for that backend.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from emulator.errors import ConfigError

from controllers.vpc_types import (
    ETH_TYPE_IP, INSTANCE_KINDS, IP_PROTO, REG_DST, REG_SRC, TABLE_DELIVER, TABLE_FW_EGRESS,
    TABLE_FW_INGRESS, TABLE_LB, Action, Endpoint, FlowSpec, ct, ct_state, known, parse_cidr,
    one_of, port_masks, port_range, prefix, str_list,
)

PRIO_FW_INVALID = 65000
PRIO_FW_TRACKED = 64000   # +est / +rel
PRIO_FW_OPEN = 63000      # receivers without a firewall (internet hosts, probers, disabled)
PRIO_FW_RULE_TOP = 60000  # rank 0; rank r gets PRIO_FW_RULE_TOP - r
PRIO_FW_IMPLIED = 1       # egress allow-all (ingress deny-all is the table miss)

NEW = ct_state("+trk+new")
DIRECTIONS = ("ingress", "egress")
ACTIONS = ("allow", "deny")
PROTOCOLS = ("tcp", "udp", "icmp", "all")
MAX_GCP_PRIORITY = 65535


@dataclass(frozen=True)
class ProtoPorts:
    """One entry of a rule's protocol list: a protocol and port ranges (empty: all ports)."""

    protocol: str
    ports: tuple[tuple[int, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": self.protocol}
        if self.ports:
            out["ports"] = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ports]
        return out


@dataclass(frozen=True)
class FirewallRule:
    """A VPC firewall rule (the fields of a GCP firewall rule kubemu models)."""

    name: str
    direction: str = "ingress"
    action: str = "allow"
    priority: int = 1000
    source_ranges: tuple[str, ...] = ()       # empty: any source
    destination_ranges: tuple[str, ...] = ()  # empty: any destination
    target_tags: tuple[str, ...] = ()         # empty: every instance
    protocols: tuple[ProtoPorts, ...] = (ProtoPorts("all"),)

    @property
    def rank_key(self) -> tuple[int, int]:
        """Sort key of precedence: lower priority number first, deny before allow."""
        return (self.priority, 0 if self.action == "deny" else 1)

    def applies_to(self, ep: Endpoint) -> bool:
        """True when the rule targets this endpoint (an instance with a matching tag)."""
        return ep.kind in INSTANCE_KINDS and (not self.target_tags or bool(set(self.target_tags) & set(ep.tags)))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "direction": self.direction, "action": self.action,
                "priority": self.priority, "source_ranges": list(self.source_ranges),
                "destination_ranges": list(self.destination_ranges),
                "target_tags": list(self.target_tags), "protocols": [p.to_dict() for p in self.protocols]}


_RULE_KEYS = {"name", "direction", "action", "priority", "source_ranges", "destination_ranges",
              "target_tags", "protocols"}


def parse_firewall(data: Any) -> tuple[FirewallRule, ...] | None:
    """The state's `firewall` list (None: no firewall enforced at all)."""
    if data is None:
        return None
    if not isinstance(data, (list, tuple)):
        raise ConfigError("expected a list of rules", field="firewall")
    rules = []
    names: set[str] = set()
    for i, raw in enumerate(data):
        where = f"firewall[{i}]"
        known(raw, _RULE_KEYS, where)
        if "name" not in raw:
            raise ConfigError("missing key 'name'", field=where)
        rule = _parse_rule(raw, where)
        if rule.name in names:
            raise ConfigError(f"duplicate rule name {rule.name!r}", field=f"{where}.name")
        names.add(rule.name)
        rules.append(rule)
    return tuple(rules)


def _parse_rule(raw: Mapping[str, Any], where: str) -> FirewallRule:
    direction = one_of(raw, "direction", "ingress", DIRECTIONS, where)
    action = one_of(raw, "action", "allow", ACTIONS, where)
    priority = raw.get("priority", 1000)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_GCP_PRIORITY:
        raise ConfigError(f"priority must be an integer 0..{MAX_GCP_PRIORITY}", field=f"{where}.priority")
    ranges = {}
    for key in ("source_ranges", "destination_ranges"):
        items = str_list(raw.get(key), f"{where}.{key}")
        ranges[key] = tuple(str(parse_cidr(r, f"{where}.{key}[{j}]")) for j, r in enumerate(items))
    tags = str_list(raw.get("target_tags"), f"{where}.target_tags")
    protos_raw = raw.get("protocols", [{"protocol": "all"}])
    if not isinstance(protos_raw, (list, tuple)) or not protos_raw:
        raise ConfigError("expected a non-empty list", field=f"{where}.protocols")
    protocols = []
    for j, p in enumerate(protos_raw):
        pw = f"{where}.protocols[{j}]"
        known(p, {"protocol", "ports"}, pw)
        proto = str(p.get("protocol", "")).lower()
        if proto not in PROTOCOLS:
            raise ConfigError(f"protocol must be one of {list(PROTOCOLS)}", field=f"{pw}.protocol")
        ports_raw = p.get("ports") or []
        if isinstance(ports_raw, (str, int)) or not isinstance(ports_raw, (list, tuple)):
            raise ConfigError("expected a list", field=f"{pw}.ports")
        if ports_raw and proto not in ("tcp", "udp"):
            raise ConfigError(f"ports need tcp or udp, not {proto}", field=f"{pw}.ports")
        ports = tuple(port_range(x, f"{pw}.ports[{k}]") for k, x in enumerate(ports_raw))
        protocols.append(ProtoPorts(proto, ports))
    return FirewallRule(name=str(raw["name"]), direction=direction, action=action, priority=priority,
                        source_ranges=ranges["source_ranges"],
                        destination_ranges=ranges["destination_ranges"], target_tags=tags,
                        protocols=tuple(protocols))


def rule_priorities(rules: Iterable[FirewallRule]) -> dict[tuple[int, int], int]:
    """OpenFlow priority of each distinct (priority, deny-first) precedence in the state."""
    keys = sorted({r.rank_key for r in rules})
    if len(keys) > PRIO_FW_RULE_TOP - PRIO_FW_IMPLIED - 1:
        raise ConfigError("too many distinct firewall priorities", field="firewall")
    return {k: PRIO_FW_RULE_TOP - rank for rank, k in enumerate(keys)}


def _ranges(ranges: Sequence[str]) -> list[str | None]:
    """Match values for a list of CIDRs; None (no match field) when any of them is 0.0.0.0/0."""
    nets = [ipaddress.IPv4Network(r) for r in ranges]
    if not nets or any(n.prefixlen == 0 for n in nets):
        return [None]
    return [prefix(n) for n in ipaddress.collapse_addresses(nets)]


def _l4_matches(protocols: Sequence[ProtoPorts]) -> list[dict[str, Any]]:
    """Protocol/port match fragments of one rule (port ranges as value/mask pairs)."""
    out: list[dict[str, Any]] = []
    for p in protocols:
        if p.protocol == "all":
            return [{}]
        base = {"ip_proto": IP_PROTO[p.protocol]}
        if not p.ports or any(lo <= 1 and hi == 0xFFFF for lo, hi in p.ports):  # port 0 is no port
            out.append(base)
            continue
        for lo, hi in p.ports:
            out += [dict(base, **{f"{p.protocol}_dst": m}) for m in port_masks(lo, hi)]
    return out


def _allow_actions(direction: str) -> tuple[Action, ...]:
    """Commit the connection in the endpoint's zone and go on (egress: to the LB stage)."""
    if direction == "egress":
        return (ct(REG_SRC, commit=True, table=TABLE_LB),)
    return (ct(REG_DST, commit=True), ("goto", TABLE_DELIVER))


def firewall_flows(rules: tuple[FirewallRule, ...] | None,
                   local: Sequence[tuple[Endpoint, int]]) -> list[FlowSpec]:
    """Tables 10 (egress) and 45 (ingress) for the endpoints on this bridge, given as (endpoint, id)."""
    flows: list[FlowSpec] = []
    for table, name in ((TABLE_FW_EGRESS, "egress"), (TABLE_FW_INGRESS, "ingress")):
        nxt = ("goto", TABLE_LB if name == "egress" else TABLE_DELIVER)
        flows += [
            FlowSpec(table, PRIO_FW_INVALID, {"eth_type": ETH_TYPE_IP, "ct_state": ct_state("+trk+inv")}, (),
                     note=f"fw {name}: invalid: drop"),
            FlowSpec(table, PRIO_FW_TRACKED, {"eth_type": ETH_TYPE_IP, "ct_state": ct_state("+trk+est")},
                     (nxt,), note=f"fw {name}: established"),
            FlowSpec(table, PRIO_FW_TRACKED, {"eth_type": ETH_TYPE_IP, "ct_state": ct_state("+trk+rel")},
                     (nxt,), note=f"fw {name}: related"),
        ]
    flows.append(FlowSpec(TABLE_FW_EGRESS, PRIO_FW_IMPLIED, {"eth_type": ETH_TYPE_IP, "ct_state": NEW},
                          _allow_actions("egress"), note="fw egress: implied allow"))
    enforced = rules is not None
    for ep, ep_id in local:
        if not enforced or ep.kind not in INSTANCE_KINDS:
            flows.append(FlowSpec(TABLE_FW_INGRESS, PRIO_FW_OPEN,
                                  {"eth_type": ETH_TYPE_IP, "ct_state": NEW, REG_DST: ep_id},
                                  _allow_actions("ingress"), note=f"fw ingress: {ep.name} has no firewall"))
    if not rules:
        return flows
    prio = rule_priorities(rules)
    for rule in rules:
        targets = [(ep, ep_id) for ep, ep_id in local if rule.applies_to(ep)]
        if not targets:
            continue
        table = TABLE_FW_EGRESS if rule.direction == "egress" else TABLE_FW_INGRESS
        reg = REG_SRC if rule.direction == "egress" else REG_DST
        actions = _allow_actions(rule.direction) if rule.action == "allow" else ()
        # the rule's matches are the same for every target: computed once (1000 nodes: minutes otherwise)
        srcs, dsts, l4s = _ranges(rule.source_ranges), _ranges(rule.destination_ranges), _l4_matches(rule.protocols)
        for ep, ep_id in targets:
            for src in srcs:
                for dst in dsts:
                    for l4 in l4s:
                        match: dict[str, Any] = {"eth_type": ETH_TYPE_IP, "ct_state": NEW, reg: ep_id, **l4}
                        if src:
                            match["ipv4_src"] = src
                        if dst:
                            match["ipv4_dst"] = dst
                        flows.append(FlowSpec(table, prio[rule.rank_key], match, actions,
                                              note=f"fw {rule.name} ({rule.action}) {ep.name}"))
    return flows
