"""The `compare` and `sweep` steps: interleaved arms over trials, rerun per parameter value.

A compare over URL arms is one generator run per trial, in the source's namespace, that
sends request `seq` to the arm the seeded schedule names (`emulator.report.design.schedule`);
arms with impairments run block by block, the impairment applied before each block.
The raw records stay in flows/interleaved/; each arm's records (tagged with `trial`)
become the flow flows/<compare>-<arm>[-v<i>].jsonl, registered like a traffic step's.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

import ray

from emulator.config.impairments import Impairments, LinkImpairment
from emulator.config.templates import render
from emulator.errors import KubemuError
from emulator.impair.cluster import apply_impairments
from emulator.report import design, stats, study
from emulator.runner import flows

CALIBRATION_DELAY_S = 1e-6   # the delay path (NFQUEUE) with a delay too small to matter


def _seed(ctx) -> int:
    return ctx.scenario.seed if ctx.scenario is not None and ctx.scenario.seed is not None else 0


def _current(ctx) -> Impairments:
    return getattr(ctx.cluster, "link_impairments", None) or ctx.scenario.link_impairments()


def _impair_text(imp: Impairments) -> str:
    return "; ".join(f"{k} {v.describe()}" for k, v in imp.active().items()) or "none"


def _run(agent, target: str, params: dict, out_name: str) -> list[dict]:
    return ray.get(agent.run_flow.remote(target, "http", params, out_name))


def _trial_records(spec, ctx, arms: list[str], order: list[int], agent, target: str, raw: str) -> list[dict]:
    """One trial's records, each tagged with its arm index (URL arms: one generator run)."""
    urls = [render(spec.arms[a].url, ctx.resolve) for a in arms]
    base = {"timeout": spec.timeout, "concurrency": spec.concurrency, "keepalive": False}
    if not any(spec.arms[a].impair is not None for a in arms):
        return _run(agent, target, {**base, "url": urls[0], "urls": urls[1:], "requests": len(order),
                                    "schedule": "".join(map(str, order))}, raw)
    start = _current(ctx)
    out: list[dict] = []
    try:
        for j, (arm, n) in enumerate(design.blocks(order)):
            imp = spec.arms[arms[arm]].impair
            apply_impairments(ctx.cluster, start.merged(imp), lambda _m: None)
            recs = _run(agent, target, {**base, "url": urls[arm], "requests": n}, f"{raw}-b{j + 1}")
            out += [{**r, "arm": arm, "block": j + 1} for r in recs]
    finally:
        apply_impairments(ctx.cluster, start, lambda _m: None)
    return out


def run_compare(step, ctx, suffix: str = "") -> dict[str, Any]:
    """The `compare` step (`suffix`: -v<i> inside a sweep): run the trials, write one flow per arm."""
    spec = step.compare
    agent, target = flows.source_agent(spec.source, ctx.cluster)
    arms = list(spec.arms)
    names = spec.flow_names(suffix)
    per_arm: dict[str, list[dict]] = {a: [] for a in arms}
    t0 = time.time()
    seeds = []
    for k in range(1, spec.trials + 1):
        seed_text = f"{_seed(ctx)}:{spec.name}{suffix}:{k}"
        seeds.append(seed_text)
        order = design.schedule(len(arms), spec.requests, spec.interleave, spec.block, seed_text)
        recs = _trial_records(spec, ctx, arms, order, agent, target, f"interleaved/{spec.name}{suffix}-t{k}")
        for r in recs:
            per_arm[arms[r["arm"]]].append({**r, "trial": k, "arm": arms[r["arm"]]})
        ctx.cluster.progress(f"compare {spec.name}{suffix} trial {k}/{spec.trials}: " + ", ".join(
            f"{a} p50 {_p50([r for r in per_arm[a] if r['trial'] == k])}" for a in arms))
    for arm, recs in per_arm.items():
        _register(ctx, names[arm], recs, str(spec.source), t0)
    return {"step": "compare", "name": spec.name + suffix, "from": str(spec.source),
            "arms": {a: {"flow": names[a], "url": spec.arms[a].url,
                         "impair": None if spec.arms[a].impair is None else _impair_text(spec.arms[a].impair)}
                     for a in arms},
            "design": {"interleave": spec.interleave, "block": spec.block if spec.interleave == "block" else 1,
                       "trials": spec.trials, "requests_per_arm": spec.requests, "concurrency": spec.concurrency,
                       "seed": _seed(ctx), "order_seeds": seeds},
            "impairments": _impair_text(_current(ctx)), "started": round(t0, 6),
            "seconds": round(time.time() - t0, 3)}


def _p50(recs: list[dict]) -> str:
    ok = [r["total_ms"] for r in recs if r.get("outcome") == "ok" and r.get("total_ms") is not None]
    return f"{sorted(ok)[len(ok) // 2]:.2f} ms" if ok else "-"


def _register(ctx, name: str, records: list[dict], source: str, started: float) -> None:
    """Write flows/NAME.jsonl and make the flow known to asserts and results.json."""
    path = os.path.join(ctx.cluster.run_dir, "flows", name + ".jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
    ctx.records[name] = records
    ctx.summaries[name] = stats.summarize(records)
    ends = [r["t_start"] + (r.get("total_ms") or 0.0) / 1000.0 for r in records if r.get("t_start")]
    run = flows.FlowRun(name, "http", False, started, {"flow": name, "from": source},
                        collected=time.time(), ended=max(ends, default=time.time()))
    ctx.flows.runs[name] = run
    ctx.flows.unreported.append(name)


def _apply_value(sw, ctx, base: Impairments, value: float) -> str:
    """Set the sweep's parameter to `value`; a text of what is in force."""
    if sw.impair is not None:
        cls, field = sw.impair.split(".")
        cur = getattr(base, cls) or LinkImpairment()
        imp = base.merged(Impairments(**{cls: cur.model_copy(update={field: value})}))
        apply_impairments(ctx.cluster, imp, ctx.cluster.progress)
        return _impair_text(imp)
    from emulator.runner.steps import OVS_REVALIDATION_SECONDS, ready_check   # runner.steps imports this module
    name = sw.scale.partition("/")[2]
    api = ctx.cluster.api
    dep = ray.get(api.get.remote("Deployment", "default", name))
    if dep is None:
        raise KubemuError(f"no Deployment default/{name}")
    dep["spec"]["replicas"] = int(value)
    ray.get(api.update.remote(dep))
    ctx.cluster.wait_for(ready_check(ctx.cluster, "Deployment", "default", name), 120, f"deployment/{name}")
    for mo in ctx.scenario.objects:
        if mo.obj.get("kind") == "Service" and mo.obj.get("spec", {}).get("type") == "LoadBalancer":
            ctx.cluster.wait_for(ready_check(ctx.cluster, "Service", mo.key[1], mo.key[2]), 120,
                                 f"service/{mo.key[2]}")
    ctx.cluster.wait_proxies_synced(60)
    time.sleep(OVS_REVALIDATION_SECONDS)
    return f"{int(value)} replicas of deployment/{name}"


def run_sweep(step, ctx) -> dict[str, Any]:
    """The `sweep` step: each value (after a calibration point when asked), the inner compares, the slope."""
    sw = step.sweep
    base = _current(ctx)
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
                           f"{_seed(ctx)}:{sw.name}:{p['suffix']}") for p in pts]
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


EXECUTORS = {"compare": run_compare, "sweep": run_sweep}
