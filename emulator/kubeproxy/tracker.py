"""Change tracking for Services and EndpointSlices, kept apart from rendering.

Event handlers only record what they saw (`ServiceChangeTracker.update`,
`EndpointsChangeTracker.update`); at sync time `ServicePortMap.update` and
`EndpointsMap.update` fold the recorded changes into the applied state and return the
Services that really changed, so a partial sync rewrites only their chains.
"""
from __future__ import annotations

import threading
from typing import Any, Iterator

from emulator.kubeproxy.model import (Endpoint, NamespacedName, ServicePort, ServicePortName,
                                      parse_endpoint_slice, parse_service, service_key, slice_service)

EVENTS = ("ADDED", "MODIFIED", "DELETED")
PortsByName = dict[ServicePortName, ServicePort]
EndpointsByName = dict[ServicePortName, list[Endpoint]]


def _check_event(event: str) -> None:
    if event not in EVENTS:
        raise ValueError(f"unknown watch event {event!r} (expected one of {', '.join(EVENTS)})")


class ServiceChangeTracker:
    """Records the latest ports of every Service seen since the last sync."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[NamespacedName, PortsByName] = {}

    def update(self, event: str, obj: dict[str, Any]) -> bool:
        """Record one watch event; True when it was recorded."""
        _check_event(event)
        ports = {} if event == "DELETED" else parse_service(obj)
        with self._lock:
            self._pending[service_key(obj)] = ports
        return True

    def pending(self) -> int:
        """How many Services have unapplied changes."""
        with self._lock:
            return len(self._pending)

    def take(self) -> dict[NamespacedName, PortsByName]:
        """Hand over and forget the recorded changes."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending


class EndpointsChangeTracker:
    """Caches EndpointSlices per Service and records which Services they touched."""

    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self._lock = threading.Lock()
        self._slices: dict[NamespacedName, dict[str, EndpointsByName]] = {}
        self._pending: set[NamespacedName] = set()

    def update(self, event: str, obj: dict[str, Any]) -> bool:
        """Record one EndpointSlice watch event; False for slices of no Service."""
        _check_event(event)
        svc = slice_service(obj)
        if svc is None:
            return False
        slice_name = (obj.get("metadata") or {}).get("name") or ""
        parsed = None if event == "DELETED" else parse_endpoint_slice(obj, self.node_name)
        with self._lock:
            slices = self._slices.setdefault(svc, {})
            if parsed is None:
                slices.pop(slice_name, None)
                if not slices:
                    del self._slices[svc]
            else:
                slices[slice_name] = parsed
            self._pending.add(svc)
        return True

    def pending(self) -> int:
        """How many Services have unapplied endpoint changes."""
        with self._lock:
            return len(self._pending)

    def take(self) -> dict[NamespacedName, EndpointsByName]:
        """Merged endpoints of every Service touched since the last call."""
        with self._lock:
            pending, self._pending = self._pending, set()
            return {svc: _merge(self._slices.get(svc, {})) for svc in pending}


def _merge(slices: dict[str, EndpointsByName]) -> EndpointsByName:
    """Union of a Service's slices per port, deduplicated by IP:port, sorted like kube-proxy."""
    merged: dict[ServicePortName, dict[str, Endpoint]] = {}
    for slice_name in sorted(slices):
        for spn, endpoints in slices[slice_name].items():
            seen = merged.setdefault(spn, {})
            for ep in endpoints:
                old = seen.get(ep.string)
                if old is None or (ep.ready and not old.ready):
                    seen[ep.string] = ep
    return {spn: sorted(eps.values(), key=lambda e: e.string) for spn, eps in merged.items()}


class ServicePortMap:
    """Applied Service ports (what the last sync rendered from)."""

    def __init__(self) -> None:
        self._by_service: dict[NamespacedName, PortsByName] = {}
        # ClusterIPs of UDP ports removed by the latest `update` (their conntrack
        # entries must go, as kube-proxy's DeletedUDPClusterIPs).
        self.deleted_udp_cluster_ips: set[str] = set()

    def update(self, tracker: ServiceChangeTracker) -> set[NamespacedName]:
        """Apply recorded changes; return the Services whose ports really changed."""
        changed = set()
        self.deleted_udp_cluster_ips = set()
        for svc, ports in tracker.take().items():
            old = self._by_service.get(svc, {})
            if old != ports:
                changed.add(svc)
                self.deleted_udp_cluster_ips.update(sp.cluster_ip for spn, sp in old.items()
                                                    if sp.protocol == "UDP" and spn not in ports)
            if ports:
                self._by_service[svc] = ports
            else:
                self._by_service.pop(svc, None)
        return changed

    def __iter__(self) -> Iterator[ServicePort]:
        for ports in self._by_service.values():
            yield from ports.values()

    def __len__(self) -> int:
        return sum(len(p) for p in self._by_service.values())

    def ports_of(self, svc: NamespacedName) -> PortsByName:
        """The ports of one Service (empty when unknown)."""
        return self._by_service.get(svc, {})

    def health_check_node_ports(self) -> dict[NamespacedName, int]:
        """healthCheckNodePort of every Service that has one."""
        out = {}
        for svc, ports in self._by_service.items():
            for sp in ports.values():
                if sp.health_check_node_port:
                    out[svc] = sp.health_check_node_port
        return out


class EndpointsMap:
    """Applied endpoints per Service port."""

    def __init__(self) -> None:
        self._by_service: dict[NamespacedName, EndpointsByName] = {}
        self.total = 0
        # Found by the latest `update`, for UDP conntrack cleanup (kube-proxy's
        # detectStaleConntrackEntries): serving endpoints that were removed or changed,
        # as (port, endpoint IP), and ports that went from no serving endpoint to some.
        self.deleted_udp_endpoints: list[tuple[ServicePortName, str]] = []
        self.newly_active_udp: set[ServicePortName] = set()

    def update(self, tracker: EndpointsChangeTracker) -> set[NamespacedName]:
        """Apply recorded changes; return the Services whose endpoints really changed."""
        changed = set()
        self.deleted_udp_endpoints, self.newly_active_udp = [], set()
        for svc, eps in tracker.take().items():
            old = self._by_service.get(svc, {})
            if old != eps:
                changed.add(svc)
                self._detect_stale_udp(old, eps)
            self.total -= sum(len(v) for v in old.values())
            self.total += sum(len(v) for v in eps.values())
            if eps:
                self._by_service[svc] = eps
            else:
                self._by_service.pop(svc, None)
        return changed

    def _detect_stale_udp(self, old: EndpointsByName, new: EndpointsByName) -> None:
        for spn in old.keys() | new.keys():
            if spn.protocol != "UDP":
                continue
            before, after = old.get(spn, []), new.get(spn, [])
            kept = set(after)
            self.deleted_udp_endpoints += [(spn, ep.ip) for ep in before if ep.serving and ep not in kept]
            if any(ep.serving for ep in after) and not any(ep.serving for ep in before):
                self.newly_active_udp.add(spn)

    def get(self, spn: ServicePortName) -> list[Endpoint]:
        """Endpoints of one Service port (empty when none)."""
        return self._by_service.get(spn.nsn, {}).get(spn, [])

    def local_ready_endpoints(self) -> dict[NamespacedName, int]:
        """Distinct local ready endpoint IPs per Service (what health checks report)."""
        out = {}
        for svc, by_port in self._by_service.items():
            ips = {ep.ip for eps in by_port.values() for ep in eps if ep.ready and ep.is_local}
            if ips:
                out[svc] = len(ips)
        return out
