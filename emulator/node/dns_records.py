"""Cluster DNS records as kube-dns serves them (kubernetes/dns docs/specification.md, 1.1.0).

A pure core: `build_zone(services, slices)` turns Services and EndpointSlices into a
zone (lowercase name -> record type -> values), `lookup(zone, name, type)` answers one
question from it. kube-dns's own rules, for `<zone>` = cluster.local:

- ClusterIP Service: `<svc>.<ns>.svc.<zone>` A the ClusterIP; SRV
  `_<port>._<proto>.<svc>.<ns>.svc.<zone>` (named ports only) -> the Service port on
  `<svc>.<ns>.svc.<zone>` (priority 10, weight 100 / the name's SRV records, as
  kube-dns's SkyDNS core answers); PTR of the ClusterIP -> that name.
- Headless Service (`clusterIP: None`): `<svc>...` A every *ready* endpoint (the slice's
  `ready`, which the EndpointSlice controller sets for every endpoint when
  `publishNotReadyAddresses` is true); per endpoint `<hostname>.<svc>...` A its IP, where
  hostname is the endpoint's `hostname` (the pod's `hostname` when its `subdomain` is the
  Service) or else a system-assigned label (kube-dns: a hex hash; here the FNV-1a 32-bit
  hash of the IP in hex); SRV per named port and ready endpoint -> the endpoint's port on
  `<hostname>.<svc>...`; PTR of a ready endpoint IP -> `<hostname>.<svc>...` when the
  endpoint has a `hostname` (kube-dns keeps one reverse record per IP: the first Service
  in namespace/name order wins here).
- ExternalName Service: `<svc>...` CNAME `spec.externalName`.
- Pods: `<a>-<b>-<c>-<d>.<ns>.pod.<zone>` A a.b.c.d, for any such name (kube-dns does not
  check that a pod has the IP: "pods insecure").
- `dns-version.<zone>` TXT "1.1.0".
"""
from __future__ import annotations

import ipaddress
from typing import Any, Iterable

DOMAIN = "cluster.local"
SCHEMA_VERSION = "1.1.0"
TTL = 30                       # kube-dns's default record TTL
SRV_PRIORITY = 10              # kube-dns (SkyDNS): priority 10, weight 100 / records of the name
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
Zone = dict[str, dict[str, list[Any]]]


def fnv1a32(text: str) -> int:
    """The 32-bit FNV-1a hash of `text`."""
    h = 0x811C9DC5
    for b in text.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def endpoint_label(endpoint: dict) -> str:
    """An endpoint's hostname: its `hostname` field, else a label made from its IP."""
    return endpoint.get("hostname") or f"{fnv1a32(endpoint['addresses'][0]):x}"


def reverse_name(ip: str) -> str:
    """`4.3.2.1.in-addr.arpa` for 1.2.3.4."""
    return ipaddress.ip_address(ip).reverse_pointer


def _add(zone: Zone, name: str, rtype: str, value: Any) -> None:
    values = zone.setdefault(name.lower(), {}).setdefault(rtype, [])
    if value not in values:
        values.append(value)


def _meta(obj: dict) -> tuple[str, str]:
    return obj["metadata"].get("namespace", "default"), obj["metadata"]["name"]


