"""Server-side printing: meta.k8s.io/v1 Tables with the columns of Kubernetes' own printers.

Column names, priorities (1 = `-o wide`) and cell formats follow
pkg/printers/internalversion/printers.go.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from emulator.kubeapi.endpoints import endpoints_cell
from emulator.kubeapi.wire import human_duration, parse_time

NONE = "<none>"
Row = list[Any]


def _col(name: str, priority: int = 0, typ: str = "string", fmt: str = "") -> dict:
    return {"name": name, "type": typ, "format": fmt, "description": name, "priority": priority}


def _age(obj: dict, now: float) -> str:
    t = (obj.get("metadata") or {}).get("creationTimestamp")
    if t is None:
        return "<unknown>"
    t = parse_time(t) if isinstance(t, str) else float(t)
    return human_duration(now - t)


def format_selector(sel: dict | None) -> str:
    """metav1.FormatLabelSelector: `app=web,tier in (a,b)`; empty -> <none>."""
    sel = sel or {}
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op, vals = e.get("operator"), ",".join(e.get("values") or [])
        parts.append({"In": f"{e['key']} in ({vals})", "NotIn": f"{e['key']} notin ({vals})",
                      "Exists": e["key"], "DoesNotExist": f"!{e['key']}"}.get(op, e["key"]))
    return ",".join(parts) or NONE


def _map_selector(sel: dict | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((sel or {}).items())) or NONE


def _condition(obj: dict, typ: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == typ:
            return c.get("status")
    return None


def pod_status(pod: dict) -> str:
    """The STATUS column: phase, container waiting/terminated reasons, Terminating."""
    st = pod.get("status") or {}
    reason = st.get("reason") or st.get("phase") or "Pending"
    for cs in reversed(st.get("containerStatuses") or []):
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    if (pod.get("metadata") or {}).get("deletionTimestamp") is not None and st.get("reason") != "NodeLost":
        reason = "Terminating"
    return reason


def _pod(pod: dict, now: float) -> Row:
    spec, st = pod.get("spec") or {}, pod.get("status") or {}
    total = len(spec.get("containers") or [])
    statuses = st.get("containerStatuses")
    if statuses is not None:
        ready = sum(1 for c in statuses if c.get("ready"))
        restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    else:   # kubemu's kubelet reports the Ready condition only
        ready = total if _condition(pod, "Ready") == "True" else 0
        restarts = 0
    gates = spec.get("readinessGates") or []
    gate_text = NONE
    if gates:
        ok = sum(1 for g in gates if _condition(pod, g.get("conditionType")) == "True")
        gate_text = f"{ok}/{len(gates)}"
    return [pod["metadata"]["name"], f"{ready}/{total}", pod_status(pod), restarts, _age(pod, now),
            st.get("podIP") or NONE, spec.get("nodeName") or NONE, st.get("nominatedNodeName") or NONE, gate_text]


def _service_external(svc: dict) -> str:
    spec = svc.get("spec") or {}
    typ = spec.get("type", "ClusterIP")
    ext = list(spec.get("externalIPs") or [])
    if typ == "ExternalName":
        return spec.get("externalName") or NONE
    if typ == "LoadBalancer":
        lb = [i.get("ip") or i.get("hostname") for i in
              ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
        ips = [x for x in lb if x] + ext
        return ",".join(ips) if ips else "<pending>"
    return ",".join(ext) if ext else NONE


def _service_ports(spec: dict) -> str:
    out = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol", "TCP")
        out.append(f"{p['port']}:{p['nodePort']}/{proto}" if p.get("nodePort") else f"{p.get('port')}/{proto}")
    return ",".join(out) or NONE


def _service(svc: dict, now: float) -> Row:
    spec = svc.get("spec") or {}
    return [svc["metadata"]["name"], spec.get("type", "ClusterIP"), spec.get("clusterIP") or NONE,
            _service_external(svc), _service_ports(spec), _age(svc, now), _map_selector(spec.get("selector"))]


def _node(node: dict, now: float) -> Row:
    st = node.get("status") or {}
    ready = _condition(node, "Ready")
    status = {"True": "Ready", None: "Unknown"}.get(ready, "NotReady")
    if (node.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in (node["metadata"].get("labels") or {})
                   if k.startswith("node-role.kubernetes.io/") and "/" in k)
    addrs = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    info = st.get("nodeInfo") or {}
    return [node["metadata"]["name"], status, ",".join(r for r in roles if r) or NONE, _age(node, now),
            info.get("kubeletVersion", ""), addrs.get("InternalIP") or NONE, addrs.get("ExternalIP") or NONE,
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _containers(obj: dict) -> tuple[str, str]:
    cs = ((((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _deployment(d: dict, now: float) -> Row:
    spec, st = d.get("spec") or {}, d.get("status") or {}
    names, images = _containers(d)
    return [d["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), _age(d, now), names, images,
            format_selector(spec.get("selector"))]


def _replicaset(rs: dict, now: float) -> Row:
    spec, st = rs.get("spec") or {}, rs.get("status") or {}
    names, images = _containers(rs)
    return [rs["metadata"]["name"], spec.get("replicas", 1), st.get("replicas", 0), st.get("readyReplicas", 0),
            _age(rs, now), names, images, format_selector(spec.get("selector"))]


def _endpointslice(s: dict, now: float) -> Row:
    ports = ",".join(str(p.get("port")) for p in s.get("ports") or [] if p.get("port") is not None) or "<unset>"
    addrs = [a for e in s.get("endpoints") or [] for a in e.get("addresses") or []]
    shown = ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")
    return [s["metadata"]["name"], s.get("addressType", ""), ports, shown or "<unset>", _age(s, now)]


def _ingress(ing: dict, now: float) -> Row:
    spec = ing.get("spec") or {}
    hosts = ",".join(r.get("host") or "*" for r in spec.get("rules") or []) or "*"
    lb = ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    addr = ",".join(i.get("ip") or i.get("hostname") or "" for i in lb)
    return [ing["metadata"]["name"], spec.get("ingressClassName") or NONE, hosts, addr,
            "80, 443" if spec.get("tls") else "80", _age(ing, now)]


def _event(ev: dict, now: float) -> Row:
    io = ev.get("involvedObject") or {}
    last = ev.get("lastTimestamp") or ev.get("eventTime") or (ev.get("metadata") or {}).get("creationTimestamp")
    seen = "<unknown>" if last is None else human_duration(now - (parse_time(last) if isinstance(last, str) else last))
    return [seen, ev.get("type", ""), ev.get("reason", ""), f"{(io.get('kind') or '').lower()}/{io.get('name', '')}",
            ev.get("message", "").strip()]


def _name_age(extra: Callable[[dict], list]) -> Callable[[dict, float], Row]:
    return lambda o, now: [o["metadata"]["name"], *extra(o), _age(o, now)]


PRINTERS: dict[str, tuple[list[dict], Callable[[dict, float], Row]]] = {
    "Pod": ([_col("Name", fmt="name"), _col("Ready"), _col("Status"), _col("Restarts", typ="string"), _col("Age"),
             _col("IP", 1), _col("Node", 1), _col("Nominated Node", 1), _col("Readiness Gates", 1)], _pod),
    "Service": ([_col("Name", fmt="name"), _col("Type"), _col("Cluster-IP"), _col("External-IP"),
                 _col("Port(s)"), _col("Age"), _col("Selector", 1)], _service),
    "Node": ([_col("Name", fmt="name"), _col("Status"), _col("Roles"), _col("Age"), _col("Version"),
              _col("Internal-IP", 1), _col("External-IP", 1), _col("OS-Image", 1), _col("Kernel-Version", 1),
              _col("Container-Runtime", 1)], _node),
    "Deployment": ([_col("Name", fmt="name"), _col("Ready"), _col("Up-to-date", typ="integer"),
                    _col("Available", typ="integer"), _col("Age"), _col("Containers", 1), _col("Images", 1),
                    _col("Selector", 1)], _deployment),
    "ReplicaSet": ([_col("Name", fmt="name"), _col("Desired", typ="integer"), _col("Current", typ="integer"),
                    _col("Ready", typ="integer"), _col("Age"), _col("Containers", 1), _col("Images", 1),
                    _col("Selector", 1)], _replicaset),
    "EndpointSlice": ([_col("Name", fmt="name"), _col("AddressType"), _col("Ports"), _col("Endpoints"),
                       _col("Age")], _endpointslice),
    "Ingress": ([_col("Name", fmt="name"), _col("Class"), _col("Hosts"), _col("Address"), _col("Ports"),
                 _col("Age")], _ingress),
    "NetworkPolicy": ([_col("Name", fmt="name"), _col("Pod-Selector"), _col("Age")],
                      _name_age(lambda o: [format_selector((o.get("spec") or {}).get("podSelector"))])),
    "Lease": ([_col("Name", fmt="name"), _col("Holder"), _col("Age")],
              _name_age(lambda o: [(o.get("spec") or {}).get("holderIdentity") or ""])),
    "Namespace": ([_col("Name", fmt="name"), _col("Status"), _col("Age")],
                  _name_age(lambda o: [(o.get("status") or {}).get("phase") or "Active"])),
    "Secret": ([_col("Name", fmt="name"), _col("Type"), _col("Data", typ="string"), _col("Age")],
               _name_age(lambda o: [o.get("type") or "Opaque", len(o.get("data") or {}) + len(o.get("stringData") or {})])),
    "Endpoints": ([_col("Name", fmt="name"), _col("Endpoints"), _col("Age")],
                  _name_age(lambda o: [endpoints_cell(o)])),
    "Event": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")], _event),
}
DEFAULT = ([_col("Name", fmt="name"), _col("Age")], _name_age(lambda o: []))


def _row_object(obj: dict, include: str) -> dict | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table(kind: str, objs: list[dict], resource_version: str = "", include: str = "Metadata",
          now: float | None = None, headers: bool = True, continue_token: str = "") -> dict:
    """A Table of wire-form objects of one kind."""
    now = time.time() if now is None else now
    cols, row = PRINTERS.get(kind, DEFAULT)
    rows = []
    for o in objs:
        r: dict[str, Any] = {"cells": row(o, now)}
        ro = _row_object(o, include)
        if ro is not None:
            r["object"] = ro
        rows.append(r)
    meta: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": cols if headers else [], "rows": rows}
