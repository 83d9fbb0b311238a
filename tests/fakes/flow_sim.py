"""A fake OpenFlow switch: traces one packet through `FlowSpec`s and `GroupSpec`s, no OVS needed.

Used by unit tests to check the controller's decisions by behaviour (which port a packet
leaves by, with which headers) rather than by comparing flow lists. A packet is a dict
of OFPMatch field names (`in_port`, `eth_src`, `eth_dst`, `eth_type`, `ipv4_src`,
`ipv4_dst`, `ip_ttl`, `ip_proto`, `tcp_src`, `tcp_dst`, `udp_src`, `udp_dst`, `arp_op`,
`arp_spa`, `arp_tpa`, `arp_sha`, `arp_tha`, ...). Registers, `ct_state` and `ct_mark`
start at 0 as in OVS.

Modelled OVS behaviour: goto/resubmit, SELECT groups (a bucket chosen by a hash of the
5-tuple, the same for every packet of a connection, like OVS's symmetric L4 hash; not
the same numbers as OVS), and conntrack: `ct(zone, table=T)` looks the packet up and
continues at T with `ct_state`/`ct_mark` set; `ct(commit)` records the connection; a
`ct` without table clears the ct fields for the rest of the pipeline (as OVS does).
A connection's orig-direction packets are `+new` until a reply was seen, then `+est`;
replies are `+est+rpl` (ICMP errors and `+rel`/`+inv` are not modelled).
"""
from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from controllers.vpc_sync import ADD_FLOW, ADD_GROUP, DELETE_FLOW, DELETE_GROUP, Change
from controllers.vpc_types import CT_EST, CT_NEW, CT_RPL, CT_TRK, IN_PORT, FlowSpec, GroupSpec

_IP_FIELDS = {"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa"}
_ZERO_DEFAULT = {"ct_state", "ct_mark", "ct_zone"} | {f"reg{i}" for i in range(16)}
_MAX_DEPTH = 64
_SET_ACTIONS = {"set_field", "move", "dec_ttl"}
_TERMINAL_ACTIONS = {"output", "group", "resubmit", "ct"}


@dataclass
class Conn:
    """One tracked connection: its orig-direction 5-tuple, mark and whether a reply was seen."""

    key: tuple[Any, ...]
    mark: int = 0
    replied: bool = False


def five_tuple(pkt: Mapping[str, Any]) -> tuple[Any, ...]:
    """(proto, src, dst, sport, dport) of an IPv4 packet (ports 0 when there are none)."""
    proto = pkt.get("ip_proto", 0)
    l4 = {6: "tcp", 17: "udp"}.get(proto)
    sport = pkt.get(f"{l4}_src", 0) if l4 else 0
    dport = pkt.get(f"{l4}_dst", 0) if l4 else 0
    return (proto, pkt.get("ipv4_src"), pkt.get("ipv4_dst"), sport, dport)


def _reverse(key: tuple[Any, ...]) -> tuple[Any, ...]:
    proto, src, dst, sport, dport = key
    return (proto, dst, src, dport, sport)


@dataclass
class Conntrack:
    """Connection tables by zone, shared by every packet sent through one `SimSwitch`."""

    zones: dict[int, dict[tuple[Any, ...], Conn]] = field(default_factory=dict)

    def lookup(self, zone: int, pkt: Mapping[str, Any]) -> tuple[int, Conn | None]:
        """(ct_state, connection) for a packet; updates `replied` like a real tracker."""
        table = self.zones.get(zone, {})
        key = five_tuple(pkt)
        if key in table:
            conn = table[key]
            return CT_TRK | (CT_EST if conn.replied else CT_NEW), conn
        if _reverse(key) in table:
            conn = table[_reverse(key)]
            conn.replied = True
            return CT_TRK | CT_EST | CT_RPL, conn
        return CT_TRK | CT_NEW, None

    def commit(self, zone: int, pkt: Mapping[str, Any], conn: Conn | None, mark: int | None) -> Conn:
        """Record the connection (if new) and set its mark."""
        if conn is None:
            conn = Conn(five_tuple(pkt))
            self.zones.setdefault(zone, {})[conn.key] = conn
        if mark is not None:
            conn.mark = mark
        return conn

    def marks(self, zone: int) -> dict[tuple[Any, ...], int]:
        """5-tuple -> ct_mark of every connection in a zone."""
        return {k: c.mark for k, c in self.zones.get(zone, {}).items()}


@dataclass
class Trace:
    """What happened to a packet: the flows it hit and the copies that left the switch."""

    outputs: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    path: list[FlowSpec] = field(default_factory=list)
    buckets: list[tuple[str, str]] = field(default_factory=list)  # (group name, bucket note)
    ttl_expired: bool = False

    @property
    def dropped(self) -> bool:
        """True when no copy left the switch."""
        return not self.outputs

    @property
    def notes(self) -> list[str]:
        """Notes of the flows hit, in order."""
        return [f.note for f in self.path]


