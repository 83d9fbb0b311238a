"""The control-plane and load balancer intervals of a run (profiles: emulator.config.timing)."""
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
