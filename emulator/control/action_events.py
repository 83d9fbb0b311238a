"""Which Events the controller manager's writes produce, as the real controllers report them.

Pure: the writes of one reconcile pass (and the objects as they were before it) in,
(component, involved object, reason, message, type) tuples out.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from emulator.control.objects import name, namespace

Lookup = Callable[[str, str, str], "dict | None"]   # (kind, namespace, name) -> cached object


class EventSpec(NamedTuple):
    """One event to record."""

    component: str
    involved: dict
    reason: str
    message: str
    type: str = "Normal"


def _owner(obj: dict, kind: str) -> dict | None:
    """The ownerReference of that kind, as a minimal object (for involvedObject)."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == kind:
            meta = {"name": ref["name"], "namespace": namespace(obj)}
            if ref.get("uid"):
                meta["uid"] = ref["uid"]
            return {"kind": kind, "apiVersion": ref.get("apiVersion", "apps/v1"), "metadata": meta}
    return None


def workload_events(actions: list, lookup: Lookup) -> list[EventSpec]:
    """Scheduled, ScalingReplicaSet, SuccessfulCreate and SuccessfulDelete of one pass's writes."""
    out: list[EventSpec] = []
    for a in actions:
        o, kind = a.obj, a.obj.get("kind")
        if a.verb == "bind" and kind == "Pod":
            out.append(EventSpec("default-scheduler", o, "Scheduled",
                                 f"Successfully assigned {namespace(o)}/{name(o)} to {o['spec']['nodeName']}"))
        elif kind == "ReplicaSet" and a.verb in ("create", "update"):
            dep = _owner(o, "Deployment")
            new = o["spec"].get("replicas", 1)
            old = 0 if a.verb == "create" else (lookup("ReplicaSet", namespace(o), name(o)) or o)["spec"].get(
                "replicas", 1)
            if dep is not None and new != old:
                way = "up" if new > old else "down"
                out.append(EventSpec("deployment-controller", dep, "ScalingReplicaSet",
                                     f"Scaled {way} replica set {name(o)} to {new} from {old}"))
        elif kind == "Pod" and a.verb in ("create", "delete", "terminate"):
            rs = _owner(o, "ReplicaSet")
            if rs is None:
                continue
            if a.verb == "create":
                out.append(EventSpec("replicaset-controller", rs, "SuccessfulCreate", f"Created pod: {name(o)}"))
            else:
                out.append(EventSpec("replicaset-controller", rs, "SuccessfulDelete", f"Deleted pod: {name(o)}"))
    return out


def lifecycle_events(records: list[dict], actions: list, lookup: Lookup) -> list[EventSpec]:
    """NodeNotReady and TaintManagerEviction from the node lifecycle controller's records and writes."""
    out: list[EventSpec] = []
    for r in records:
        node = lookup("Node", "", r["node"]) or {"kind": "Node", "metadata": {"name": r["node"]}}
        if r["event"] == "node_not_ready":
            out.append(EventSpec("node-controller", node, "NodeNotReady",
                                 f"Node {r['node']} status is now: NodeNotReady"))
    for a in actions:
        if a.verb == "terminate" and a.obj.get("kind") == "Pod":
            out.append(EventSpec("taint-eviction-controller", a.obj, "TaintManagerEviction",
                                 f"Marking for deletion Pod {namespace(a.obj)}/{name(a.obj)}"))
    return out