def field_matches(name: str, want: Any, have: Any) -> bool:
    """One match field against a packet value; IP fields accept `a.b.c.d/len` prefixes,
    other fields `(value, mask)` tuples."""
    if have is None:
        return False
    if name in _IP_FIELDS:
        return ipaddress.IPv4Address(have) in ipaddress.IPv4Network(str(want), strict=False)
    if isinstance(want, tuple):
        value, mask = want
        return (int(have) & mask) == (value & mask)
    if isinstance(want, str) and isinstance(have, str):
        return want.lower() == have.lower()
    return want == have


def flow_matches(flow: FlowSpec, packet: Mapping[str, Any]) -> bool:
    """True when every match field of the flow holds for the packet."""
    return all(field_matches(k, v, packet.get(k, 0 if k in _ZERO_DEFAULT else None))
               for k, v in flow.match.items())


def lookup(flows: Iterable[FlowSpec], table: int, packet: Mapping[str, Any]) -> FlowSpec | None:
    """Highest-priority matching flow in a table; equal-priority overlaps with different
    actions are an error (OpenFlow leaves the choice undefined)."""
    hits = [f for f in flows if f.table == table and flow_matches(f, packet)]
    if not hits:
        return None
    best = max(f.priority for f in hits)
    top = [f for f in hits if f.priority == best]
    if len({f.actions for f in top}) > 1:
        raise AssertionError(f"ambiguous flows in table {table}: {[f.note for f in top]}")
    return top[0]


def bucket_index(pkt: Mapping[str, Any], n: int) -> int:
    """Which of `n` buckets a packet's connection lands in (symmetric in the two directions)."""
    proto, src, dst, sport, dport = five_tuple(pkt)
    ends = sorted([(str(src), sport), (str(dst), dport)])
    return zlib.crc32(repr((proto, ends)).encode()) % n


class _Run:
    """One packet's trip through the pipeline."""

    def __init__(self, flows: list[FlowSpec], groups: Mapping[int, GroupSpec], conntrack: Conntrack) -> None:
        self.flows, self.groups, self.ct = flows, groups, conntrack
        self.result = Trace()
        self.stopped = False

    def table(self, table: int, pkt: dict[str, Any], depth: int = 0) -> None:
        """Match in `table` and run the flow's actions (and its goto)."""
        if depth > _MAX_DEPTH:
            raise AssertionError("pipeline loops")
        flow = lookup(self.flows, table, pkt)
        if flow is None or self.stopped:
            return
        self.result.path.append(flow)
        gotos = [a for a in flow.actions if a[0] == "goto"]
        if gotos and gotos[-1] is not flow.actions[-1]:
            raise AssertionError(f"goto must be the last action: {flow.note}")
        for i, action in enumerate(flow.actions):
            if action[0] == "goto":
                if action[1] <= table:
                    raise AssertionError(f"goto {action[1]} from table {table} goes backwards")
                self.table(action[1], pkt, depth + 1)
            elif action[0] == "ct" and action[3] is not None:
                if i != len(flow.actions) - 1:
                    raise AssertionError(f"ct(table=...) must be the last action: {flow.note}")
                self.conntrack(action, pkt, depth)
            else:
                self.action(action, pkt, table, depth)
            if self.stopped:
                return

    def action(self, action: tuple[Any, ...], pkt: dict[str, Any], table: int, depth: int) -> None:
        kind = action[0]
        if kind == "output":
            port = pkt["in_port"] if action[1] == IN_PORT else action[1]
            if port == pkt["in_port"] and action[1] != IN_PORT:
                return  # OpenFlow never sends a packet back out its in_port implicitly
            self.result.outputs.append((port, {k: v for k, v in pkt.items() if not _internal(k)}))
        elif kind == "set_field":
            pkt[action[1]] = action[2]
        elif kind == "move":
            pkt[action[2]] = pkt.get(action[1], 0 if action[1] in _ZERO_DEFAULT else None)
        elif kind == "dec_ttl":
            if pkt.get("ip_ttl", 64) <= 1:
                self.result.ttl_expired = self.stopped = True
                return
            pkt["ip_ttl"] = pkt.get("ip_ttl", 64) - 1
        elif kind == "resubmit":
            self.table(action[1], pkt, depth + 1)
        elif kind == "group":
            group = self.groups.get(action[1])
            if group is None:
                raise AssertionError(f"flow uses missing group {action[1]}")
            if not group.buckets:
                return
            i = bucket_index(pkt, len(group.buckets))
            note = group.bucket_notes[i] if i < len(group.bucket_notes) else str(i)
            self.result.buckets.append((group.name, note))
            bucket = group.buckets[i]
            # OVS executes a bucket as an action set: header changes, then ONE of
            # output/group/resubmit/ct; anything else would be silently dropped by OVS.
            if any(a[0] not in _SET_ACTIONS for a in bucket[:-1]) or (
                    bucket and bucket[-1][0] not in _SET_ACTIONS | _TERMINAL_ACTIONS):
                raise AssertionError(f"bucket {bucket!r} is not a valid OVS action set")
            for a in bucket:
                self.action(a, pkt, table, depth)
                if self.stopped:
                    return
        elif kind == "ct":
            self.conntrack(action, pkt, depth)
        else:
            raise AssertionError(f"unknown action {action!r}")

    def conntrack(self, action: tuple[Any, ...], pkt: dict[str, Any], depth: int) -> None:
        _, commit, zone, table, mark = action
        zone_id = pkt.get(zone, 0) & 0xFFFF if isinstance(zone, str) else zone
        if pkt.get("eth_type") != 0x0800:
            raise AssertionError("ct on a non-IP packet")
        state, conn = self.ct.lookup(zone_id, pkt)
        if commit:
            conn = self.ct.commit(zone_id, pkt, conn, mark)
        elif mark is not None:
            raise AssertionError("ct mark needs commit")
        if table is None:  # OVS: the ct_* fields are only valid after a recirculation
            for k in ("ct_state", "ct_mark", "ct_zone"):
                pkt.pop(k, None)
            return
        pkt.update(ct_state=state, ct_mark=conn.mark if conn else 0, ct_zone=zone_id)
        self.table(table, pkt, depth + 1)


