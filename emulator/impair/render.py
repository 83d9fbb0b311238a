"""Link impairments of one host, rendered: iptables (mangle), tc commands and delay queues.

Pure: impairments + the run plan's hosts in, text and tuples out. Each host impairs its
own egress on eth0 (so a one-way delay D on both ends makes a round trip 2D longer),
in mangle POSTROUTING, which also sees the pods' packets the node forwards.

Two mechanisms:
- `netem`: iptables only marks the packets of a class; tc sends each mark to an htb
  class with a netem qdisc (delay, jitter, loss) and the class's rate.
- `nfqueue` (kernels without sch_netem): loss by `-m statistic` DROP, delay by NFQUEUE
  to the host's delay process (emulator.impair.delayd), rate by an htb class per mark.
Marks use bits 16-19 only, leaving kube-proxy's 0x4000/0x8000 bits alone.
"""
from __future__ import annotations

from dataclasses import dataclass

from emulator.config.impairments import LINK_CLASSES, Impairments, LinkImpairment
from emulator.records.hosts import HostSpec

DEV = "eth0"
MARK_SHIFT = 16
MARK_MASK = 0xF0000
QUEUE_BASE = 7000          # NFQUEUE numbers: QUEUE_BASE + class index (queues are per namespace)
NO_RATE = "100gbit"        # htb class rate where a netem class has no rate of its own


@dataclass(frozen=True)
class ClassRule:
    """One link class as it applies to one host's egress."""

    name: str
    index: int                      # 1-based position in LINK_CLASSES
    dests: tuple[str, ...]          # destination CIDRs; () = every packet out of eth0
    delay_ms: float
    jitter_ms: float
    loss: float
    rate_bps: int | None

    @property
    def mark(self) -> int:
        return self.index << MARK_SHIFT

    @property
    def queue(self) -> int:
        return QUEUE_BASE + self.index


def _node_dests(me: HostSpec, nodes: list[HostSpec], other_zone_only: bool) -> tuple[str, ...]:
    """Node IPs and pod ranges of the other nodes (in other zones only, if asked)."""
    out: list[str] = []
    for n in nodes:
        if n.name != me.name and not (other_zone_only and n.zone == me.zone):
            out += [f"{n.ip}/32", n.pod_cidr]
    return tuple(out)


def host_classes(impairments: Impairments, me: HostSpec, hosts: list[HostSpec]) -> list[ClassRule]:
    """The link classes that apply to `me`'s egress, in precedence order (first match wins)."""
    nodes = [h for h in hosts if h.role == "node"]
    inet = [f"{h.ip}/32" for h in hosts if h.kind == "internet"]
    out: list[ClassRule] = []
    for name, imp in impairments.active().items():
        if me.role == "node":
            dests = {"inter_zone": _node_dests(me, nodes, True), "inter_node": _node_dests(me, nodes, False),
                     "internet": tuple(inet)}[name]
        elif me.kind == "internet" and name == "internet":
            dests = ()
        else:
            continue
        if dests or me.kind == "internet":
            out.append(_rule(name, imp, dests))
    return out


def _rule(name: str, imp: LinkImpairment, dests: tuple[str, ...]) -> ClassRule:
    return ClassRule(name, LINK_CLASSES.index(name) + 1, dests, round(imp.delay * 1000, 3),
                     round(imp.jitter * 1000, 3), imp.loss, imp.rate)


def chain_names(prefix: str) -> dict[str, str]:
    """Our mangle chains: the dispatcher and one per class (names carry the run prefix)."""
    return {"impair": f"{prefix}-IMPAIR", **{c: f"{prefix}-{c.upper().replace('_', '-')}" for c in LINK_CLASSES}}


def mangle_restore(prefix: str, classes: list[ClassRule], mechanism: str, hook: bool) -> str:
    """iptables-restore --noflush input: our chains (flushed and refilled), and the hook once."""
    names = chain_names(prefix)
    lines = ["*mangle"] + [f":{n} - [0:0]" for n in names.values()]
    if hook:
        lines.append(f"-A POSTROUTING -o {DEV} -j {names['impair']}")
    for c in classes:
        chain = names[c.name]
        for d in c.dests or (None,):
            lines.append(f"-A {names['impair']}" + (f" -d {d}" if d else "") + f" -g {chain}")
        if mechanism == "netem":
            lines.append(f"-A {chain} -j MARK --set-xmark {c.mark:#x}/{MARK_MASK:#x}")
            continue
        if c.loss:
            lines.append(f"-A {chain} -m statistic --mode random --probability {c.loss:.6f} -j DROP")
        if c.rate_bps:
            lines.append(f"-A {chain} -j MARK --set-xmark {c.mark:#x}/{MARK_MASK:#x}")
        if c.delay_ms:
            lines.append(f"-A {chain} -j NFQUEUE --queue-num {c.queue}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def tc_batch(classes: list[ClassRule], mechanism: str) -> list[str]:
    """`tc -batch` lines for eth0 (after the root qdisc is removed); [] when no class needs tc."""
    shaped = [c for c in classes if mechanism == "netem" or c.rate_bps]
    if not shaped:
        return []
    out = [f"qdisc add dev {DEV} root handle 1: htb default 0"]
    for c in shaped:
        rate = f"{c.rate_bps}bit" if c.rate_bps else NO_RATE
        out += [f"class add dev {DEV} parent 1: classid 1:{c.index} htb rate {rate} ceil {rate}",
                f"filter add dev {DEV} parent 1: protocol ip prio {c.index} u32 "
                f"match mark {c.mark:#x} {MARK_MASK:#x} flowid 1:{c.index}"]
        if mechanism == "netem":
            netem = f"delay {c.delay_ms:g}ms" + (f" {c.jitter_ms:g}ms" if c.jitter_ms else "")
            if c.loss:
                netem += f" loss {c.loss * 100:.4g}%"
            out.append(f"qdisc add dev {DEV} parent 1:{c.index} handle {c.index * 10}: netem {netem}")
    return out


def delay_queues(classes: list[ClassRule], mechanism: str) -> list[tuple[int, float, float]]:
    """(queue number, delay ms, jitter ms) the delay process serves; [] with netem."""
    if mechanism == "netem":
        return []
    return [(c.queue, c.delay_ms, c.jitter_ms) for c in classes if c.delay_ms]


def mechanism_of(c: ClassRule, mechanism: str) -> str:
    """Which kernel parts enforce a class: `netem` or e.g. `nfqueue delay + statistic loss + htb rate`."""
    if mechanism == "netem":
        return "netem" + (" + htb rate" if c.rate_bps else "")
    parts = []
    if c.delay_ms:
        parts.append("nfqueue delay")
    if c.loss:
        parts.append("statistic loss")
    if c.rate_bps:
        parts.append("htb rate")
    return " + ".join(parts)
