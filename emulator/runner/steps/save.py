"""The `save` step: store an object's or a flow summary's field as `{var:NAME}`."""
from __future__ import annotations

import json

from emulator.config.fieldpath import select
from emulator.errors import KubemuError
from emulator.report import summary as report_summary
from emulator.runner import flows
from emulator.runner.steps.objects import fetch
from emulator.runner.steps.registry import step


@step("save", lambda s: f"save {s.save.name}")
def run_save(s, ctx) -> dict:
    """Finish the flow or fetch the object, select the field, keep it (text, or JSON)."""
    sv = s.save
    src = sv.from_
    if src.flow is not None:
        flows.finish(src.flow, ctx)
        obj: dict | None = report_summary.to_json(ctx.summaries[src.flow])
        where = f"flow {src.flow}"
    else:
        ns = None if src.object.kind in ("Node", "Namespace") else (src.object.namespace or src.namespace)
        obj = fetch(ctx.client, src.object, ns)
        where = str(src.object)
    if obj is None:
        raise KubemuError(f"save {sv.name}: no {where}")
    found, value = select(obj, src.field)
    if not found:
        raise KubemuError(f"save {sv.name}: {where} has no field {src.field}")
    ctx.vars[sv.name] = value if isinstance(value, str) else json.dumps(value)
    return {"step": "save", "name": sv.name, "value": ctx.vars[sv.name], "from": where, "field": src.field}
