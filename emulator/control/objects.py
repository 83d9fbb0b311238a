"""Small accessors for Kubernetes object dicts shared by the controllers and agents."""
from __future__ import annotations

import hashlib
import json

from emulator.labels import label_selector_matches


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
        return label_selector_matches(selector, lbls)
    return all(lbls.get(k) == v for k, v in selector.items())


def short_hash(data) -> str:
    """A stable 10-character hash of JSON-able data (like pod-template-hash)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
