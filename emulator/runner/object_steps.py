"""Executors of the steps on API objects' fields: `wait: {until}`, object `assert`, `save`.

`holds(cond, obj, expected)` is the pure core: whether an object (None: it does not
exist) meets a condition (config/object_steps.py); the executors fetch objects from the
API server and poll or check once.
"""
from __future__ import annotations

import ipaddress
import json
import time
from typing import Any

import ray

from emulator.config.fieldpath import is_empty, select
from emulator.config.object_steps import ObjectCondition, ObjectTarget
from emulator.config.templates import render
from emulator.errors import KubemuError
from emulator.report import summary as report_summary
from emulator.runner import flows

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


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


def fetch(cluster, target: ObjectTarget, namespace: str | None) -> dict | None:
    """The object `target` names now (None when it does not exist)."""
    if target.service is not None:
        slices, _ = ray.get(cluster.api.list.remote("EndpointSlice", namespace, {SERVICE_NAME_LABEL: target.service}))
        return merged_slices(slices)
    return ray.get(cluster.api.get.remote(target.kind, namespace or "", target.name))


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


def run_wait_until(step, ctx) -> dict:
    """`wait: {until: ...}`: poll the object until the condition holds or the timeout passes."""
    w, cond = step.wait, step.wait.until
    t0 = time.time()
    want = expected(cond, ctx.resolve) if cond.condition() == "equals" else None
    seen: list[Any] = [None]

    def check() -> bool:
        ok, seen[0] = holds(cond, fetch(ctx.cluster, cond.object, cond.namespace_of), want)
        return ok
    try:
        ctx.cluster.wait_for(check, w.timeout, cond.describe())
    except KubemuError as e:
        raise type(e)(f"{e} (last seen: {json.dumps(seen[0], default=str)[:200]})") from None
    return {"step": "wait", "until": cond.describe(), "seconds": round(time.time() - t0, 3)}


def run_object_assert(step, ctx) -> dict:
    """`assert: {object: ...}`: check the object once."""
    cond = step.assert_
    want = expected(cond, ctx.resolve) if cond.condition() == "equals" else None
    ok, value = holds(cond, fetch(ctx.cluster, cond.object, cond.namespace_of), want)
    check = {"metric": f"{cond.field + ' ' if cond.field else ''}{cond.condition()}",
             "expected": want if cond.condition() == "equals" else True, "actual": value, "ok": ok}
    return {"step": "assert", "object": str(cond.object), "checks": [check], "ok": ok}


def run_save(step, ctx) -> dict:
    """`save`: store an object's or a flow summary's field as `{var:NAME}`."""
    s = step.save
    src = s.from_
    if src.flow is not None:
        flows.finish(src.flow, ctx)
        obj: dict | None = report_summary.to_json(ctx.summaries[src.flow])
        where = f"flow {src.flow}"
    else:
        ns = None if src.object.kind in ("Node", "Namespace") else (src.object.namespace or src.namespace)
        obj = fetch(ctx.cluster, src.object, ns)
        where = str(src.object)
    if obj is None:
        raise KubemuError(f"save {s.name}: no {where}")
    found, value = select(obj, src.field)
    if not found:
        raise KubemuError(f"save {s.name}: {where} has no field {src.field}")
    ctx.vars[s.name] = value if isinstance(value, str) else json.dumps(value)
    return {"step": "save", "name": s.name, "value": ctx.vars[s.name], "from": where, "field": src.field}
