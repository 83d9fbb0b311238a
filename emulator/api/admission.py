"""Admission of Services (and the name label of Namespaces), as the real API server does it.

ClusterIPs come from the service range and stay for the Service's whole life; node
ports (30000-32767) for NodePort and LoadBalancer Services; a healthCheckNodePort for
LoadBalancer Services with externalTrafficPolicy Local.
"""
from __future__ import annotations

from emulator.api.ipam import IpAllocator, PortAllocator


class ServiceAdmission:
    """Defaults and allocates a Service's addresses and ports on create and update."""

    def __init__(self, service_range: str) -> None:
        self.ips = IpAllocator(service_range)
        self.ports = PortAllocator()

    def admit(self, svc: dict, old: dict | None) -> dict:
        """Fill in clusterIP, protocols, nodePorts, healthCheckNodePort; keep old ones."""
        spec = svc.setdefault("spec", {})
        old_spec = (old or {}).get("spec", {})
        typ = spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if typ in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports", []):
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
        if old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        elif spec.get("clusterIP") != "None":
            spec["clusterIP"] = self.ips.allocate(spec.get("clusterIP"))
        if spec.get("clusterIP") and spec["clusterIP"] != "None":
            spec["clusterIPs"] = [spec["clusterIP"]]
        self._node_ports(spec, old_spec, typ)
        wants_hc = typ == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"
        if wants_hc:
            spec["healthCheckNodePort"] = old_spec.get("healthCheckNodePort") or \
                self.ports.allocate(spec.get("healthCheckNodePort"))
        else:
            self.ports.release(old_spec.get("healthCheckNodePort"))
            spec.pop("healthCheckNodePort", None)
        return svc

    def _node_ports(self, spec: dict, old_spec: dict, typ: str) -> None:
        old_by_key = {(p.get("name"), p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                      for p in old_spec.get("ports", [])}
        kept = set()
        for p in spec.get("ports", []):
            if typ not in ("NodePort", "LoadBalancer"):
                p.pop("nodePort", None)
                continue
            prev = old_by_key.get((p.get("name"), p.get("port"), p["protocol"]))
            if prev and (not p.get("nodePort") or p["nodePort"] == prev):
                p["nodePort"] = prev
            elif p.get("nodePort") in old_by_key.values() and p["nodePort"] not in kept:
                pass    # a port this Service already holds (the port was renamed or renumbered)
            else:
                p["nodePort"] = self.ports.allocate(p.get("nodePort"))
            kept.add(p["nodePort"])
        for port in old_by_key.values():
            if port and port not in kept:
                self.ports.release(port)

    def restore(self, svc: dict) -> None:
        """Mark what a stored Service holds as taken (after an API server restart)."""
        spec = svc.get("spec", {})
        if spec.get("clusterIP") not in (None, "None"):
            self.ips.reserve(spec["clusterIP"])
        for port in [p.get("nodePort") for p in spec.get("ports", [])] + [spec.get("healthCheckNodePort")]:
            if port:
                self.ports.allocate(port)

    def release(self, svc: dict) -> None:
        """Free everything a deleted Service held."""
        spec = svc.get("spec", {})
        if spec.get("clusterIP") not in (None, "None"):
            self.ips.release(spec["clusterIP"])
        for p in spec.get("ports", []):
            self.ports.release(p.get("nodePort"))
        self.ports.release(spec.get("healthCheckNodePort"))


def admit_namespace(ns: dict) -> dict:
    """Namespaces carry `kubernetes.io/metadata.name: <name>`, as the real API server sets it."""
    meta = ns.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": meta["name"]}
    return ns
