"""Which machine each emulated host runs on: the placement policies, pure.

`spread` deals nodes over the machines in turn (so do client hosts, separately),
`pack` fills machine 0 first, then 1, ..., with at most ceil(hosts / machines) each,
`zone` gives each zone a machine (zones in first-seen order, modulo the machine count);
hosts without a zone (internet hosts, the health-check prober) go to machine 0.
Ray then pins every host's actor to its machine's Ray node (see emulator/runner/machines.py).
"""
from __future__ import annotations

import math

from emulator.records.hosts import HostSpec

POLICIES = ("spread", "pack", "zone")


def place(hosts: list[HostSpec], count: int, policy: str) -> dict[str, int]:
    """Host name -> machine index (0..count-1) for every planned host, by `policy`."""
    if count < 1:
        raise ValueError("at least one machine")
    if policy not in POLICIES:
        raise ValueError(f"placement must be one of {list(POLICIES)}")
    if policy == "spread":
        nodes = [h for h in hosts if h.role == "node"]
        others = [h for h in hosts if h.role != "node"]
        return {h.name: i % count for group in (nodes, others) for i, h in enumerate(group)}
    if policy == "pack":
        per = max(1, math.ceil(len(hosts) / count))
        return {h.name: min(i // per, count - 1) for i, h in enumerate(hosts)}
    zones = list(dict.fromkeys(h.zone for h in hosts if h.zone))
    return {h.name: zones.index(h.zone) % count if h.zone else 0 for h in hosts}


def by_machine(placement: dict[str, int], count: int) -> list[list[str]]:
    """The hosts of each machine, in placement order."""
    out: list[list[str]] = [[] for _ in range(count)]
    for name, machine in placement.items():
        out[machine].append(name)
    return out
