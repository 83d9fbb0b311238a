"""The `compare` step: interleaved arms over trials (a `sweep` reruns it per parameter value).

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

from emulator.config.impairments import Impairments
from emulator.config.templates import render
from emulator.impair.cluster import apply_impairments
from emulator.report import design, stats
from emulator.runner import flows
from emulator.runner.steps.registry import step

CALIBRATION_DELAY_S = 1e-6   # the delay path (NFQUEUE) with a delay too small to matter


def run_seed(ctx) -> int:
    """The scenario's seed (0 when it has none)."""
    return ctx.scenario.seed if ctx.scenario is not None and ctx.scenario.seed is not None else 0


def current_impairments(ctx) -> Impairments:
    """The link impairments in force now."""
    return getattr(ctx.cluster, "link_impairments", None) or ctx.scenario.link_impairments()


def impair_text(imp: Impairments) -> str:
    """`class config; ...` of the active impairment classes, or `none`."""
    return "; ".join(f"{k} {v.describe()}" for k, v in imp.active().items()) or "none"


def _run(ctx, agent, target: str, params: dict, out_name: str) -> list[dict]:
    return ctx.client.run_flow(agent, target, "http", params, out_name)


def _trial_records(spec, ctx, arms: list[str], order: list[int], agent, target: str, raw: str) -> list[dict]:
    """One trial's records, each tagged with its arm index (URL arms: one generator run)."""
    urls = [render(spec.arms[a].url, ctx.resolve) for a in arms]
    base = {"timeout": spec.timeout, "concurrency": spec.concurrency, "keepalive": False}
    if not any(spec.arms[a].impair is not None for a in arms):
        return _run(ctx, agent, target, {**base, "url": urls[0], "urls": urls[1:], "requests": len(order),
                                    "schedule": "".join(map(str, order))}, raw)
    start = current_impairments(ctx)
    out: list[dict] = []
    try:
        for j, (arm, n) in enumerate(design.blocks(order)):
            imp = spec.arms[arms[arm]].impair
            apply_impairments(ctx.cluster, start.merged(imp), lambda _m: None)
            recs = _run(ctx, agent, target, {**base, "url": urls[arm], "requests": n}, f"{raw}-b{j + 1}")
            out += [{**r, "arm": arm, "block": j + 1} for r in recs]
    finally:
        apply_impairments(ctx.cluster, start, lambda _m: None)
    return out


def describe(s) -> str:
    c = s.compare
    return f"compare {c.name}: {' / '.join(c.arms)} interleaved by {c.interleave}, {c.trials} trials x {c.requests}"


@step("compare", describe)
def run_compare(s, ctx, suffix: str = "") -> dict[str, Any]:
    """The `compare` step (`suffix`: -v<i> inside a sweep): run the trials, write one flow per arm."""
    spec = s.compare
    agent, target = flows.source_agent(spec.source, ctx.client)
    arms = list(spec.arms)
    names = spec.flow_names(suffix)
    per_arm: dict[str, list[dict]] = {a: [] for a in arms}
    t0 = time.time()
    seeds = []
    for k in range(1, spec.trials + 1):
        seed_text = f"{run_seed(ctx)}:{spec.name}{suffix}:{k}"
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
                         "impair": None if spec.arms[a].impair is None else impair_text(spec.arms[a].impair)}
                     for a in arms},
            "design": {"interleave": spec.interleave, "block": spec.block if spec.interleave == "block" else 1,
                       "trials": spec.trials, "requests_per_arm": spec.requests, "concurrency": spec.concurrency,
                       "seed": run_seed(ctx), "order_seeds": seeds},
            "impairments": impair_text(current_impairments(ctx)), "started": round(t0, 6),
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
