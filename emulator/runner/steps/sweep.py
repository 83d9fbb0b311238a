"""The `sweep` step: the inner compares rerun per value of an impairment or a replica count, the slope."""
from __future__ import annotations

from typing import Any

from emulator.config.impairments import Impairments, LinkImpairment
from emulator.impair.cluster import apply_impairments
from emulator.report import study
from emulator.runner.steps.compare import (CALIBRATION_DELAY_S, current_impairments, impair_text, run_compare,
                                           run_seed)
from emulator.runner.steps.registry import step
from emulator.runner.steps.scale import scale_deployment


def _apply_value(sw, ctx, base: Impairments, value: float) -> str:
    """Set the sweep's parameter to `value`; a text of what is in force."""
    if sw.impair is not None:
        cls, field = sw.impair.split(".")
        cur = getattr(base, cls) or LinkImpairment()
        imp = base.merged(Impairments(**{cls: cur.model_copy(update={field: value})}))
        apply_impairments(ctx.cluster, imp, ctx.cluster.progress)
        return impair_text(imp)
    name = sw.scale.partition("/")[2]
    client = ctx.client
    scale_deployment(client, "default", name, int(value))
    client.wait_for(client.ready_check("Deployment", "default", name), 120, f"deployment/{name}")
    for mo in ctx.scenario.objects:
        if mo.obj.get("kind") == "Service" and mo.obj.get("spec", {}).get("type") == "LoadBalancer":
            client.wait_for(client.ready_check("Service", mo.key[1], mo.key[2]), 120, f"service/{mo.key[2]}")
    client.wait_proxies_synced(60)
    client.wait_revalidated()
    return f"{int(value)} replicas of deployment/{name}"


def describe(s) -> str:
    return f"sweep {s.sweep.name}: {s.sweep.impair or s.sweep.scale} over {len(s.sweep.values)} values"


@step("sweep", describe)
def run_sweep(s, ctx) -> dict[str, Any]:
    """The `sweep` step: each value (after a calibration point when asked), the inner compares, the slope."""
    sw = s.sweep
    base = current_impairments(ctx)
    points = ([("-cal", CALIBRATION_DELAY_S, "calibration")] if sw.calibrate else []) + \
        [(f"-v{i + 1}", v, f"{sw.shown(v):g} {sw.unit}") for i, v in enumerate(sw.values)]
    recs = []
    try:
        for sfx, value, label in points:
            in_force = _apply_value(sw, ctx, base, value)
            ctx.cluster.progress(f"sweep {sw.name}: {sw.impair or sw.scale} = {label}")
            inner = [run_compare(s, ctx, sfx) for s in sw.steps]
            recs.append({"suffix": sfx, "value": value, "shown": sw.shown(value), "label": label,
                         "in_force": in_force, "compares": inner})
    finally:
        if sw.impair is not None:
            apply_impairments(ctx.cluster, base, ctx.cluster.progress)
    rec: dict[str, Any] = {"step": "sweep", "name": sw.name, "parameter": sw.impair or sw.scale,
                           "unit": sw.unit, "points": recs}
    if sw.slope is not None:
        rec.update(_slope_checks(sw, ctx, recs))
    return rec


def _slope_checks(sw, ctx, points: list[dict]) -> dict[str, Any]:
    """The fitted slope of the slope flow's metric over the values, and its checks."""
    sl = sw.slope
    nodes = ctx.cluster.plan.nodes
    pts = [p for p in points if p["suffix"] != "-cal"]
    ests = [study.estimate(ctx.records[sl.flow + p["suffix"]], nodes, sl.metric,
                           f"{run_seed(ctx)}:{sw.name}:{p['suffix']}") for p in pts]
    fit = study.slope_fit([p["shown"] for p in pts], ests, sl.expected)
    checks = []
    if sl.between is not None:
        checks.append({"metric": f"slope of {sl.metric}", "expected": f"between {sl.between[0]:g} and "
                       f"{sl.between[1]:g}", "actual": fit["slope"],
                       "ok": bool(sl.between[0] <= fit["slope"] <= sl.between[1])})
    if sl.ci_contains is not None:
        ok = bool(fit["ci_low"] <= sl.ci_contains <= fit["ci_high"])
        checks.append({"metric": f"slope of {sl.metric} 95% interval", "expected": f"contains {sl.ci_contains:g}",
                       "actual": [f"{fit['ci_low']:.3g}", f"{fit['ci_high']:.3g}"], "ok": ok})
    return {"flow": sl.flow, "slope": {**fit, "metric": sl.metric, "flow": sl.flow,
                                       "points": [study.public(e) for e in ests]},
            "checks": checks, "ok": all(c["ok"] for c in checks)}
