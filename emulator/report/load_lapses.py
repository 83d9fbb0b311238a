"""Leases that lapsed with no fault to explain them, and health-check and readiness answers
that came late: the machine did not keep up with the timing.

A node goes NotReady when its lease is older than the grace period. During a crash,
partition, zone outage, machine failure or link flap of that node, or an API server
restart, that is the emulated failure at work. Any other lapse means the kubelet's
renewals (or the API server, or the controller) fell behind the configured clocks: the
machine is too busy for the timing profile, and the run says so instead of counting it
as a failure of the cluster. Pure: node lifecycle events and fault step records in, the
unexplained lapses out.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

NODE_FAULTS = ("crash", "partition", "zone-outage", "machine-failure")   # until the node's recover
BOUNDED_FAULTS = ("link-flap",)            # for the fault step's own seconds (the link is down that long)
EVERY_NODE_FAULTS = ("api-restart",)       # no node reaches the API server for the step's seconds
SLACK = 1.0   # seconds after a bounded fault ends that its lapses still count as its own


def fault_windows(faults: Iterable[Mapping[str, Any]]) -> tuple[dict[str, list[list[float]]], list[list[float]]]:
    """(node -> [start, end] windows of faults on it, windows of faults on every node); end inf if open."""
    per_node: dict[str, list[list[float]]] = {}
    every: list[list[float]] = []
    for f in sorted(faults, key=lambda f: f["t"]):
        act, t, nodes = f.get("action"), float(f["t"]), f.get("nodes") or []
        if act == "recover":
            for n in nodes:
                for w in per_node.get(n, []):
                    if w[1] == float("inf"):
                        w[1] = t
        elif act in NODE_FAULTS:
            for n in nodes:
                per_node.setdefault(n, []).append([t, float("inf")])
        elif act in BOUNDED_FAULTS:
            for n in nodes:
                per_node.setdefault(n, []).append([t, t + float(f.get("seconds") or 0) + SLACK])
        elif act in EVERY_NODE_FAULTS:
            every.append([t, t + float(f.get("seconds") or 0) + SLACK])
    return per_node, every


def unexplained_lapses(events: Iterable[Mapping[str, Any]], faults: Iterable[Mapping[str, Any]]) -> list[dict]:
    """The `node_not_ready` events whose silence no fault window overlaps, oldest first."""
    per_node, every = fault_windows(faults)
    out = []
    for e in sorted(events, key=lambda e: e["t"]):
        if e.get("event") != "node_not_ready":
            continue
        end = float(e["t"])
        start = end - float(e.get("silent_s") or 0.0)
        if any(w0 <= end and w1 >= start for w0, w1 in per_node.get(e["node"], []) + every):
            continue
        out.append({"node": e["node"], "t": end, "silent_s": e.get("silent_s")})
    return out


def summary(lapses: list[dict], started: float, timing: str | None,
            late: Mapping[str, Any] | None = None, late_readiness: Mapping[str, Any] | None = None
            ) -> dict[str, Any] | None:
    """results.json's `load` record (None without unexplained lapses or late answers). `late`:
    the cloud controller's health-check answers late from load ({answers, passed, nodes, first});
    `late_readiness`: the kubelets' readiness probes of kubemu's own servers ({answers, passed, nodes})."""
    out: dict[str, Any] = {}
    if lapses:
        out = {"lapsed_leases_without_fault": len(lapses),
               "nodes": sorted({x["node"] for x in lapses}),
               "first_s": round(lapses[0]["t"] - started, 3),
               "max_silent_s": max(float(x["silent_s"] or 0) for x in lapses)}
    if late:
        out["late_health_answers"] = {"answers": late["answers"], "passed": late["passed"],
                                      "nodes": len(late["nodes"]), "first_s": round(late["first"] - started, 3)}
    if late_readiness:
        out["late_readiness_answers"] = {"answers": late_readiness["answers"], "passed": late_readiness["passed"],
                                         "nodes": len(late_readiness["nodes"])}
    return {**out, "timing": timing} if out else None


def warnings(load: Mapping[str, Any]) -> list[str]:
    """The user's lines for a `load` record: lapsed leases, late health-check and readiness answers."""
    out = [warning(load)] if load.get("lapsed_leases_without_fault") else []
    late = load.get("late_health_answers")
    if late:
        out.append(f"warning: {late['answers']} load balancer health-check answer(s) from {late['nodes']} node(s) came "
                   f"after the timeout although the node had accepted the connection in time (first "
                   f"{late['first_s']:g} s into the run): the emulated nodes' processes were late, the machine did not "
                   f"keep up with timing `{load['timing']}`. They counted by their status ({late['passed']} passed), "
                   "not as failed nodes.")
    ready = load.get("late_readiness_answers")
    if ready:
        out.append(f"warning: {ready['answers']} readiness probe answer(s) of kubemu's own pod servers on "
                   f"{ready['nodes']} node(s) came after the probe's timeout although the pod had accepted the "
                   f"connection in time: the machine did not keep up with timing `{load['timing']}`. They counted "
                   f"by their status ({ready['passed']} passed), not as unready pods.")
    return out


def warning(load: Mapping[str, Any]) -> str:
    """One line for the user: how many leases lapsed on nodes no fault touched, and what to do."""
    n, nodes = load["lapsed_leases_without_fault"], load["nodes"]
    return (f"warning: {n} node lease(s) lapsed with no fault ({len(nodes)} node(s), e.g. {nodes[0]}, silent up to "
            f"{load['max_silent_s']:g} s, first {load['first_s']:g} s into the run): the machine did not keep up "
            f"with timing `{load['timing']}`; its NotReady nodes and evictions are load, not the scenario. "
            "Use `timing: gke` or fewer nodes.")
