"""REST paths: /api/v1/namespaces/NS/pods/NAME/status -> (resource, namespace, name, subresource)."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from emulator.kubeapi.resources import Resource, by_path
from emulator.kubeapi.wire import StatusError


@dataclass(frozen=True)
class Target:
    """What a resource request addresses; namespace None means all namespaces (or cluster-scoped)."""

    resource: Resource
    namespace: str | None
    name: str | None
    sub: str | None


def parse_target(path: str) -> Target | None:
    """The resource request a path names, None when it is not a resource path."""
    segs = [s for s in path.split("/") if s]
    if len(segs) >= 2 and segs[0] == "api":
        group, version, rest = "", segs[1], segs[2:]
    elif len(segs) >= 3 and segs[0] == "apis":
        group, version, rest = segs[1], segs[2], segs[3:]
    else:
        return None
    if not rest:
        return None
    ns = None
    if rest[0] == "namespaces" and len(rest) >= 3 and by_path(group, version, rest[2]) is not None:
        ns, rest = rest[1], rest[2:]
    res = by_path(group, version, rest[0])
    if res is None or len(rest) > 3:
        raise StatusError(404, f"the server could not find the requested resource ({path})", "NotFound")
    if ns is not None and not res.namespaced:
        raise StatusError(404, f"the server could not find the requested resource ({path})", "NotFound")
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and sub not in res.subresources:
        raise StatusError(404, f"the server could not find the requested resource ({path})", "NotFound")
    if res.namespaced and name is not None and ns is None:
        raise StatusError(404, f"the server could not find the requested resource ({path})", "NotFound")
    return Target(res, ns, name, sub)


def encode_continue(rv: int, after: str) -> str:
    """An opaque continue token: the list's resourceVersion and the last key returned."""
    return base64.urlsafe_b64encode(json.dumps({"rv": rv, "after": after}).encode()).decode()


def decode_continue(token: str) -> tuple[int, str]:
    """(resourceVersion, last key) from a continue token; 400 when it is not one of ours."""
    try:
        d = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(d["rv"]), str(d["after"])
    except (ValueError, KeyError, TypeError):
        raise StatusError(400, "continue key is not valid: incorrect encoded start resourceVersion") from None


def is_true(v: str | None) -> bool:
    """Query booleans: true, 1, True."""
    return (v or "").lower() in ("1", "true", "yes")
