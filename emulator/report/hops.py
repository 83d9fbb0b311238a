"""Hop attribution: which node a request entered the cluster through.

Pure functions over per-request records and the run plan's nodes (anything with a
`nodes` list of {name, ip, pod_cidr}).
"""
from __future__ import annotations

import ipaddress


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
        if seen == n["ip"] or addr in ipaddress.ip_network(n["pod_cidr"]):
            return n["name"]
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
