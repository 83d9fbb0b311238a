"""Small accessors for Kubernetes object dicts shared by the controllers and agents."""
from __future__ import annotations

import hashlib
import json


def meta(obj: dict) -> dict:
    return obj.setdefault("metadata", {})


def name(obj: dict) -> str:
    return obj["metadata"]["name"]


def namespace(obj: dict) -> str:
    return obj["metadata"].get("namespace", "default")


def labels(obj: dict) -> dict:
    return obj.get("metadata", {}).get("labels") or {}


def condition(obj: dict, type_: str) -> bool:
    """True when status.conditions has `type_` with status True."""
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == type_:
            return c.get("status") == "True"
    return False


def is_terminating(obj: dict) -> bool:
    return obj.get("metadata", {}).get("deletionTimestamp") is not None


def owned_by(obj: dict, owner: dict) -> bool:
    uid = owner["metadata"].get("uid")
    return any(r.get("uid") == uid for r in obj.get("metadata", {}).get("ownerReferences", []) or [])


def owner_ref(owner: dict) -> dict:
    return {"apiVersion": owner.get("apiVersion", "v1"), "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"], "controller": True}


def selector_matches(selector: dict | None, lbls: dict) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) or a plain map against labels."""
    if selector is None:
        return False
    if "matchLabels" in selector or "matchExpressions" in selector:
        if any(lbls.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
            return False
        for expr in selector.get("matchExpressions") or []:
            key, op, values = expr["key"], expr["operator"], expr.get("values") or []
            if op == "In" and lbls.get(key) not in values:
                return False
            if op == "NotIn" and key in lbls and lbls[key] in values:
                return False
            if op == "Exists" and key not in lbls:
                return False
            if op == "DoesNotExist" and key in lbls:
                return False
        return True
    return all(lbls.get(k) == v for k, v in selector.items())


def short_hash(data) -> str:
    """A stable 10-character hash of JSON-able data (like pod-template-hash)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
