"""Deployment and ReplicaSet controllers' pure cores: state in, API actions out."""
from __future__ import annotations

import copy
import secrets
import string
from dataclasses import dataclass

from emulator.control.objects import (condition, is_terminating, labels, name, namespace, owned_by,
                                      owner_ref, selector_matches, short_hash)


@dataclass
class Action:
    """One API write: verb is create, update, delete or terminate (graceful delete)."""

    verb: str
    obj: dict


def _suffix(n: int = 5) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def reconcile_deployment(dep: dict, replicasets: list[dict], pods: list[dict]) -> list[Action]:
    """Keep one ReplicaSet per pod template; scale old ones down when the new one is ready."""
    template = dep["spec"]["template"]
    tmpl_hash = short_hash(template)
    want = dep["spec"].get("replicas", 1)
    mine = [rs for rs in replicasets if owned_by(rs, dep)]
    current = next((rs for rs in mine if labels(rs).get("pod-template-hash") == tmpl_hash), None)
    actions: list[Action] = []
    if current is None:
        tmpl = copy.deepcopy(template)
        tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = tmpl_hash
        sel = copy.deepcopy(dep["spec"]["selector"])
        sel.setdefault("matchLabels", {})["pod-template-hash"] = tmpl_hash
        current = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": f"{name(dep)}-{tmpl_hash}", "namespace": namespace(dep),
                                "labels": {**tmpl["metadata"]["labels"]},
                                "ownerReferences": [owner_ref(dep)]},
                   "spec": {"replicas": want, "selector": sel, "template": tmpl}}
        actions.append(Action("create", current))
    elif current["spec"].get("replicas") != want:
        upd = copy.deepcopy(current)
        upd["spec"]["replicas"] = want
        actions.append(Action("update", upd))
    new_ready = current.get("status", {}).get("readyReplicas", 0)
    for rs in mine:
        if rs is current or rs["spec"].get("replicas", 0) == 0:
            continue
        if new_ready >= want:
            upd = copy.deepcopy(rs)
            upd["spec"]["replicas"] = 0
            actions.append(Action("update", upd))
    return actions


def deployment_status(dep: dict, replicasets: list[dict], pods: list[dict]) -> dict:
    """status of a Deployment computed from its pods."""
    mine = [p for p in pods if not is_terminating(p)
            and selector_matches(dep["spec"]["selector"], labels(p))
            and p["metadata"].get("namespace", "default") == namespace(dep)]
    ready = sum(1 for p in mine if condition(p, "Ready"))
    tmpl_hash = short_hash(dep["spec"]["template"])
    updated = sum(1 for p in mine if labels(p).get("pod-template-hash") == tmpl_hash)
    return {"replicas": len(mine), "readyReplicas": ready, "availableReplicas": ready,
            "updatedReplicas": updated, "observedGeneration": dep["metadata"].get("generation", 1)}


def reconcile_replicaset(rs: dict, pods: list[dict]) -> list[Action]:
    """Create or delete pods so that the live (non-terminating) ones match replicas."""
    want = rs["spec"].get("replicas", 1)
    live = [p for p in pods if owned_by(p, rs) and not is_terminating(p)]
    actions: list[Action] = []
    if len(live) < want:
        for _ in range(want - len(live)):
            tmpl = copy.deepcopy(rs["spec"]["template"])
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {**tmpl.get("metadata", {}), "name": f"{name(rs)}-{_suffix()}",
                                "namespace": namespace(rs), "ownerReferences": [owner_ref(rs)]},
                   "spec": tmpl["spec"], "status": {"phase": "Pending"}}
            actions.append(Action("create", pod))
    elif len(live) > want:
        # Delete unscheduled first, then not-ready, then the newest.
        def order(p: dict) -> tuple:
            return (bool(p.get("spec", {}).get("nodeName")), condition(p, "Ready"),
                    -p["metadata"].get("creationTimestamp", 0))
        for p in sorted(live, key=order)[: len(live) - want]:
            actions.append(Action("terminate", p))
    return actions


def replicaset_status(rs: dict, pods: list[dict]) -> dict:
    live = [p for p in pods if owned_by(p, rs) and not is_terminating(p)]
    return {"replicas": len(live), "readyReplicas": sum(1 for p in live if condition(p, "Ready")),
            "observedGeneration": rs["metadata"].get("generation", 1)}
