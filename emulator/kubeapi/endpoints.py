"""v1 Endpoints, a read-only view derived from the EndpointSlices kubemu stores (`kubectl get ep`)."""
from __future__ import annotations

import uuid
from typing import Any

SERVICE_LABEL = "kubernetes.io/service-name"
SLICE_ONLY_LABELS = (SERVICE_LABEL, "endpointslice.kubernetes.io/managed-by")


def service_of(slice_: dict) -> str | None:
    """The Service a slice belongs to."""
    return ((slice_.get("metadata") or {}).get("labels") or {}).get(SERVICE_LABEL)


def endpoints_from_slices(namespace: str, service: str, slices: list[dict]) -> dict:
    """The Endpoints object of one Service from its slices (wire form in, wire form out)."""
    subsets: dict[tuple, dict[str, list]] = {}
    for s in slices:
        ports = tuple((p.get("name") or "", p.get("port"), p.get("protocol", "TCP")) for p in s.get("ports") or []
                      if p.get("port") is not None)
        subset = subsets.setdefault(ports, {"addresses": [], "notReadyAddresses": []})
        for ep in s.get("endpoints") or []:
            ready = (ep.get("conditions") or {}).get("ready") is not False
            for ip in ep.get("addresses") or []:
                addr: dict[str, Any] = {"ip": ip}
                for k in ("nodeName", "targetRef"):
                    if ep.get(k):
                        addr[k] = ep[k]
                subset["addresses" if ready else "notReadyAddresses"].append(addr)
    out_subsets = []
    for ports, addrs in sorted(subsets.items(), key=lambda kv: str(kv[0])):
        sub = {k: sorted(v, key=lambda a: a["ip"]) for k, v in addrs.items() if v}
        if not sub:
            continue
        sub["ports"] = [{k: v for k, v in (("name", n), ("port", p), ("protocol", pr)) if v != ""}
                        for n, p, pr in ports]
        out_subsets.append(sub)
    metas = [s.get("metadata") or {} for s in slices]
    labels = {k: v for m in metas for k, v in (m.get("labels") or {}).items() if k not in SLICE_ONLY_LABELS}
    meta: dict[str, Any] = {"name": service, "namespace": namespace,
                            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kubemu-endpoints/{namespace}/{service}")),
                            "resourceVersion": str(max((int(m.get("resourceVersion") or 0) for m in metas), default=0))}
    created = sorted(m["creationTimestamp"] for m in metas if m.get("creationTimestamp"))
    if created:
        meta["creationTimestamp"] = created[0]
    if labels:
        meta["labels"] = labels
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta}
    if out_subsets:
        out["subsets"] = out_subsets
    return out


def endpoints_list(slices: list[dict]) -> list[dict]:
    """Endpoints for every Service that has slices, sorted by namespace and name."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for s in slices:
        svc = service_of(s)
        if svc:
            groups.setdefault(((s.get("metadata") or {}).get("namespace", ""), svc), []).append(s)
    return [endpoints_from_slices(ns, svc, group) for (ns, svc), group in sorted(groups.items())]


def endpoints_cell(ep: dict) -> str:
    """The ENDPOINTS column: ip:port list, the first three then `+ N more...`."""
    pairs = [f"{a['ip']}:{p['port']}" for s in ep.get("subsets") or [] for p in s.get("ports") or []
             for a in s.get("addresses") or []]
    if not pairs:
        return "<none>"
    return ",".join(pairs[:3]) + (f" + {len(pairs) - 3} more..." if len(pairs) > 3 else "")
