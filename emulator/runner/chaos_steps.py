"""Executors of the chaos steps: `fault` (done for real by node agents and Ray) and `availability`.

Faults on nodes run in the node's agent (emulator/node/chaos.py); SDN controller and API
server restarts kill the actor's process and Ray starts a new one. Random targets come
from one `random.Random(scenario.seed)` per run, drawn in step order, so a run replays.
Each fault's record holds its epoch time `t`, its targets and what it did.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from emulator.config.chaos import RANDOM
from emulator.errors import KubemuError
from emulator.report import availability, expected_phases
from emulator.runner import machine_fault
from emulator.runner import flows


@dataclass
class FaultRun:
    """A fault that happened: when, on which nodes, and the EndpointSlices just before."""

    name: str
    action: str
    t: float
    nodes: list[str]
    slices_before: dict[str, dict] = field(default_factory=dict)
    machine: int | None = None   # machine-failure: the machine taken away


@dataclass
class ChaosState:
    """Per-run chaos state kept on the step context."""

    rng: random.Random
    faults: dict[str, FaultRun] = field(default_factory=dict)


def state(ctx) -> ChaosState:
    """The run's chaos state (created on first use, seeded from the scenario)."""
    st = getattr(ctx, "chaos", None)
    if st is None:
        seed = getattr(ctx.scenario, "seed", None) if ctx.scenario is not None else None
        st = ctx.chaos = ChaosState(random.Random(seed))
    return st


def _zone_nodes(cluster, zone: str) -> list[str]:
    return [n.name for n in cluster.plan.nodes if n.zone == zone]


def pick_nodes(spec, cluster, rng: random.Random, faults: dict[str, FaultRun]) -> list[str]:
    """The nodes a fault acts on (random choices drawn from `rng`)."""
    if spec.of is not None:
        return list(faults[spec.of].nodes)
    if spec.machine is not None:
        return machine_fault.machine_nodes(cluster, spec.machine)
    if spec.zone is not None:
        zone = rng.choice(sorted({n.zone for n in cluster.plan.nodes})) if spec.zone == RANDOM else spec.zone
        return _zone_nodes(cluster, zone)
    if spec.node == RANDOM:   # recover: one of the nodes that are down; else one that is up
        down = spec.action == "recover"
        pool = sorted(n.name for n in cluster.plan.nodes if (n.name in cluster.down_nodes) == down)
        if not pool:
            raise KubemuError(f"fault: no node {'down' if down else 'up'} to pick at random")
        return [rng.choice(pool)]
    return [spec.node] if spec.node else []


def _wait_until_due(spec, ctx) -> None:
    if spec.at is None:
        return
    base = ctx.started
    if spec.since is not None:
        run = ctx.flows.runs.get(spec.since)
        if run is None:
            raise KubemuError(f"fault: flow {spec.since} has not started")
        base = run.started
    delay = base + spec.at - time.time()
    if delay > 0:
        time.sleep(delay)


