"""Load balancer IPs for `type: LoadBalancer` Services, as GKE's service controller assigns them.

Pure: Services in, `status.loadBalancer.ingress` out.

- External (the default): an address from the topology's external range. A requested
  `spec.loadBalancerIP` is used when it is in the range and free; otherwise the Service
  gets no address and an error (GKE: "requested ip ... is neither static nor assigned to
  the LB", the load balancer stays pending). Without a request: the next free address.
- Internal (annotation `networking.gke.io/load-balancer-type: "Internal"`, or the older
  `cloud.google.com/load-balancer-type: "Internal"`; GKE also accepts "internal", and
  `spec.loadBalancerClass: networking.gke.io/l4-regional-internal`): an address from the
  VPC subnet, never one of GCP's four reserved addresses (network, gateway, second-to-last,
  broadcast) nor one used by a node or VM. Unrequested internal addresses are taken from
  the top of the subnet downwards, away from the node and VM addresses the run planner
  hands out from the bottom.
- An address stays with its Service for the Service's life (same UID): it is released
  when the Service is deleted, stops being a LoadBalancer, changes scheme (GKE deletes and
  recreates the load balancer) or requests a different `loadBalancerIP`. Removing
  `loadBalancerIP` keeps the current address (GKE keeps the forwarding rule's address).
- A restarted controller adopts the addresses already written in Services' status, so
  nothing changes across restarts (`sync` adopts every one before allocating any new one).
- `spec.loadBalancerClass` other than GKE's classes: not ours, left alone (as GKE does).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

from emulator.cloud.names import service_key
from emulator.errors import KubemuError

LB_TYPE_ANNOTATION = "networking.gke.io/load-balancer-type"
LB_TYPE_ANNOTATION_OLD = "cloud.google.com/load-balancer-type"
INTERNAL_VALUES = ("Internal", "internal")
GKE_LB_CLASSES = {"networking.gke.io/l4-regional-external": "external",
                  "networking.gke.io/l4-regional-internal": "internal"}


class LbIpError(KubemuError):
    """A load balancer address cannot be given (requested one unusable, range full)."""


def is_load_balancer(svc: dict) -> bool:
    """A `type: LoadBalancer` Service that GKE's controllers implement."""
    spec = svc.get("spec", {})
    if spec.get("type") != "LoadBalancer":
        return False
    cls = spec.get("loadBalancerClass")
    return cls is None or cls in GKE_LB_CLASSES


def lb_scheme(svc: dict) -> str:
    """"internal" or "external", from loadBalancerClass or the load balancer type annotation."""
    cls = svc.get("spec", {}).get("loadBalancerClass")
    if cls in GKE_LB_CLASSES:
        return GKE_LB_CLASSES[cls]
    ann = svc.get("metadata", {}).get("annotations") or {}
    value = ann.get(LB_TYPE_ANNOTATION, ann.get(LB_TYPE_ANNOTATION_OLD))
    return "internal" if value in INTERNAL_VALUES else "external"


