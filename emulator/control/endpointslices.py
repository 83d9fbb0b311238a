"""The EndpointSlice controller's pure core: a Service's slices from its pods.

One slice per distinct set of resolved ports (named targetPorts are resolved per pod,
so pods that name a port differently land in different slices, as in Kubernetes).
Conditions: ready = pod Ready and not terminating; serving = pod Ready; terminating =
deletionTimestamp set. Pods without an IP are left out; publishNotReadyAddresses
marks every endpoint ready.
"""
from __future__ import annotations

from emulator.control.objects import (condition, is_terminating, labels, name, namespace,
                                      owner_ref, selector_matches, short_hash)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice-controller.k8s.io"


def resolve_target_port(svc_port: dict, pod: dict) -> int | None:
    """The pod's port number for a Service port (by number, or by container port name)."""
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in pod.get("spec", {}).get("containers", []) or []:
        for p in c.get("ports", []) or []:
            if p.get("name") == target and p.get("protocol", "TCP") == svc_port.get("protocol", "TCP"):
                return p["containerPort"]
    return None


def desired_slices(svc: dict, pods: list[dict]) -> list[dict]:
    """The EndpointSlices a Service with a selector should have now."""
    spec = svc.get("spec", {})
    selector = spec.get("selector")
    if not selector:
        return []
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple, list[dict]] = {}
    for pod in pods:
        if namespace(pod) != namespace(svc) or not selector_matches(selector, labels(pod)):
            continue
        ip = pod.get("status", {}).get("podIP")
        if not ip or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        ports = []
        for sp in spec.get("ports", []):
            num = resolve_target_port(sp, pod)
            if num is not None:
                ports.append((sp.get("name", ""), num, sp.get("protocol", "TCP")))
        if not ports:
            continue
        ready_pod = condition(pod, "Ready")
        term = is_terminating(pod)
        ep = {"addresses": [ip],
              "conditions": {"ready": (ready_pod and not term) or publish,
                             "serving": ready_pod or publish, "terminating": term},
              "nodeName": pod.get("spec", {}).get("nodeName"),
              "targetRef": {"kind": "Pod", "namespace": namespace(pod), "name": name(pod),
                            "uid": pod["metadata"].get("uid")}}
        pod_spec = pod.get("spec") or {}
        if pod_spec.get("hostname") and pod_spec.get("subdomain") == name(svc):
            ep["hostname"] = pod_spec["hostname"]      # the headless Service's per-pod DNS name
        zone = pod.get("metadata", {}).get("annotations", {}).get("kubemu.io/zone")
        if zone:
            ep["zone"] = zone
        groups.setdefault(tuple(sorted(ports)), []).append(ep)
    if not groups:
        # A Service with no endpoints still has one empty slice with its ports.
        groups[tuple(sorted((p.get("name", ""), None, p.get("protocol", "TCP"))
                            for p in spec.get("ports", [])))] = []
    out = []
    for ports, eps in sorted(groups.items(), key=lambda kv: str(kv[0])):
        eps.sort(key=lambda e: e["addresses"][0])
        out.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name(svc)}-{short_hash([list(p) for p in ports])[:5]}",
                         "namespace": namespace(svc),
                         "labels": {SERVICE_NAME_LABEL: name(svc),
                                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY},
                         "ownerReferences": [owner_ref(svc)]},
            "addressType": "IPv4",
            "endpoints": eps,
            "ports": [{"name": n, "port": num, "protocol": proto} for n, num, proto in ports],
        })
    return out


def slice_differs(have: dict, want: dict) -> bool:
    """True when an existing slice must be rewritten."""
    return (have.get("endpoints") != want["endpoints"] or have.get("ports") != want["ports"]
            or have.get("metadata", {}).get("labels") != want["metadata"]["labels"])