def _internal(name: str) -> bool:
    """Pipeline metadata, not packet headers."""
    return name in _ZERO_DEFAULT


def trace(flows: Iterable[FlowSpec], packet: Mapping[str, Any], table: int = 0,
          groups: Iterable[GroupSpec] = (), conntrack: Conntrack | None = None) -> Trace:
    """Run the packet through the pipeline from `table`, as OVS would."""
    run = _Run(list(flows), {g.group_id: g for g in groups}, conntrack or Conntrack())
    run.table(table, dict(packet))
    return run.result


class SimSwitch:
    """A bridge with a program and a conntrack table that persists between packets."""

    def __init__(self, flows: Iterable[FlowSpec], groups: Iterable[GroupSpec] = ()) -> None:
        self.flows, self.groups = list(flows), list(groups)
        self.conntrack = Conntrack()

    @classmethod
    def of(cls, program: Any) -> "SimSwitch":
        """From a `vpc_core.Program`."""
        return cls(program.flows, program.groups)

    def load(self, program: Any) -> None:
        """A new program (a state change); connections are kept, like OVS's conntrack."""
        self.flows, self.groups = list(program.flows), list(program.groups)

    def send(self, packet: Mapping[str, Any]) -> Trace:
        """Trace one packet from table 0."""
        return trace(self.flows, packet, groups=self.groups, conntrack=self.conntrack)


class FakeTables:
    """A switch's flow and group tables under OpenFlow semantics, for tests of a sync's order:
    ADD replaces the entry in the same slot, DELETE goes by cookie, deleting a group deletes
    the flows that point at it (as OVS does), a flow pointing at a missing group is refused."""

    def __init__(self, flows: Iterable[FlowSpec] = (), groups: Iterable[GroupSpec] = ()) -> None:
        self.flows: dict[tuple, FlowSpec] = {f.slot: f for f in flows}
        self.groups: dict[int, GroupSpec] = {g.group_id: g for g in groups}

    def apply(self, change: Change) -> None:
        """One change, as the switch would apply it."""
        if change.kind == ADD_GROUP:
            self.groups[change.spec.group_id] = change.spec          # type: ignore[union-attr]
        elif change.kind == ADD_FLOW:
            flow = change.spec
            missing = [g for g in _group_refs(flow) if g not in self.groups]   # type: ignore[arg-type]
            if missing:
                raise ValueError(f"flow {flow.note!r} points at missing group {missing[0]:#x}")  # type: ignore[union-attr]
            self.flows[flow.slot] = flow                              # type: ignore[union-attr]
        elif change.kind == DELETE_FLOW:
            self.flows = {s: f for s, f in self.flows.items() if f.cookie != change.ident}
        elif change.kind == DELETE_GROUP:
            self.groups.pop(change.ident, None)
            self.flows = {s: f for s, f in self.flows.items() if change.ident not in _group_refs(f)}
        else:
            raise ValueError(f"unknown change {change.kind!r}")

    def cookies(self) -> list[int]:
        return [f.cookie for f in self.flows.values()]

    def switch(self, conntrack: Conntrack | None = None) -> SimSwitch:
        """A `SimSwitch` on the current tables (pass one conntrack to keep connections)."""
        sw = SimSwitch(self.flows.values(), self.groups.values())
        if conntrack is not None:
            sw.conntrack = conntrack
        return sw


def _group_refs(flow: FlowSpec) -> list[int]:
    """Group ids a flow's actions point at."""
    return [a[1] for a in flow.actions if a[0] == "group"]
