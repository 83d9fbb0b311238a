"""What a timing profile predicts for the phases of a node crash, and whether a run matched.

The windows follow the mechanisms, in seconds after the crash:
- NotReady: the node lifecycle controller sees a lease older than the grace period. The
  last renewal came up to one lease interval before the crash, and the controller looks
  every monitor period: [grace - lease interval, grace + monitor period].
- Pods evicted: tolerationSeconds after the taint, which comes with NotReady.
- A load balancer steers away after `unhealthy` consecutive failed probes, one every
  interval, each failing at its timeout; the first probe after the crash is sent within
  one interval: [(unhealthy - 1) x interval + timeout, unhealthy x interval + timeout].
  GKE's checks: Cluster policy 3 failures of kube-proxy's /healthz, Local 2 failures of
  the healthCheckNodePort (emulator/cloud/healthcheck.py).
A measured phase "matches" when it lies within the window widened by `tolerance` (20%)
of its edges.
"""
from __future__ import annotations

from typing import Any, Mapping

from emulator.gke import CLUSTER_THRESHOLDS, LOCAL_THRESHOLDS
from emulator.records.timing import Timing

TOLERANCE = 0.2


def node_windows(timing: Timing) -> dict[str, tuple[float, float]]:
    """Expected (low, high) seconds after a crash for the node's lifecycle phases."""
    grace, lease = timing.node_monitor_grace_period, timing.node_lease_interval
    monitor, toleration = timing.node_monitor_period, timing.pod_eviction_timeout
    lo, hi = max(grace - lease, 0.0), grace + monitor
    return {"node_not_ready_s": (lo, hi), "pods_evicted_s": (lo + toleration, hi + toleration + monitor)}


def steering_window(timing: Timing, policy: str) -> tuple[float, float]:
    """Expected (low, high) seconds after a crash until the load balancer stops sending to the node."""
    if policy == "Local":
        interval, unhealthy = timing.lb_health_check_interval_local, LOCAL_THRESHOLDS[1]
    else:
        interval, unhealthy = timing.lb_health_check_interval_cluster, CLUSTER_THRESHOLDS[1]
    timeout = timing.lb_health_check_timeout
    return ((unhealthy - 1) * interval + timeout, unhealthy * interval + timeout)


def expected(timing: Timing, policies: Mapping[str, str]) -> dict[str, Any]:
    """Windows for the node phases and, per LoadBalancer Service (name -> policy), its steering."""
    return {**{k: list(v) for k, v in node_windows(timing).items()},
            "services": {svc: {"lb_steered_s": list(steering_window(timing, pol)), "policy": pol}
                         for svc, pol in policies.items()}}


def within(value: float | None, window: tuple[float, float] | list[float], tolerance: float = TOLERANCE) -> bool:
    """Whether `value` lies in the window widened by `tolerance` of its edges."""
    if value is None:
        return False
    lo, hi = window
    return lo * (1 - tolerance) <= value <= hi * (1 + tolerance)


def comparison(phases: Mapping[str, Any], tolerance: float = TOLERANCE) -> list[tuple[str, float | None, list[float], bool]]:
    """(phase, measured, expected window, matched) for every phase the expectation covers."""
    exp = phases.get("expected") or {}
    rows = []
    for key in ("node_not_ready_s", "pods_evicted_s"):
        if key in exp:
            rows.append((key[:-2].replace("_", " "), phases.get(key), exp[key], within(phases.get(key), exp[key],
                                                                                         tolerance)))
    for svc, e in sorted((exp.get("services") or {}).items()):
        got = (phases.get("services") or {}).get(svc, {}).get("lb_steered_s")
        rows.append((f"{svc} ({e['policy']}) steered away", got, e["lb_steered_s"],
                     within(got, e["lb_steered_s"], tolerance)))
    return rows
