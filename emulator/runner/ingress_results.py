"""What results.json records of the run's Ingresses: address, backends, errors, decisions."""
from __future__ import annotations

import os

from emulator.cloud.access_log import summarize
from emulator.runner.client import ClusterClient


def ingress_results(cluster) -> dict:
    """{ns/name: {ip, errors, backends: {name: {service, neg, servers}}, log: decisions}}; {} without Ingress."""
    client = ClusterClient(cluster)
    ings = client.list("Ingress")
    if not ings or cluster.cloud is None:
        return {}
    view = client.ingress_view()
    path = os.path.join(cluster.run_dir, "logs", "gfe-access.log")
    log = {}
    if os.path.exists(path):
        with open(path, errors="replace") as f:
            log = summarize(f)
    out = {}
    for ing in ings:
        meta, status = ing["metadata"], ing.get("status") or {}
        key = f"{meta.get('namespace', 'default')}/{meta['name']}"
        uses = (view.get("ingresses", {}).get(key) or {}).get("backends", [])
        out[key] = {"ip": ((status.get("loadBalancer") or {}).get("ingress") or [{}])[0].get("ip"),
                    "errors": status.get("errors") or [],
                    "backends": {b: view.get("backends", {}).get(b) for b in uses},
                    "log": log.get(key, {})}
    return out
