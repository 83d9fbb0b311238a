"""Waiting for an Ingress's load balancer: address, live config, a healthy server per backend."""
from __future__ import annotations

import time

import ray

from emulator.errors import KubemuError


def ingress_state(cluster, namespace: str, name: str) -> tuple[bool, str]:
    """(ready, why not): the Ingress has an address, no errors, its current version is live
    on the proxy and in the VPC, and every backend it uses has a server passing health checks."""
    ing = ray.get(cluster.api.get.remote("Ingress", namespace, name))
    if ing is None:
        return False, "the Ingress does not exist"
    status = ing.get("status") or {}
    if status.get("errors"):
        return False, "; ".join(status["errors"])
    if not (status.get("loadBalancer") or {}).get("ingress"):
        return False, "no address yet"
    if cluster.cloud is None:
        return False, "no cloud controller"
    entry = ray.get(cluster.cloud.ingresses.remote()).get("ingresses", {}).get(f"{namespace}/{name}")
    if entry is None or entry["applied_rv"] != ing["metadata"].get("resourceVersion"):
        return False, "the load balancer does not run this version yet"
    servers = ray.get(gfe_agent(cluster).proxy_servers.remote())
    for be in entry["backends"]:
        if not any(st.startswith("UP") for st in servers.get(be, {}).values()):
            return False, f"no healthy server in {be} ({servers.get(be) or 'none'})"
    return True, ""


def gfe_agent(cluster):
    """The Google front end host's agent (the prober host runs the proxy)."""
    return cluster.agents[cluster.plan.probers[0].name]


def wait_ingress(cluster, namespace: str, name: str, timeout: float) -> float:
    """Wait until `ingress_state` is ready; KubemuError naming the reason otherwise."""
    t0 = time.time()
    why = ""
    while time.time() - t0 < timeout:
        ok, why = ingress_state(cluster, namespace, name)
        if ok:
            return time.time() - t0
        time.sleep(0.1)
    raise KubemuError(f"Ingress {namespace}/{name} not ready after {timeout:g}s: {why}")


def ingress_ip(cluster, namespace: str, name: str) -> str:
    """The external address in an Ingress's status (the `{ingressip:NAME}` placeholder)."""
    ing = ray.get(cluster.api.get.remote("Ingress", namespace, name))
    ips = ((ing or {}).get("status", {}).get("loadBalancer") or {}).get("ingress") or []
    if not ips:
        raise KubemuError(f"Ingress {namespace}/{name} has no address yet")
    return ips[0]["ip"]
