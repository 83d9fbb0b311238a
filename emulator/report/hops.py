"""Hop attribution: which node a request entered the cluster through.

Pure functions over per-request records and the run plan's nodes (HostSpec, or results.json's
TopologyNode: anything with `name`, `ip` and `pod_cidr` attributes).
"""
from __future__ import annotations

import ipaddress
import statistics
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

from emulator.records.results import TopologyNode


def entered_node(record: dict, plan) -> str | None:
    """The node a request entered the cluster through, read from the client IP the pod saw.

    A node IP: that node masqueraded it (it entered there). An address of a node's pod
    range (its cbr0 gateway): the pod's own node masqueraded it. Anything else is the
    client's own address, kept (externalTrafficPolicy Local): it entered where it was served.
    """
    seen = record.get("client_ip_seen")
    if not seen or record.get("outcome") != "ok":
        return None
    addr = ipaddress.ip_address(seen)
    for n in plan.nodes:
        if seen == n.ip or addr in ipaddress.ip_network(n.pod_cidr):
            return n.name
    return record.get("node")


def entered_nodes(records: list[dict], plan) -> set[str]:
    return {n for n in (entered_node(r, plan) for r in records) if n}


def took_extra_hop(record: dict, plan) -> bool | None:
    """True when a request was served by another node than the one it entered (the extra
    hop of externalTrafficPolicy Cluster); None when it cannot be attributed."""
    into = entered_node(record, plan)
    node = record.get("node")
    return None if into is None or node is None else node != into


def extra_hop_ratio(records: list[dict], plan) -> float:
    """Share of the attributed requests that took the extra hop (0 when none is attributed)."""
    flags = [f for f in (took_extra_hop(r, plan) for r in records) if f is not None]
    return sum(flags) / len(flags) if flags else 0.0


def entered_without_pod_ratio(records: list[dict], plan) -> float:
    """Share of the attributed requests that entered a node where no pod of the flow answered.

    The nodes with a pod are those that served some request of the flow; with Cluster
    policy this share is the load balancer's spreading alone (nodes without a pod / all).
    """
    serving = {r.get("node") for r in records if r.get("outcome") == "ok" and r.get("node")}
    entered = [e for e in (entered_node(r, plan) for r in records) if e]
    return sum(e not in serving for e in entered) / len(entered) if entered else 0.0


def extra_hop_penalty_ms(records: list[dict], plan) -> float:
    """Median total latency of extra-hop requests minus that of direct ones (nan without both)."""
    flags = [took_extra_hop(r, plan) for r in records]
    direct = [r["total_ms"] for r, f in zip(records, flags) if f is False and r.get("total_ms") is not None]
    extra = [r["total_ms"] for r, f in zip(records, flags) if f is True and r.get("total_ms") is not None]
    return statistics.median(extra) - statistics.median(direct) if direct and extra else float("nan")


def extra_hop_flags(records: Sequence[Mapping[str, Any]], nodes: Sequence[TopologyNode]) -> list[bool | None]:
    """Per record: True (extra hop), False (direct) or None (not attributed)."""
    plan = SimpleNamespace(nodes=list(nodes))
    return [took_extra_hop(dict(r), plan) for r in records]
