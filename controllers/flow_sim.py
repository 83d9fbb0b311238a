"""A fake OpenFlow switch: traces one packet through `FlowSpec`s, no OVS needed.

Used by unit tests to check the controller's decisions by behaviour (which port a packet
leaves by, with which headers) rather than by comparing flow lists. A packet is a dict
of OFPMatch field names (`in_port`, `eth_src`, `eth_dst`, `eth_type`, `ipv4_src`,
`ipv4_dst`, `ip_ttl`, `arp_op`, `arp_spa`, `arp_tpa`, `arp_sha`, `arp_tha`, ...).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from controllers.vpc_core import IN_PORT, FlowSpec

_IP_FIELDS = {"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa"}


@dataclass
class Trace:
    """What happened to a packet: the flows it hit and the copies that left the switch."""

    outputs: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    path: list[FlowSpec] = field(default_factory=list)
    ttl_expired: bool = False

    @property
    def dropped(self) -> bool:
        """True when no copy left the switch."""
        return not self.outputs


def field_matches(name: str, want: Any, have: Any) -> bool:
    """One match field against a packet value; IP fields accept `a.b.c.d/len` prefixes."""
    if have is None:
        return False
    if name in _IP_FIELDS:
        return ipaddress.IPv4Address(have) in ipaddress.IPv4Network(str(want), strict=False)
    if isinstance(want, str) and isinstance(have, str):
        return want.lower() == have.lower()
    return want == have


def flow_matches(flow: FlowSpec, packet: Mapping[str, Any]) -> bool:
    """True when every match field of the flow holds for the packet."""
    return all(field_matches(k, v, packet.get(k)) for k, v in flow.match.items())


def lookup(flows: Iterable[FlowSpec], table: int, packet: Mapping[str, Any]) -> FlowSpec | None:
    """Highest-priority matching flow in a table; equal-priority overlaps are an error."""
    hits = [f for f in flows if f.table == table and flow_matches(f, packet)]
    if not hits:
        return None
    best = max(f.priority for f in hits)
    top = [f for f in hits if f.priority == best]
    if len(top) > 1:
        raise AssertionError(f"ambiguous flows in table {table}: {[f.note for f in top]}")
    return top[0]


def trace(flows: Iterable[FlowSpec], packet: Mapping[str, Any], table: int = 0) -> Trace:
    """Run the packet through the pipeline from `table`, as OVS would."""
    flows = list(flows)
    pkt = dict(packet)
    result = Trace()
    while True:
        flow = lookup(flows, table, pkt)
        if flow is None:
            return result
        result.path.append(flow)
        next_table = None
        for action in flow.actions:
            kind = action[0]
            if kind == "output":
                port = pkt["in_port"] if action[1] == IN_PORT else action[1]
                if port == pkt["in_port"] and action[1] != IN_PORT:
                    continue  # OpenFlow never sends a packet back out its in_port implicitly
                result.outputs.append((port, dict(pkt)))
            elif kind == "set_field":
                pkt[action[1]] = action[2]
            elif kind == "move":
                pkt[action[2]] = pkt.get(action[1])
            elif kind == "dec_ttl":
                if pkt.get("ip_ttl", 64) <= 1:
                    result.ttl_expired = True
                    return result
                pkt["ip_ttl"] = pkt.get("ip_ttl", 64) - 1
            elif kind == "goto":
                if action[1] <= table:
                    raise AssertionError(f"goto {action[1]} from table {table} goes backwards")
                next_table = action[1]
            else:
                raise AssertionError(f"unknown action {action!r}")
        if next_table is None:
            return result
        table = next_table
