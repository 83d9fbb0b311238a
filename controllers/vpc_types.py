"""Building blocks of the VPC router's decisions: tables, flow and group specs, parsing helpers.

Everything here is plain data, shared by `vpc_core` (state, routing, pipeline), `vpc_firewall`
and `vpc_lb`; `vpc_app` turns the specs into OpenFlow 1.3 and the unit tests run them in
`tests/fakes/flow_sim.py`.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from emulator.errors import ConfigError

# --- the pipeline (see vpc_core's docstring for what each table does) ---
TABLE_CLASSIFY = 0
TABLE_FW_EGRESS = 10
TABLE_LB = 20
TABLE_LB_BACKEND = 25
TABLE_ROUTE = 30
TABLE_CT_INGRESS = 40
TABLE_FW_INGRESS = 45
TABLE_DELIVER = 50

PRIO_MISS = 0

ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ARP_REQUEST, ARP_REPLY = 1, 2
IP_PROTO = {"icmp": 1, "tcp": 6, "udp": 17}

# Registers, kept across conntrack recirculations and resubmits.
REG_SRC = "reg6"  # id of the sending endpoint (its conntrack zone) on its own bridge
REG_DST = "reg5"  # id of the receiving endpoint (its conntrack zone) on its own bridge
REG_LB = "reg7"   # id of the backend endpoint a load balancer chose

# ct_state bits (OVS / nicira-ext)
CT_NEW, CT_EST, CT_REL, CT_RPL, CT_INV, CT_TRK = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_CT_BITS = {"new": CT_NEW, "est": CT_EST, "rel": CT_REL, "rpl": CT_RPL, "inv": CT_INV, "trk": CT_TRK}

COOKIE_TAG = 0x6B75  # "ku": top 16 bits of every cookie this app installs
COOKIE_TAG_SHIFT = 48
COOKIE_TAG_MASK = 0xFFFF << COOKIE_TAG_SHIFT
IN_PORT = "in_port"  # output target meaning "back out of the port it came in on"
_GROUP_ID_MAX = 0x7FFFFFFF  # below OFPG_MAX (0xffffff00)

DEFAULT_ROUTER_MAC = "42:01:0a:80:00:01"  # GCP style: 42:01 + the gateway's address
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

# An action is a small tuple, readable in tests and turned into OpenFlow by the adapter:
#   ("output", port | IN_PORT)       ("set_field", field, value)   ("dec_ttl",)
#   ("move", src_field, dst_field, n_bits)                         ("goto", table)
#   ("group", group_id)              ("resubmit", table)
#   ("ct", commit, zone, table, mark)  zone: int or a register name (its low 16 bits);
#        table: recirculate there (None: continue, with the ct_* fields cleared as OVS does);
#        mark: set ct_mark on commit (None: leave it)
Action = tuple[Any, ...]


def ct_state(flags: str) -> tuple[int, int]:
    """Match value for ct_state from OVS notation, e.g. `+trk+est` or `+trk-new`."""
    value = mask = 0
    for sign, name in re.findall(r"([+-])([a-z]+)", flags):
        bit = _CT_BITS[name]
        mask |= bit
        if sign == "+":
            value |= bit
    return value, mask


def ct(zone: int | str, commit: bool = False, table: int | None = None, mark: int | None = None) -> Action:
    """A conntrack action (see `Action`)."""
    return ("ct", commit, zone, table, mark)


def _digest(obj: Any) -> bytes:
    return hashlib.sha1(repr(obj).encode()).digest()


@dataclass(frozen=True, eq=False)
class FlowSpec:
    """One flow entry: match fields use os-ken OFPMatch names; masked IPs are `a.b.c.d/len`,
    other masked fields `(value, mask)` tuples."""

    table: int
    priority: int
    match: Mapping[str, Any]
    actions: tuple[Action, ...]
    note: str = ""
    cookie: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "match", dict(self.match))
        object.__setattr__(self, "actions", tuple(tuple(a) for a in self.actions))
        object.__setattr__(self, "cookie", (COOKIE_TAG << COOKIE_TAG_SHIFT)
                           | int.from_bytes(_digest(self.key)[:6], "big"))

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
        return {"table": self.table, "priority": self.priority,
                "match": {k: list(v) if isinstance(v, tuple) else v for k, v in self.match.items()},
                "actions": [list(a) for a in self.actions], "note": self.note, "cookie": self.cookie}


@dataclass(frozen=True, eq=False)
class GroupSpec:
    """An OpenFlow SELECT group. Its id is a hash of its content, like a flow's cookie, so a
    changed group is a new group: flows switch to it and the old one is deleted afterwards."""

    name: str
    buckets: tuple[tuple[Action, ...], ...]
    bucket_notes: tuple[str, ...] = ()
    group_id: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "buckets", tuple(tuple(tuple(a) for a in b) for b in self.buckets))
        object.__setattr__(self, "bucket_notes", tuple(self.bucket_notes))
        gid = int.from_bytes(_digest((self.name, self.buckets))[:4], "big") & _GROUP_ID_MAX
        object.__setattr__(self, "group_id", gid or 1)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GroupSpec) and (self.group_id, self.buckets) == (other.group_id, other.buckets)

    def __hash__(self) -> int:
        return hash((self.group_id, self.buckets))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"group_id": self.group_id, "name": self.name, "type": "select",
                "buckets": [[list(a) for a in b] for b in self.buckets],
                "bucket_notes": list(self.bucket_notes)}


@dataclass(frozen=True)
class Endpoint:
    """A host on the fabric: a node's or VM's eth0, an internet host or a health-check prober."""

    name: str
    ip: str
    mac: str
    port_name: str
    ofport: int | None = None
    routes: tuple[str, ...] = ()  # CIDRs routed to it (GKE alias IP ranges: the pod range)
    dpid: int = 1                 # the bridge (machine) its port is on
    gateway: str | None = None    # the gateway it uses (must be one of the state's gateways)
    kind: str = "node"            # node | vm (VPC instances: firewalled) | internet | prober
    tags: tuple[str, ...] = ()    # network tags, matched by firewall rules' target_tags


ENDPOINT_KINDS = ("node", "vm", "internet", "prober")
INSTANCE_KINDS = ("node", "vm")  # what GCP firewall rules apply to


@dataclass(frozen=True)
class Tunnel:
    """A port on bridge `dpid` that reaches bridge `remote_dpid` (VXLAN between machines)."""

    dpid: int
    remote_dpid: int
    port_name: str
    ofport: int | None = None


# --- parsing helpers (ConfigError always names the field) ---
def known(data: Any, keys: set[str], where: str) -> None:
    """`data` is a mapping without unknown keys."""
    if not isinstance(data, Mapping):
        raise ConfigError("expected a mapping", field=where)
    extra = sorted(set(data) - keys)
    if extra:
        raise ConfigError(f"unknown key {extra[0]!r}", field=where)


def one_of(raw: Mapping[str, Any], key: str, default: str, allowed, where: str, upper: bool = False) -> str:
    """`raw[key]` (or `default`), case-normalised, checked against `allowed`."""
    value = str(raw.get(key, default))
    value = value.upper() if upper else value.lower()
    if value not in allowed:
        raise ConfigError(f"must be one of {list(allowed)}", field=f"{where}.{key}")
    return value


def str_list(value: Any, where: str) -> tuple[str, ...]:
    """A list of strings (a lone string is an error: it would iterate by character)."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError("expected a list", field=where)
    return tuple(str(v) for v in value)


