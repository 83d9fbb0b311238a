"""The `apply` step: create or update the step's manifest objects, placeholders rendered now."""
from __future__ import annotations

from emulator.config.templates import render_values
from emulator.runner.steps.registry import step


@step("apply", lambda s: f"apply {len(s.apply)} manifest entries")
def run_apply(s, ctx) -> dict:
    objs = ctx.scenario.step_objects(ctx.index)
    for mo in objs:   # placeholders rendered at apply time: {pod:client}/32 in an ipBlock
        ctx.client.apply(render_values(mo.obj, ctx.resolve))
    return {"step": "apply", "objects": [mo.ref for mo in objs]}
