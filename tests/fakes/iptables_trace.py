"""A packet tracer over iptables rules, for tests that need no root.

Follows a new connection's first packet through nat and filter the way netfilter does
(PREROUTING or OUTPUT, routing by local addresses, INPUT or FORWARD, POSTROUTING),
taking jumps, marks, DNAT, MASQUERADE, addrtype, conntrack state and the `recent`
match. Every `statistic` rule splits the trace in two, so `trace` returns all outcomes
with their probabilities; `trace_one` picks one and remembers `recent` entries, which
lets tests check session affinity over many connections.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import random
from typing import Callable

from tests.fakes.iptables_ruleset import Rule, RuleSet

TERMINAL = {"ACCEPT", "DROP", "REJECT", "DNAT", "SNAT", "MASQUERADE"}
MAX_DEPTH = 64


class TraceError(Exception):
    """The rules use something the tracer does not model."""


@dataclasses.dataclass(frozen=True)
class Packet:
    """The first packet of a connection, as it is rewritten along the way."""

    src: str
    dst: str
    dport: int
    proto: str = "tcp"
    sport: int = 40000
    mark: int = 0
    dnat: bool = False
    masquerade: bool = False
    recent: tuple[tuple[str, str, float], ...] = ()   # (list name, source IP, time set)
    path: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Where one possible path of the packet ended."""

    probability: float
    verdict: str               # ACCEPT, DROP or REJECT
    packet: Packet
    delivered: str = ""        # "local" (INPUT), "forward" (FORWARD) or "" when dropped

    @property
    def destination(self) -> str:
        """`IP:port` the connection really goes to."""
        return f"{self.packet.dst}:{self.packet.dport}"

    @property
    def masqueraded(self) -> bool:
        return self.packet.masquerade

    @property
    def source(self) -> str:
        """Source IP the server sees (after SNAT)."""
        return self.packet.src


Branch = tuple[float, Packet, str | None]


