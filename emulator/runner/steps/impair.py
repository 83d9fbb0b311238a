"""The `impair` step: change link impairments while the cluster runs."""
from __future__ import annotations

from emulator.impair.cluster import apply_impairments
from emulator.runner.steps.registry import step


def describe(s) -> str:
    return "impair " + "; ".join(f"{k}: {v.describe() if v else 'none'}"
                                 for k, v in s.impair if k in s.impair.model_fields_set)


@step("impair", describe)
def run_impair(s, ctx) -> dict:
    """Merge the step's classes into the current impairments and apply."""
    current = getattr(ctx.cluster, "link_impairments", None) or ctx.scenario.link_impairments()
    record = apply_impairments(ctx.cluster, current.merged(s.impair), ctx.cluster.progress)
    return {"step": "impair", **record}
