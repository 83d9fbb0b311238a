"""The `availability` step: a flow's figures around a fault, the control plane's phases, the bounds."""
from __future__ import annotations

from typing import Any

from emulator.errors import KubemuError
from emulator.report import availability, expected_phases
from emulator.runner import flows
from emulator.runner.steps.fault import FaultRun, state
from emulator.runner.steps.registry import step


def phases(ctx, fault: FaultRun, health: list[dict] | None) -> dict[str, Any]:
    """The control plane's reaction to a fault, in seconds after it, per Service where it applies."""
    client = ctx.client
    nodes = set(fault.nodes)
    out: dict[str, Any] = {}
    lifecycle = client.lifecycle_events()
    if lifecycle is not None:
        out.update(availability.lifecycle_phases(lifecycle, nodes, fault.t))
    per_svc: dict[str, dict] = {}
    events = client.timed_events("EndpointSlice", fault.t)
    for svc, v in availability.endpoint_phases(events, fault.slices_before, nodes, fault.t).items():
        per_svc.setdefault(svc, {}).update(v)
    if health is not None:
        for key, v in availability.health_phases(health, nodes, fault.t).items():
            per_svc.setdefault(key.split("/", 1)[-1], {}).update(v)
    out["services"] = per_svc
    policies = {o["metadata"]["name"]: o["spec"].get("externalTrafficPolicy") or "Cluster"
                for o in client.list("Service")
                if o["spec"].get("type") == "LoadBalancer" and o["metadata"]["name"] in per_svc}
    out["expected"] = expected_phases.expected(ctx.cluster.timing, policies)
    return out


@step("availability", lambda s: f"availability of {s.availability.flow}")
def run_availability(s, ctx) -> dict:
    """Figures of a flow around a fault (waiting for a background flow to end) and the bounds."""
    a = s.availability
    if a.flow in ctx.flows.runs:
        flows.finish(a.flow, ctx)
    records = ctx.records.get(a.flow)
    if records is None:
        raise KubemuError(f"flow {a.flow} has not run")
    st = state(ctx)
    fault = st.faults[a.fault] if a.fault else next(iter(st.faults.values()))
    health = ctx.client.health_events()
    flaps = availability.flap_windows(health, set(fault.nodes), fault.t) if health is not None else []
    figs = availability.analyze(records, fault.t, stable_s=a.stable, flaps=flaps)
    checks = []
    if a.recovered_within is not None:
        v = figs["recover_s"] if figs["recovered"] else float("inf")
        v = 0.0 if v is None else v
        checks.append({"metric": "recovered_within", "expected": f"<= {a.recovered_within:g}", "actual": v,
                       "ok": v <= a.recovered_within})
    if a.max_error_ratio is not None:
        v = figs["error_ratio"] or 0.0
        checks.append({"metric": "max_error_ratio", "expected": f"<= {a.max_error_ratio:g}", "actual": v,
                       "ok": v <= a.max_error_ratio})
    for m in a.BOUNDS:
        bound = getattr(a, m)
        if bound is not None:
            v = availability.metric(figs, m)
            checks.append({"metric": m, "expected": str(bound), "actual": v, "ok": bound.holds(v)})
    return {"step": "availability", "flow": a.flow, "fault": fault.name, "fault_action": fault.action,
            "fault_t": round(fault.t, 6), "nodes": fault.nodes, "figures": figs, "phases": phases(ctx, fault, health),
            "checks": checks, "ok": all(c["ok"] for c in checks)}
