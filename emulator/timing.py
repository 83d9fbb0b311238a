"""Timing profiles: the real GKE/Kubernetes defaults (`gke`) and a scaled-down `fast` one.

Every value is in seconds and can be overridden per scenario.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class Timing:
    """Clocks of the emulated cluster's components."""

    node_lease_renew: float = 10.0          # kubelet lease renewal
    node_monitor_grace: float = 50.0        # NotReady after this without a lease
    pod_eviction_timeout: float = 300.0     # tolerationSeconds for unreachable nodes
    kube_proxy_sync: float = 30.0           # syncPeriod
    kube_proxy_min_sync: float = 1.0        # minSyncPeriod
    probe_period_scale: float = 1.0         # readiness probe periodSeconds multiplier
    probe_min_period: float = 1.0
    hc_cluster_interval: float = 8.0        # L4 LB health check, externalTrafficPolicy Cluster
    hc_cluster_unhealthy: int = 3
    hc_local_interval: float = 3.0          # L4 LB health check, externalTrafficPolicy Local
    hc_local_unhealthy: int = 2
    hc_timeout: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    "gke": Timing(),
    "fast": Timing(node_lease_renew=1.0, node_monitor_grace=5.0, pod_eviction_timeout=10.0,
                   kube_proxy_sync=10.0, kube_proxy_min_sync=0.1, probe_period_scale=0.1,
                   probe_min_period=0.2, hc_cluster_interval=1.0, hc_local_interval=0.5,
                   hc_timeout=0.5),
}


def profile(name: str, overrides: dict[str, float] | None = None) -> Timing:
    """The named profile with overrides applied (unknown names raise KeyError)."""
    base = PROFILES[name]
    if not overrides:
        return base
    known = {f.name for f in fields(Timing)}
    bad = set(overrides) - known
    if bad:
        raise KeyError(", ".join(sorted(bad)))
    return replace(base, **overrides)
