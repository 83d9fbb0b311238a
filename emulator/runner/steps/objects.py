"""Steps on API objects' fields (`wait: {until}`, object `assert`, `save`): the shared parts.

`holds(cond, obj, expected)` is the pure core: whether an object (None: it does not
exist) meets a condition (config/object_steps.py); `fetch` asks the API server through
the client; the wait, assert and save executors poll or check once.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from emulator.config.fieldpath import is_empty, select
from emulator.config.object_steps import ObjectCondition, ObjectTarget
from emulator.config.templates import render


def merged_slices(slices: list[dict]) -> dict | None:
    """A Service's EndpointSlices as one object (None when it has none)."""
    if not slices:
        return None

    def key(ep: dict) -> Any:
        addr = (ep.get("addresses") or ["0.0.0.0"])[0]
        try:
            return (0, ipaddress.ip_address(addr))
        except ValueError:
            return (1, addr)
    slices = sorted(slices, key=lambda s: s["metadata"]["name"])
    return {"kind": "EndpointSlice", "metadata": dict(slices[0]["metadata"]),
            "addressType": slices[0].get("addressType"), "ports": slices[0].get("ports") or [],
            "endpoints": sorted((e for s in slices for e in s.get("endpoints") or []), key=key)}


def fetch(client, target: ObjectTarget, namespace: str | None) -> dict | None:
    """The object `target` names now (None when it does not exist)."""
    if target.service is not None:
        return merged_slices(client.service_slices(namespace, target.service))
    return client.get(target.kind, namespace or "", target.name)


def expected(cond: ObjectCondition, resolve) -> Any:
    """`equals`' value, placeholders rendered in text (also inside lists)."""
    def one(v: Any) -> Any:
        return render(v, resolve) if isinstance(v, str) else v
    return [one(v) for v in cond.equals] if isinstance(cond.equals, list) else one(cond.equals)


def _same(got: Any, want: Any) -> bool:
    """Equal, or equal as text when one side is text (a saved or rendered value vs a number)."""
    if got == want:
        return True
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want))
    if isinstance(want, str) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return str(got) == want
    return False


def holds(cond: ObjectCondition, obj: dict | None, want: Any = None) -> tuple[bool, Any]:
    """(whether the condition holds, the value seen) for an object (None: it does not exist)."""
    kind = cond.condition()
    if kind == "gone":
        return obj is None, "exists" if obj is not None else "gone"
    if obj is None:
        return False, "no such object"
    found, value = select(obj, cond.field)
    if kind == "absent":
        return not found, value
    if kind == "empty":
        return is_empty(found, value), value
    return found and _same(value, want), value