def parse_ip(text: str, where: str) -> str:
    """An IPv4 address in canonical form, or a ConfigError naming the field."""
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError as exc:
        raise ConfigError(f"bad IPv4 address {text!r}", field=where) from exc


def parse_cidr(text: str, where: str) -> ipaddress.IPv4Network:
    """An IPv4 network (host bits must be zero; a bare address is a /32)."""
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise ConfigError(f"bad CIDR {text!r}: {exc}", field=where) from exc


def prefix(net: ipaddress.IPv4Network) -> str:
    """Match value for an IPv4 prefix: plain address for /32, `a.b.c.d/len` otherwise."""
    return str(net.network_address) if net.prefixlen == 32 else str(net)


def port_range(value: Any, where: str) -> tuple[int, int]:
    """`80`, `"80"` or `"30000-32767"` -> (low, high)."""
    text = str(value).strip()
    lo_text, sep, hi_text = text.partition("-")
    try:
        lo = int(lo_text)
        hi = int(hi_text) if sep else lo
    except ValueError as exc:
        raise ConfigError(f"bad port {value!r}", field=where) from exc
    if not (0 <= lo <= hi <= 0xFFFF):
        raise ConfigError(f"bad port range {value!r}", field=where)
    return lo, hi


def port_masks(lo: int, hi: int) -> list[int | tuple[int, int]]:
    """Cover [lo, hi] with value/mask pairs (a plain int for a single port), fewest first-fit."""
    out: list[int | tuple[int, int]] = []
    while lo <= hi:
        size = lo & -lo if lo else 0x10000
        while size > hi - lo + 1:
            size //= 2
        out.append(lo if size == 1 else (lo, 0xFFFF & ~(size - 1)))
        lo += size
    return out
