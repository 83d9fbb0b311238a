"""What steps share: the cluster's client, the scenario, flow records and summaries, saved values."""
from __future__ import annotations

import time
from typing import Any

from emulator.config.templates import Placeholder
from emulator.errors import KubemuError
from emulator.runner import flows
from emulator.runner.client import ClusterClient


class StepContext:
    """What steps share: the cluster (asked through `client`), the scenario, flow records and summaries."""

    def __init__(self, cluster, scenario=None) -> None:
        self.cluster = cluster
        self.client = ClusterClient(cluster)
        self.scenario = scenario
        self.index = 0
        self.records: dict[str, list[dict]] = {}
        self.summaries: dict[str, Any] = {}
        self.flows = flows.FlowTable()
        self.vars: dict[str, str] = {}   # `save` steps' values, `{var:NAME}`
        self.started = time.time()   # `at:` of fault steps counts from here

    def resolve(self, p: Placeholder) -> str:
        """The run-time value of a `{kind:ref}` placeholder."""
        if p.kind == "var":
            if p.name not in self.vars:
                raise KubemuError(f"no saved value {p.name!r}")
            return self.vars[p.name]
        plan = self.cluster.plan
        if p.kind in ("node", "host"):
            for h in plan.hosts:
                if h.name == p.name:
                    return h.ip
            raise KubemuError(f"no {p.kind} {p.name}")
        if p.kind in ("pod", "poddns"):
            pod = self.client.get("Pod", p.namespace, p.name)
            ip = (pod or {}).get("status", {}).get("podIP")
            if not ip:
                raise KubemuError(f"pod {p.namespace}/{p.name} has no IP")
            return ip if p.kind == "pod" else f"{ip.replace('.', '-')}.{p.namespace}.pod.cluster.local"
        if p.kind == "ingressip":
            return self.client.ingress_ip(p.namespace, p.name)
        svc = self.client.get("Service", p.namespace, p.name)
        if svc is None:
            raise KubemuError(f"no Service {p.namespace}/{p.name}")
        spec = svc["spec"]
        if p.kind == "clusterip":
            return spec["clusterIP"]
        if p.kind == "hcport":
            if not spec.get("healthCheckNodePort"):
                raise KubemuError(f"Service {p.namespace}/{p.name} has no healthCheckNodePort")
            return str(spec["healthCheckNodePort"])
        if p.kind == "lbip":
            ingress = svc.get("status", {}).get("loadBalancer", {}).get("ingress") or []
            if not ingress:
                raise KubemuError(f"Service {p.namespace}/{p.name} has no load balancer IP yet")
            return ingress[0]["ip"]
        ports = [q for q in spec.get("ports", []) if p.port in (None, q.get("name"), str(q.get("port")))]
        if not ports or not ports[0].get("nodePort"):
            raise KubemuError(f"Service {p.namespace}/{p.name} has no node port {p.port or ''}".rstrip())
        return str(ports[0]["nodePort"])
