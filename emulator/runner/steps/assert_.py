"""The `assert` step: bounds on a flow's metrics, or a condition on an API object's field."""
from __future__ import annotations

from typing import Any

from emulator.config.object_steps import ObjectCondition
from emulator.config.templates import render
from emulator.errors import KubemuError
from emulator.report import study
from emulator.report.hops import entered_nodes, entered_without_pod_ratio, extra_hop_penalty_ms, extra_hop_ratio
from emulator.runner import flows
from emulator.runner.steps.objects import expected, fetch, holds
from emulator.runner.steps.registry import step


def describe(s) -> str:
    return f"assert on {getattr(s.assert_, 'flow', None) or s.assert_.describe()}"


def metric_value(summary, metric: str) -> float:
    """The value of an assertable metric of a flow summary."""
    if metric == "success_ratio":
        return summary.success_ratio
    if metric in ("refused_ratio", "timeout_ratio", "reset_ratio"):
        return summary.outcomes.get(metric[:-6], 0) / summary.count if summary.count else 0.0
    if metric == "loss_ratio":
        return 1.0 - summary.success_ratio if summary.count else 1.0
    if metric == "throughput_mbps":
        return (summary.bits_per_second or 0.0) / 1e6
    if metric == "distinct_backends":
        return summary.distinct_backends
    if metric.endswith("_ms"):
        q = metric[:-3]
        lat = summary.total_ms
        return float("inf") if lat is None else getattr(lat, q)
    raise KubemuError(f"unknown metric {metric}")


@step("assert", describe)
def run_assert(s, ctx) -> dict:
    """Check a flow's metrics (waiting for a background flow first) or an object once."""
    a = s.assert_
    if isinstance(a, ObjectCondition):
        return run_object_assert(s, ctx)
    if a.flow in ctx.flows.runs:
        flows.finish(a.flow, ctx)   # a background flow: wait for it first
    summary = ctx.summaries.get(a.flow)
    if summary is None:
        raise KubemuError(f"flow {a.flow} has not run")
    if a.minus is not None:
        if a.minus in ctx.flows.runs:
            flows.finish(a.minus, ctx)
        if ctx.summaries.get(a.minus) is None:
            raise KubemuError(f"flow {a.minus} has not run")
    checks = []
    for metric, bound in a.checks().items():
        value = flow_metric(a.flow, metric, ctx)
        label = metric
        if a.minus is not None:
            value -= flow_metric(a.minus, metric, ctx)
            label = f"{metric} minus {a.minus}'s"
        checks.append({"metric": label, "expected": str(bound), "actual": value, "ok": bound.holds(value)})
    for metric, wanted in a.set_checks().items():
        want = sorted({_expected_value(w, ctx) for w in wanted})
        got = set_metric(metric, summary, ctx.records[a.flow], ctx.cluster.plan)
        checks.append({"metric": metric, "expected": want, "actual": got, "ok": want == got})
    for key, holds_ in (("contains", lambda w, g: w <= g), ("not_contains", lambda w, g: not (w & g))):
        for metric, wanted in (getattr(a, key) or {}).items():
            want = sorted({_expected_value(w, ctx) for w in wanted})
            got = set_metric(metric, summary, ctx.records[a.flow], ctx.cluster.plan)
            checks.append({"metric": f"{metric} {key}", "expected": want, "actual": got,
                           "ok": holds_(set(want), set(got))})
    return {"step": "assert", "flow": a.flow, "checks": checks, "ok": all(c["ok"] for c in checks)}


def flow_metric(flow: str, metric: str, ctx) -> float:
    """The value of a numeric metric of a flow that has run."""
    records = ctx.records[flow]
    if metric == "extra_hop_ratio":
        return extra_hop_ratio(records, ctx.cluster.plan)
    if metric == "entered_without_pod_ratio":
        return entered_without_pod_ratio(records, ctx.cluster.plan)
    if metric == "extra_hop_penalty_ms":
        return extra_hop_penalty_ms(records, ctx.cluster.plan)
    if metric.endswith(("_ci_low", "_ci_high")):   # seeded as the report's study section
        base, end = metric.rsplit("_ci_", 1)
        seed = f"{ctx.scenario.seed or 0}:{flow}" + (":p50" if base == "p50_ms" else "")
        return study.estimate(records, ctx.cluster.plan.nodes, base, seed)["ci_" + end]
    return metric_value(ctx.summaries[flow], metric)


def run_object_assert(s, ctx) -> dict:
    """`assert: {object: ...}`: check the object once."""
    cond = s.assert_
    want = expected(cond, ctx.resolve) if cond.condition() == "equals" else None
    ok, value = holds(cond, fetch(ctx.client, cond.object, cond.namespace_of), want)
    check = {"metric": f"{cond.field + ' ' if cond.field else ''}{cond.condition()}",
             "expected": want if cond.condition() == "equals" else True, "actual": value, "ok": ok}
    return {"step": "assert", "object": str(cond.object), "checks": [check], "ok": ok}


def _expected_value(value: Any, ctx) -> str:
    """An expected set member, placeholders resolved, a final dot dropped (DNS names)."""
    text = render(str(value), ctx.resolve)
    return text[:-1] if text.endswith(".") and len(text) > 1 else text


def set_metric(metric: str, summary, records: list[dict], plan) -> list[str]:
    """The sorted values of a set metric of a flow."""
    if metric == "statuses_seen":
        return sorted(summary.statuses)
    if metric == "client_ips_seen":
        return sorted(summary.client_ips)
    if metric == "entered_nodes":
        return sorted(entered_nodes(records, plan))
    if metric == "answers":
        return sorted(set(records[-1].get("answers") or [])) if records else []
    return sorted(summary.per_node)
