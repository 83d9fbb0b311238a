"""Timing profiles: the control-plane and load balancer intervals a scenario runs with.

`gke` uses the real defaults (FEATURES.md section 6); `fast` shrinks them so faults heal
in seconds. A scenario picks one with `timing:` and may override single values with
`timing_overrides:` (keys are the field names below).
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TimingName = Literal["fast", "gke"]


class Timing(BaseModel):
    """Intervals in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node_lease_interval: float = Field(description="kubelet node lease renewal")
    node_monitor_grace_period: float = Field(description="lease silence before NotReady")
    pod_eviction_timeout: float = Field(description="tolerationSeconds for unreachable nodes")
    node_monitor_period: float = Field(default=5.0, description="how often the node lifecycle controller looks")
    kube_proxy_sync_period: float = Field(description="full resync of kube-proxy rules")
    kube_proxy_min_sync_period: float = Field(description="minimum time between two syncs")
    lb_health_check_interval_cluster: float = Field(description="L4 LB probe of :10256/healthz")
    lb_health_check_interval_local: float = Field(description="L4 LB probe of healthCheckNodePort")
    lb_health_check_timeout: float = Field(description="L4 LB probe timeout")
    readiness_probe_scale: float = Field(default=1.0, description="multiplier of probes' periodSeconds")
    readiness_probe_min_period: float = Field(default=1.0, description="shortest readiness probe period")


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
