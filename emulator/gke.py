"""GKE's and Google Cloud's fixed numbers, in one place for every package to import.

Ports, paths, address ranges, thresholds and annotations that GKE (kube-proxy, the GCE
cloud provider, the Ingress controller) uses as constants; see
../shared/docs/KUBE-PROXY-FACTS.md. Pure data: imports nothing from kubemu.
"""
from __future__ import annotations

import json

NODE_PORT_RANGE = (30000, 32767)             # kube-apiserver's --service-node-port-range
NODE_PORT_RANGE_TEXT = f"{NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}"
HEALTHZ_PORT = 10256                         # kube-proxy's node health server (/healthz, /livez)
HEALTHZ_PATH = "/healthz"                    # what the Cluster-policy node health check asks
LOCAL_PATH = "/healthz"                      # what a Local-policy (healthCheckNodePort) check asks
# Google's health checkers and front ends send from these ranges.
PROBER_RANGES = ("35.191.0.0/16", "130.211.0.0/22")
# The GCE cloud provider's default for target-pool (legacy) external LB health checks adds
# the legacy network load balancing probe ranges.
LEGACY_PROBER_RANGES = PROBER_RANGES + ("209.85.152.0/22", "209.85.204.0/22")
CLUSTER_THRESHOLDS = (1, 3)                  # node health check: healthy, unhealthy
LOCAL_THRESHOLDS = (1, 2)                    # per-Service (Local) health check
HC_USER_AGENT = "GoogleHC/1.0"               # Google's health checkers' User-Agent

NEG_ANNOTATION = "cloud.google.com/neg"
BACKEND_CONFIG_ANNOTATION = "cloud.google.com/backend-config"


def is_neg(svc: dict) -> bool:
    """Container-native load balancing asked for this Service's Ingress backends."""
    raw = (svc["metadata"].get("annotations") or {}).get(NEG_ANNOTATION)
    if not raw:
        return False
    try:
        return bool(json.loads(raw).get("ingress"))
    except (ValueError, AttributeError):
        return False
