"""Timing profiles: the control-plane and load balancer intervals a scenario runs with.

`gke` uses the real defaults (FEATURES.md section 6); `fast` shrinks them so faults heal
in seconds. A scenario picks one with `timing:` and may override single values with
`timing_overrides:` (keys are the field names below).
"""
from __future__ import annotations

from emulator.records.timing import Timing, TimingName

__all__ = ["PROFILES", "Timing", "TimingName", "timing_for"]

PROFILES: dict[str, Timing] = {
    "gke": Timing(node_lease_interval=10, node_monitor_grace_period=50, pod_eviction_timeout=300,
                  kube_proxy_sync_period=30, kube_proxy_min_sync_period=1,
                  lb_health_check_interval_cluster=8, lb_health_check_interval_local=3,
                  lb_health_check_timeout=1),
    "fast": Timing(node_lease_interval=1, node_monitor_grace_period=5, pod_eviction_timeout=10,
                   node_monitor_period=0.2,
                   kube_proxy_sync_period=5, kube_proxy_min_sync_period=0.1,
                   lb_health_check_interval_cluster=1, lb_health_check_interval_local=0.5,
                   lb_health_check_timeout=0.5, readiness_probe_scale=0.1,
                   readiness_probe_min_period=0.2),
}


def timing_for(name: str, overrides: dict[str, float] | None = None) -> Timing:
    """The named profile with overrides applied (keys already checked by the loader)."""
    return PROFILES[name].model_copy(update=dict(overrides or {}))
