"""The `delete` step: delete an object as `kubectl delete` does (grace period, --force)."""
from __future__ import annotations

from emulator.api.deletion import kubectl_grace
from emulator.runner.steps.registry import step


@step("delete", lambda s: f"delete {s.delete.object}")
def run_delete(s, ctx) -> dict:
    d = s.delete
    grace = kubectl_grace(d.grace_period, d.force)
    ctx.client.delete(d.object.api_kind, d.namespace, d.object.name, grace)
    out = {"step": "delete", "object": str(d.object)}
    if grace is not None:
        out["grace_period"] = grace
    return out
