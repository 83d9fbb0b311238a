"""Wiring of the Ingress controller into the cloud controller actor (Ray calls live here)."""
from __future__ import annotations

import secrets
from typing import Callable

import ray

from emulator.cloud import iap
from emulator.cloud.haproxy_cfg import ProxySettings
from emulator.cloud.ingress import IngressCore
from emulator.cloud.ingress_sync import IngressSync
from emulator.records.cloud import CloudFacts
from emulator.records.timing import Timing

PROXY_TIMEOUT = 30.0


def ingress_sync_for(api, gfe_agent, facts: CloudFacts, timing: Timing,
                     list_objects: Callable[[str], list[dict]]) -> IngressSync:
    """An IngressSync whose proxy is HAProxy on `gfe_agent`'s host (the prober host, 35.191.0.2)."""
    key = iap.ensure_key(facts.state_dir) if facts.state_dir else secrets.token_hex(32)
    interval = timing.lb_health_check_interval_cluster
    settings = ProxySettings(iap_key=key, check_interval_ms=max(100, int(interval * 1000)),
                             check_timeout_ms=max(100, int(timing.lb_health_check_timeout * 1000)))
    gfe = next(h.name for h in facts.hosts if h.kind == "prober")

    def push_proxy(config: str, files: dict, addresses: list) -> None:
        ray.get(gfe_agent.proxy_apply.remote(config, files, addresses), timeout=PROXY_TIMEOUT)

    def patch_status(ns: str, name: str, status: dict) -> None:
        ray.get(api.patch_status.remote("Ingress", ns, name, status))

    core = IngressCore(facts.external_range, facts.cluster_name, settings)
    return IngressSync(core, list_objects, push_proxy, patch_status, gfe)
