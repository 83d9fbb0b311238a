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