def status_ip(svc: dict) -> str | None:
    """The first IP of `status.loadBalancer.ingress`, if any."""
    ingress = (svc.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
    return ingress[0].get("ip") if ingress else None


@dataclass(frozen=True)
class Assignment:
    """An address held by one Service (identified by key and UID)."""

    key: str
    uid: str | None
    scheme: str
    ip: str
    requested: str | None = None


@dataclass
class SyncResult:
    """What `LbIpAllocator.sync` decided: ingress to write per LB Service, and errors."""

    ingress: dict[str, list[dict]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    released: list[Assignment] = field(default_factory=list)


class LbIpAllocator:
    """Assigns and remembers load balancer addresses; no I/O."""

    def __init__(self, external_range: str, subnet: str) -> None:
        self.external = ipaddress.ip_network(external_range)
        self.subnet = ipaddress.ip_network(subnet)
        self.assigned: dict[str, Assignment] = {}

    # --- address pools ---
    def _usable(self, scheme: str, ip: ipaddress.IPv4Address, host_ips: set[str]) -> str | None:
        """Why `ip` cannot serve a load balancer of `scheme` (None when it can)."""
        net = self.subnet if scheme == "internal" else self.external
        if ip not in net:
            return f"{ip} is not in the {'VPC subnet' if scheme == 'internal' else 'external range'} {net}"
        if ip in self._reserved(scheme):
            return f"{ip} is a reserved address of {net}"
        if scheme == "internal" and str(ip) in host_ips:
            return f"{ip} is used by a node or VM"
        holder = self._holder(str(ip))
        if holder is not None:
            return f"{ip} is already used by the load balancer of {holder}"
        return None

    def _reserved(self, scheme: str) -> set[ipaddress.IPv4Address]:
        net = self.subnet if scheme == "internal" else self.external
        first, last = net.network_address, net.broadcast_address
        if scheme == "internal" and net.num_addresses >= 4:
            # GCP reserves network, gateway (.1), second-to-last and broadcast.
            return {first, first + 1, last - 1, last}
        return {first, last} if net.num_addresses > 2 else set()

    def _holder(self, ip: str) -> str | None:
        return next((a.key for a in self.assigned.values() if a.ip == ip), None)

    def _candidates(self, scheme: str) -> Iterable[ipaddress.IPv4Address]:
        net = self.subnet if scheme == "internal" else self.external
        if scheme == "internal":
            addr = net.broadcast_address
            while addr >= net.network_address:
                yield addr
                if addr == net.network_address:
                    return
                addr -= 1
        else:
            yield from (net.network_address + i for i in range(net.num_addresses))

    # --- one Service ---
    def allocate(self, key: str, uid: str | None, scheme: str, requested: str | None,
                 host_ips: set[str] = frozenset()) -> Assignment:
        """Give `key` an address (the requested one, or the next free); LbIpError otherwise."""
        if requested:
            try:
                ip = ipaddress.ip_address(requested)
            except ValueError:
                raise LbIpError(f"loadBalancerIP {requested!r} is not an IPv4 address") from None
            why = self._usable(scheme, ip, host_ips)
            if why:
                raise LbIpError(f"requested loadBalancerIP {requested} cannot be used: {why}")
            return self._take(Assignment(key, uid, scheme, str(ip), requested))
        for ip in self._candidates(scheme):
            if self._usable(scheme, ip, host_ips) is None:
                return self._take(Assignment(key, uid, scheme, str(ip), None))
        net = self.subnet if scheme == "internal" else self.external
        raise LbIpError(f"no free {scheme} load balancer address left in {net}")

    def adopt(self, key: str, uid: str | None, scheme: str, ip: str, requested: str | None,
              host_ips: set[str] = frozenset()) -> Assignment | None:
        """Take over an address already in the Service's status, when it is still valid."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if self._usable(scheme, addr, host_ips) is not None:
            return None
        return self._take(Assignment(key, uid, scheme, str(addr), requested))

    def _take(self, a: Assignment) -> Assignment:
        self.assigned[a.key] = a
        return a

    def release(self, key: str) -> Assignment | None:
        """Free the address of `key` (Service deleted or no longer a load balancer)."""
        return self.assigned.pop(key, None)

    # --- all Services ---
    def sync(self, services: Iterable[dict], host_ips: Iterable[str] = ()) -> SyncResult:
        """Bring assignments in line with the Services; ingress for every LB Service.

        Order: release what is stale, adopt addresses already in status (restart), then
        allocate for the rest oldest Service first (requested addresses before others).
        """
        hosts = set(host_ips)
        lbs = {service_key(s): s for s in services if is_load_balancer(s)}
        out = SyncResult()
        for key, a in list(self.assigned.items()):
            svc = lbs.get(key)
            if svc is None or not self._still_valid(a, svc):
                out.released.append(self.release(key))  # type: ignore[arg-type]
        todo = []
        for key, svc in lbs.items():
            if key in self.assigned:
                continue
            uid, scheme, requested = _identity(svc)
            have = status_ip(svc)
            if have and (not requested or requested == have) and \
                    self.adopt(key, uid, scheme, have, requested, hosts) is not None:
                continue
            todo.append(svc)
        todo.sort(key=lambda s: (not _identity(s)[2], s.get("metadata", {}).get("creationTimestamp") or 0,
                                 service_key(s)))
        for svc in todo:
            uid, scheme, requested = _identity(svc)
            try:
                self.allocate(service_key(svc), uid, scheme, requested, hosts)
            except LbIpError as e:
                out.errors[service_key(svc)] = str(e)
        for key in lbs:
            a = self.assigned.get(key)
            out.ingress[key] = [{"ip": a.ip}] if a else []
        return out

    @staticmethod
    def _still_valid(a: Assignment, svc: dict) -> bool:
        uid, scheme, requested = _identity(svc)
        if a.uid is not None and uid is not None and a.uid != uid:
            return False  # deleted and created again
        if a.scheme != scheme:
            return False
        return not requested or requested == a.ip

    def ip_of(self, key: str) -> str | None:
        a = self.assigned.get(key)
        return a.ip if a else None


def _identity(svc: dict) -> tuple[str | None, str, str | None]:
    """(uid, scheme, requested loadBalancerIP or None)."""
    return (svc.get("metadata", {}).get("uid"), lb_scheme(svc),
            svc.get("spec", {}).get("loadBalancerIP") or None)


def desired_status(svc: dict, ingress: list[dict] | None) -> dict | None:
    """The `status` patch to write for a Service, or None when its status is already right.

    `ingress` None: the Service is not a load balancer of ours (clear a stale ingress).
    """
    have = (svc.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
    want = ingress or []
    if have == want:
        return None
    return {"loadBalancer": {"ingress": want} if want else {}}