class Tracer:
    """Traces packets through a RuleSet for a node with the given local addresses."""

    def __init__(self, rules: RuleSet, local_ips: list[str], node_ip: str | None = None,
                 forward_policy: str = "ACCEPT") -> None:
        self.rules = rules
        self.local_ips = set(local_ips)
        self.node_ip = node_ip or (local_ips[0] if local_ips else "0.0.0.0")
        self.forward_policy = forward_policy
        self.recent: dict[tuple[str, str], float] = {}

    # ---- public ----
    def trace(self, src: str, dst: str, dport: int, proto: str = "tcp", *, local: bool = False,
              now: float = 0.0) -> list[Outcome]:
        """All outcomes of a new connection (from a node process when `local`)."""
        pkt = Packet(src=src, dst=dst, dport=dport, proto=proto.lower(),
                     recent=tuple((n, ip, t) for (n, ip), t in self.recent.items()))
        self._now = now
        if local:
            branches = self._stage([(1.0, pkt, None)], "nat", "OUTPUT")
            branches = self._stage(branches, "filter", "OUTPUT")
            branches = self._stage(branches, "nat", "POSTROUTING")
            outcomes = []
            for prob, p, verdict in branches:
                if verdict in ("DROP", "REJECT"):
                    outcomes.append(Outcome(prob, verdict, p))
                elif self._is_local(p.dst):
                    outcomes += self._finish(self._stage([(prob, p, None)], "filter", "INPUT"), "local")
                else:
                    outcomes.append(Outcome(prob, "ACCEPT", p, "forward"))
            return _merge(outcomes)
        outcomes = []
        for prob, p, verdict in self._stage([(1.0, pkt, None)], "nat", "PREROUTING"):
            if verdict in ("DROP", "REJECT"):
                outcomes.append(Outcome(prob, verdict, p))
            elif self._is_local(p.dst):
                outcomes += self._finish(self._stage([(prob, p, None)], "filter", "INPUT"), "local")
            else:
                fwd = self._stage([(prob, p, None)], "filter", "FORWARD", self.forward_policy)
                kept = [(q, pp, None) for q, pp, v in fwd if v not in ("DROP", "REJECT")]
                outcomes += [Outcome(q, v, pp) for q, pp, v in fwd if v in ("DROP", "REJECT")]
                outcomes += self._finish(self._stage(kept, "nat", "POSTROUTING"), "forward")
        return _merge(outcomes)

    def trace_one(self, src: str, dst: str, dport: int, proto: str = "tcp", *, local: bool = False,
                  now: float = 0.0, choose: Callable[[list[Outcome]], Outcome] | None = None) -> Outcome:
        """One outcome (random by probability unless `choose` picks); keeps its `recent` state."""
        outcomes = self.trace(src, dst, dport, proto, local=local, now=now)
        if choose is not None:
            picked = choose(outcomes)
        else:
            picked = random.choices(outcomes, weights=[o.probability for o in outcomes])[0]
        self.recent = {(n, ip): t for n, ip, t in picked.packet.recent}
        return picked

    def destinations(self, src: str, dst: str, dport: int, proto: str = "tcp", **kw: object) -> dict[str, float]:
        """Probability of each final `IP:port` (accepted paths only)."""
        out: dict[str, float] = {}
        for o in self.trace(src, dst, dport, proto, **kw):  # type: ignore[arg-type]
            if o.verdict == "ACCEPT":
                out[o.destination] = out.get(o.destination, 0.0) + o.probability
        return out

    # ---- engine ----
    def _finish(self, branches: list[Branch], delivered: str) -> list[Outcome]:
        out = []
        for prob, p, verdict in branches:
            final = verdict if verdict in ("DROP", "REJECT") else "ACCEPT"
            out.append(Outcome(prob, final, p, delivered if final == "ACCEPT" else ""))
        return out

    def _stage(self, branches: list[Branch], table: str, chain: str, policy: str = "ACCEPT") -> list[Branch]:
        out: list[Branch] = []
        for prob, pkt, verdict in branches:
            if verdict in ("DROP", "REJECT"):
                out.append((prob, pkt, verdict))
                continue
            if chain not in self.rules.table(table):
                out.append((prob, pkt, None))
                continue
            for q, p, v in self._chain(table, chain, pkt, 0):
                if v is None or v == "RETURN":
                    v = None if policy == "ACCEPT" else policy
                out.append((prob * q, p, v))
        return [b for b in out if b[0] > 0]

    def _chain(self, table: str, chain: str, pkt: Packet, depth: int) -> list[Branch]:
        if depth > MAX_DEPTH:
            raise TraceError(f"jump depth over {MAX_DEPTH} at {table}/{chain}")
        pkt = dataclasses.replace(pkt, path=pkt.path + (f"{table}/{chain}",))
        return self._rules(table, chain, self.rules.chain(table, chain), 0, pkt, depth)

    def _rules(self, table: str, chain: str, rules: list[Rule], start: int, pkt: Packet,
               depth: int) -> list[Branch]:
        for i in range(start, len(rules)):
            rule = rules[i]
            matched, prob, pkt2 = self._match(rule, pkt)
            if not matched:
                continue
            results: list[Branch] = []
            if prob < 1.0:   # statistic: the other branch goes on with the next rule
                results += [(q * (1 - prob), p, v) for q, p, v in self._rules(table, chain, rules, i + 1, pkt, depth)]
            for q, p, v in self._target(table, rule, pkt2, depth):
                if v is None:
                    results += [(q * prob * q2, p2, v2) for q2, p2, v2 in self._rules(table, chain, rules, i + 1, p, depth)]
                else:
                    results.append((q * prob, p, v))
            return results
        return [(1.0, pkt, None)]

    def _target(self, table: str, rule: Rule, pkt: Packet, depth: int) -> list[Branch]:
        t = rule.target
        if not t or t == "LOG":
            return [(1.0, pkt, None)]
        if t in ("ACCEPT", "DROP", "REJECT", "RETURN"):
            return [(1.0, pkt, t)]
        if t == "MARK":
            return [(1.0, dataclasses.replace(pkt, mark=_mark(pkt.mark, rule)), None)]
        if t == "DNAT":
            to = rule.option("--to-destination") or ""
            ip, _, port = to.partition(":")
            return [(1.0, dataclasses.replace(pkt, dst=ip, dport=int(port) if port else pkt.dport, dnat=True), "DNAT")]
        if t == "MASQUERADE":
            return [(1.0, dataclasses.replace(pkt, src=self.node_ip, masquerade=True), "MASQUERADE")]
        if t == "SNAT":
            ip = (rule.option("--to-source") or "").partition(":")[0]
            return [(1.0, dataclasses.replace(pkt, src=ip, masquerade=True), "SNAT")]
        if t in self.rules.table(table):
            return [(q, p, None if v == "RETURN" else v) for q, p, v in self._chain(table, t, pkt, depth + 1)]
        raise TraceError(f"unknown target {t} in {rule.chain}")

    def _match(self, rule: Rule, pkt: Packet) -> tuple[bool, float, Packet]:
        """(matched, probability of the statistic match, packet after `recent --set`)."""
        prob = 1.0
        recent_name = ""
        recent_ops: dict[str, str] = {}
        for m in rule.matches:
            opt, val, neg = m.option, m.value, m.negated
            if m.module == "":
                if opt == "src":
                    ok = _in(pkt.src, val)
                elif opt == "dst":
                    ok = _in(pkt.dst, val)
                elif opt == "proto":
                    ok = pkt.proto == val.lower()
                else:
                    ok = True           # interfaces are not modelled
            elif m.module in ("tcp", "udp", "sctp"):
                if opt in ("--dport", "--destination-port"):
                    ok = _port_in(pkt.dport, val)
                elif opt in ("--sport", "--source-port"):
                    ok = _port_in(pkt.sport, val)
                else:
                    raise TraceError(f"unsupported {m.module} option {opt}")
                ok = ok and pkt.proto == m.module
            elif m.module == "comment":
                ok = True
            elif m.module == "addrtype":
                addr = pkt.src if opt == "--src-type" else pkt.dst
                if val != "LOCAL":
                    raise TraceError(f"unsupported addrtype {val}")
                ok = self._is_local(addr)
            elif m.module == "conntrack" and opt == "--ctstate":
                states = {"NEW"} | ({"DNAT"} if pkt.dnat else set())
                ok = bool(states & set(val.split(",")))
            elif m.module == "mark" and opt == "--mark":
                value, _, mask = val.partition("/")
                ok = (pkt.mark & int(mask or "0xffffffff", 16)) == int(value, 16)
            elif m.module == "statistic":
                if opt == "--probability":
                    prob = float(val)
                elif opt != "--mode" or val != "random":
                    raise TraceError(f"unsupported statistic {opt} {val}")
                ok = True
            elif m.module == "recent":
                if opt == "--name":
                    recent_name = val
                else:
                    recent_ops[opt] = val
                ok = True
            else:
                raise TraceError(f"unsupported match -m {m.module} {opt}")
            if ok == neg:
                return False, 0.0, pkt
        if recent_ops:
            entries = {(n, ip): t for n, ip, t in pkt.recent}
            key = (recent_name or "DEFAULT", pkt.src)
            if "--rcheck" in recent_ops:
                seen = entries.get(key)
                limit = float(recent_ops.get("--seconds") or "inf")
                if seen is None or self._now - seen > limit:
                    return False, 0.0, pkt
            if "--set" in recent_ops:
                entries[key] = self._now
                pkt = dataclasses.replace(pkt, recent=tuple((n, ip, t) for (n, ip), t in entries.items()))
        return True, prob, pkt

    def _is_local(self, ip: str) -> bool:
        return ip in self.local_ips or _in(ip, "127.0.0.0/8")


def _in(ip: str, cidr: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)


def _port_in(port: int, spec: str) -> bool:
    low, _, high = spec.partition(":")
    return int(low) <= port <= int(high or low)


def _mark(mark: int, rule: Rule) -> int:
    for key, value in rule.target_options:
        if key == "--or-mark":
            mark |= int(value, 16)
        elif key == "--xor-mark":
            mark ^= int(value, 16)
        elif key == "--and-mark":
            mark &= int(value, 16)
        elif key in ("--set-xmark", "--set-mark"):
            v, _, m = value.partition("/")
            mask = int(m or "0xffffffff", 16)
            mark = (mark & ~mask) ^ int(v, 16) if key == "--set-xmark" else (mark & ~mask) | int(v, 16)
    return mark


def _merge(outcomes: list[Outcome]) -> list[Outcome]:
    """Combine outcomes that ended identically (same verdict, addresses, NAT, path)."""
    merged: dict[tuple, Outcome] = {}
    for o in outcomes:
        key = (o.verdict, o.delivered, o.packet)
        if key in merged:
            merged[key] = dataclasses.replace(merged[key], probability=merged[key].probability + o.probability)
        else:
            merged[key] = o
    return list(merged.values())
