"""The `fault` step: break (or repair) something for real, through node agents and Ray.

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

from emulator.config.chaos import RANDOM
from emulator.errors import KubemuError
from emulator.runner.steps import machine_fault
from emulator.runner.steps.registry import step


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
    client = ctx.client
    if spec.pod is not None:
        name = spec.pod
    else:
        pods = client.deployment_pods(spec.namespace, spec.deployment)
        live = sorted(p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp"))
        if not live:
            raise KubemuError(f"fault: Deployment {spec.namespace}/{spec.deployment} has no pod to kill")
        name = rng.choice(live)
    client.delete("Pod", spec.namespace, name, 0)   # killed: no graceful termination
    return name


def describe(s) -> str:
    """One progress line for a fault step."""
    f = s.fault
    where = f.node or (f"zone {f.zone}" if f.zone else None) or (f"nodes of {f.of}" if f.of else None) \
        or (f"machine {f.machine}" if f.machine is not None else None) \
        or f.pod or (f"a pod of deployment/{f.deployment}" if f.deployment else "")
    when = f" at {f.at:g}s" + (f" after {f.since} started" if f.since else "") if f.at is not None else ""
    return f"fault {f.action} {where}{when}".rstrip()


@step("fault", describe)
def run_fault(s, ctx) -> dict:
    """Wait for `at`, then break (or repair) something for real; returns the fault's record."""
    spec, cluster, client = s.fault, ctx.cluster, ctx.client
    st = state(ctx)
    name = spec.label(ctx.index)
    nodes = pick_nodes(spec, cluster, st.rng, st.faults)
    _wait_until_due(spec, ctx)
    before = {sl["metadata"]["name"]: sl for sl in client.list("EndpointSlice")}
    t = time.time()
    rec: dict[str, Any] = {"step": "fault", "name": name, "action": spec.action, "nodes": nodes,
                           "t": round(t, 6), "t_steps": round(t - ctx.started, 3)}
    act = spec.action
    machine = spec.machine if spec.machine is not None or spec.of is None else st.faults[spec.of].machine
    if machine is not None:   # machine-failure, or recover of a machine
        fail = act == "machine-failure"
        rec.update(machine_fault.fail(client, machine) if fail else machine_fault.recover(client, machine))
        (client.mark_down if fail else client.mark_up)(nodes)
    elif act in ("crash", "partition", "zone-outage", "recover"):
        client.node_chaos(nodes, {"zone-outage": "crash"}.get(act, act))
        (client.mark_up if act == "recover" else client.mark_down)(nodes)
    elif act in ("kube-proxy-crash", "link-flap"):
        client.node_chaos(nodes, act.replace("-", "_"), down=spec.down)
    elif act == "pod-kill":
        rec["pod"] = f"{spec.namespace}/{_kill_pod(spec, ctx, st.rng)}"
    elif act == "sdn-restart":
        client.restart("sdn")
    elif act == "controller-manager-restart":
        client.restart("controllers")
    elif act == "api-restart":
        client.restart("api")
    rec["seconds"] = round(time.time() - t, 3)
    st.faults[name] = FaultRun(name, act, t, nodes, before, machine)
    return rec