def build_zone(services: Iterable[dict], slices: Iterable[dict], domain: str = DOMAIN) -> Zone:
    """Every record kube-dns would serve for these Services and EndpointSlices."""
    zone: Zone = {}
    _add(zone, f"dns-version.{domain}", "TXT", SCHEMA_VERSION)
    by_service: dict[tuple[str, str], list[dict]] = {}
    for s in slices:
        svc_name = (s["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc_name:
            by_service.setdefault((s["metadata"].get("namespace", "default"), svc_name), []).append(s)
    for svc in sorted(services, key=_meta):
        ns, name = _meta(svc)
        spec = svc.get("spec") or {}
        fqdn = f"{name}.{ns}.svc.{domain}"
        if spec.get("type") == "ExternalName":
            if spec.get("externalName"):
                _add(zone, fqdn, "CNAME", spec["externalName"].rstrip(".").lower())
            continue
        ip = spec.get("clusterIP")
        if ip and ip != "None":
            _add(zone, fqdn, "A", ip)
            _add(zone, reverse_name(ip), "PTR", fqdn)
            for p in spec.get("ports") or []:
                if p.get("name"):
                    srv = f"_{p['name']}._{p.get('protocol', 'TCP').lower()}.{fqdn}"
                    _add(zone, srv, "SRV", [SRV_PRIORITY, 100, p["port"], fqdn])
        elif ip == "None":
            _headless(zone, fqdn, by_service.get((ns, name), []))
    for records in zone.values():
        for srv in records.get("SRV", []):
            srv[1] = 100 // len(records["SRV"])
    return zone


def _headless(zone: Zone, fqdn: str, slices: list[dict]) -> None:
    """A, per-endpoint A, SRV and PTR records of a headless Service's ready endpoints."""
    eps = sorted(((ep, s.get("ports") or []) for s in slices for ep in s.get("endpoints") or []
                  if ep.get("addresses") and (ep.get("conditions") or {}).get("ready", True)),
                 key=lambda e: ipaddress.ip_address(e[0]["addresses"][0]))
    for ep, ports in eps:
        host = f"{endpoint_label(ep)}.{fqdn}"
        for addr in ep["addresses"]:
            _add(zone, fqdn, "A", addr)
            _add(zone, host, "A", addr)
            if ep.get("hostname") and "PTR" not in zone.get(reverse_name(addr), {}):
                _add(zone, reverse_name(addr), "PTR", host)
        for p in ports:
            if p.get("name") and p.get("port"):
                srv = f"_{p['name']}._{p.get('protocol', 'TCP').lower()}.{fqdn}"
                _add(zone, srv, "SRV", [SRV_PRIORITY, 100, p["port"], host])
    if not eps:
        zone.setdefault(fqdn.lower(), {})        # the name exists, with no address (NODATA)


def pod_address(name: str, domain: str = DOMAIN) -> str | None:
    """a.b.c.d for `a-b-c-d.<ns>.pod.<domain>`; None for any other name."""
    suffix = f".pod.{domain}"
    if not name.endswith(suffix):
        return None
    labels = name[: -len(suffix)].split(".")
    if len(labels) != 2:
        return None
    try:
        return str(ipaddress.IPv4Address(labels[0].replace("-", ".")))
    except ValueError:
        return None


def lookup(zone: Zone, name: str, rtype: str, domain: str = DOMAIN) -> tuple[str, list[tuple[str, str, Any]]]:
    """(rcode, answers) for one question: NOERROR with (name, type, value) records, NOERROR
    with none (the name exists, not this type), or NXDOMAIN. A CNAME answers every type."""
    name = name.rstrip(".").lower()
    pod_ip = pod_address(name, domain)
    if pod_ip is not None:
        return "NOERROR", [(name, "A", pod_ip)] if rtype in ("A", "ANY") else []
    records = zone.get(name)
    if records is None:
        exists = any(k.endswith("." + name) for k in zone)     # an empty non-terminal
        return ("NOERROR" if exists else "NXDOMAIN"), []
    if "CNAME" in records and rtype != "CNAME":
        return "NOERROR", [(name, "CNAME", v) for v in records["CNAME"]]
    types = records if rtype == "ANY" else {rtype: records.get(rtype, [])}
    return "NOERROR", [(name, t, v) for t, vs in types.items() for v in vs]


def answer_text(rtype: str, value: Any) -> str:
    """A record's data as `dig +short` prints it (names without the final dot)."""
    if rtype == "SRV":
        return " ".join(str(v) for v in value)
    if rtype == "TXT":
        return f'"{value}"'
    return str(value)