def _kill_pod(spec, ctx, rng: random.Random) -> str:
    api = ctx.cluster.api
    if spec.pod is not None:
        name = spec.pod
    else:
        dep = ray.get(api.get.remote("Deployment", spec.namespace, spec.deployment))
        sel = ((dep or {}).get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        pods, _ = ray.get(api.list.remote("Pod", spec.namespace, sel))
        live = sorted(p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp"))
        if not live:
            raise KubemuError(f"fault: Deployment {spec.namespace}/{spec.deployment} has no pod to kill")
        name = rng.choice(live)
    ray.get(api.delete.remote("Pod", spec.namespace, name, 0))   # killed: no graceful termination
    return name


def run_fault(step, ctx) -> dict:
    """Wait for `at`, then break (or repair) something for real; returns the fault's record."""
    spec, cluster = step.fault, ctx.cluster
    st = state(ctx)
    name = spec.label(ctx.index)
    nodes = pick_nodes(spec, cluster, st.rng, st.faults)
    _wait_until_due(spec, ctx)
    slices, _ = ray.get(cluster.api.list.remote("EndpointSlice"))
    before = {s["metadata"]["name"]: s for s in slices}
    t = time.time()
    rec: dict[str, Any] = {"step": "fault", "name": name, "action": spec.action, "nodes": nodes,
                           "t": round(t, 6), "t_steps": round(t - ctx.started, 3)}
    act = spec.action
    machine = spec.machine if spec.machine is not None or spec.of is None else st.faults[spec.of].machine
    if machine is not None:   # machine-failure, or recover of a machine
        fail = act == "machine-failure"
        rec.update(machine_fault.fail(cluster, machine) if fail else machine_fault.recover(cluster, machine))
        (cluster.down_nodes.update if fail else cluster.down_nodes.difference_update)(nodes)
    elif act in ("crash", "partition", "zone-outage", "recover"):
        what = {"zone-outage": "crash"}.get(act, act)
        ray.get([cluster.agents[n].chaos.remote(what) for n in nodes])
        if act == "recover":
            cluster.down_nodes.difference_update(nodes)
        else:
            cluster.down_nodes.update(nodes)
    elif act in ("kube-proxy-crash", "link-flap"):
        ray.get([cluster.agents[n].chaos.remote(act.replace("-", "_"), down=spec.down) for n in nodes])
    elif act == "pod-kill":
        rec["pod"] = f"{spec.namespace}/{_kill_pod(spec, ctx, st.rng)}"
    elif act == "sdn-restart":
        cluster.restart_sdn_controller()
    elif act == "controller-manager-restart":
        cluster.restart_controller_manager()
        ray.get(cluster.controllers.ping.remote())
    elif act == "api-restart":
        cluster.restart_api_server()
        ray.get(cluster.api.ping.remote())
    rec["seconds"] = round(time.time() - t, 3)
    st.faults[name] = FaultRun(name, act, t, nodes, before, machine)
    return rec


def phases(ctx, fault: FaultRun) -> dict[str, Any]:
    """The control plane's reaction to a fault, in seconds after it, per Service where it applies."""
    cluster = ctx.cluster
    nodes = set(fault.nodes)
    out: dict[str, Any] = {}
    if cluster.controllers is not None:
        out.update(availability.lifecycle_phases(ray.get(cluster.controllers.lifecycle_events.remote()),
                                                 nodes, fault.t))
    per_svc: dict[str, dict] = {}
    events = ray.get(cluster.api.timed_events.remote("EndpointSlice", fault.t))
    for svc, v in availability.endpoint_phases(events, fault.slices_before, nodes, fault.t).items():
        per_svc.setdefault(svc, {}).update(v)
    if cluster.cloud is not None:
        for key, v in availability.health_phases(ray.get(cluster.cloud.health_events.remote()), nodes,
                                                 fault.t).items():
            per_svc.setdefault(key.split("/", 1)[-1], {}).update(v)
    out["services"] = per_svc
    svcs, _ = ray.get(cluster.api.list.remote("Service"))
    policies = {o["metadata"]["name"]: o["spec"].get("externalTrafficPolicy") or "Cluster" for o in svcs
                if o["spec"].get("type") == "LoadBalancer" and o["metadata"]["name"] in per_svc}
    out["expected"] = expected_phases.expected(cluster.timing, policies)
    return out


def run_availability(step, ctx) -> dict:
    """Figures of a flow around a fault (waiting for a background flow to end) and the bounds."""
    a = step.availability
    if a.flow in ctx.flows.runs:
        flows.finish(a.flow, ctx)
    records = ctx.records.get(a.flow)
    if records is None:
        raise KubemuError(f"flow {a.flow} has not run")
    st = state(ctx)
    fault = st.faults[a.fault] if a.fault else next(iter(st.faults.values()))
    figs = availability.analyze(records, fault.t, stable_s=a.stable)
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
            "fault_t": round(fault.t, 6), "nodes": fault.nodes, "figures": figs, "phases": phases(ctx, fault),
            "checks": checks, "ok": all(c["ok"] for c in checks)}


def describe(step) -> str:
    """One progress line for a fault or availability step."""
    if step.KIND == "availability":
        return f"availability of {step.availability.flow}"
    f = step.fault
    where = f.node or (f"zone {f.zone}" if f.zone else None) or (f"nodes of {f.of}" if f.of else None) \
        or (f"machine {f.machine}" if f.machine is not None else None) \
        or f.pod or (f"a pod of deployment/{f.deployment}" if f.deployment else "")
    when = f" at {f.at:g}s" + (f" after {f.since} started" if f.since else "") if f.at is not None else ""
    return f"fault {f.action} {where}{when}".rstrip()


EXECUTORS = {"fault": run_fault, "availability": run_availability}
