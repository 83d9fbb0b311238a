"""`kubemu run`: a scenario from file to results, with the cluster always torn down.

Validates everything first (no kernel object exists before the scenario is known to
be good), builds the cluster, applies the manifests, runs the steps, writes
results.json in the run directory and returns whether every assertion held.
"""
from __future__ import annotations

import datetime
import logging
import os
import time
import traceback
from typing import Callable

import ray

from emulator.errors import KubemuError
from emulator.kernel import hoststat
from emulator.naming import RunNames, new_run_id
from emulator.runner.cluster import Cluster, check_prerequisites
from emulator.runner import flows, signals
from emulator.runner.plan import make_plan
from emulator.runner.ingress_results import ingress_results
from emulator.impair.cluster import apply_impairments
from emulator.config.templates import render_values
from emulator.runner.steps import StepContext, describe, run_step
from emulator.report import kernel_limits, load_lapses, render as report_render
from emulator.records.results import (SCHEMA_VERSION, ImpairmentsRecord, Results, RunTiming, RunTopology,
                                      TopologyClient, TopologyNode)

log = logging.getLogger(__name__)


def new_run_dir(base: str, scenario_name: str, run_id: str) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.abspath(os.path.join(base, f"{stamp}-{scenario_name}-{run_id}"))
    os.makedirs(path, exist_ok=True)
    return path


def run_scenario(scenario, runs_dir: str = "runs", progress: Callable[[str], None] = print,
                 ray_address: str | None = None, iptables_backend: str = "auto",
                 run_id: str | None = None, machines: tuple[int, str] | None = None,
                 live=None, steps: bool = True) -> Results:
    """Run a loaded scenario; returns its results (also written to results.json).

    `machines` (count, placement policy) overrides the scenario's `machines:`. `live`
    (emulator.live.driver.LiveRun, `kubemu up`) extends the plan, starts its parts once
    the cluster is up, and holds the cluster after the steps until asked to tear down;
    `steps=False` skips the scenario's steps."""
    check_prerequisites()
    run_id = run_id or new_run_id()
    run_dir = new_run_dir(runs_dir, scenario.name, run_id)
    plan = make_plan(scenario.topology, RunNames(run_id), iptables_backend)
    if live is not None:
        live.extend_plan(plan)
    timing = scenario.timings()
    results = Results(schema_version=SCHEMA_VERSION, scenario=scenario.name,
                      scenario_file=scenario.file, run_id=run_id, run_dir=run_dir,
                      started=time.time(), steps=[], flows={}, ok=False,
                      timing=RunTiming(profile=scenario.timing, **timing.model_dump()))
    old = signals.arm(run_id)   # SIGINT, SIGTERM, SIGHUP: tear down like Ctrl-C
    t0 = time.time()
    arp_full0 = hoststat.neigh_table_fulls()
    try:
        machines = machines or (scenario.machines.count, scenario.machines.placement)
        with Cluster(run_id, run_dir, plan, timing, progress, ray_address, machines) as cluster:
            cluster.up()
            if live is not None:
                live.start(cluster, run_dir)   # its parts stop first when the cluster goes down
            results.impairments = ImpairmentsRecord.model_validate(
                apply_impairments(cluster, scenario.link_impairments(), progress))
            results.topology = RunTopology(
                nodes=[TopologyNode(name=s.name, zone=s.zone, ip=s.ip, pod_cidr=s.pod_cidr) for s in plan.nodes],
                clients=[TopologyClient(name=s.name, kind=s.kind, ip=s.ip) for s in plan.clients],
                fabric=cluster.fabric_info)
            results.machines = cluster.fleet.summary(cluster.host_info)
            if machines[0] > 1:
                progress("placement: " + "; ".join(f"machine-{m['machine']}: {', '.join(m['hosts'])}"
                                                   for m in results.machines["machines"]))
                progress(cluster.fleet.describe_underlay())
            progress(f"applying {len(scenario.objects)} manifest objects")
            ctx = StepContext(cluster, scenario)
            for mo in scenario.objects:   # placeholders ({node:N}, {host:H}, ...) rendered now
                ctx.client.apply(render_values(mo.obj, ctx.resolve))
            cluster.mark("manifests")
            try:
                for i, step in enumerate(scenario.steps if steps else []):
                    ctx.index = i
                    kind = step.KIND
                    progress(f"step {i + 1}/{len(scenario.steps)}: {describe(step)}")
                    rec = run_step(step, ctx)
                    results.record_step(rec)
                    results.flows.update(flows.new_results(ctx))
                    if kind == "wait" and "first_ready" not in cluster.timeline:
                        cluster.mark("first_ready")
            except KubemuError:   # a failed step: a machine that did not keep up may be why
                _report_load(ctx, results, progress)
                raise
            if live is not None:
                live.hold(ctx, results)   # until `kubemu down`, Ctrl-C or SIGTERM
            if flows.await_all(ctx):   # background flows nobody awaited: their results count too
                results.flows.update(flows.new_results(ctx))
            results.timeline = cluster.timeline
            results.ingresses = ingress_results(cluster)
            if machines[0] > 1:  # packets that crossed between machines
                if cluster.fleet.rebuilds:   # a machine failed and came back: its new Ray node
                    results.machines = cluster.fleet.summary(cluster.host_info)
                results.machines["tunnels"] = cluster.fleet.tunnel_counters()
                results.machines["underlay"]["links"] = cluster.fleet.underlay_counters()
            results.iptables_backend = ctx.client.iptables_backend()
            _report_load(ctx, results, progress)
        results.seal_steps()
        results.ok = all(s.ok for s in results.steps)
    except KeyboardInterrupt:
        results.interrupted = True
        raise
    except KubemuError as e:
        cause = _unwrap(e)  # an actor's KubemuError arrives wrapped in a RayTaskError
        results.error = str(cause)
        if cause is e:
            raise
        raise cause from None
    except Exception as e:  # a bug or a broken machine: one line here, the traceback in the run dir
        path = os.path.join(run_dir, "error.txt")
        with open(path, "w") as f:
            f.write(traceback.format_exc())
        msg = _last_line(_unwrap(e))
        results.error = msg
        raise KubemuError(f"internal error: {msg} (traceback in {path})") from e
    finally:
        signals.disarm(old)
        results.seconds = round(time.time() - t0, 3)
        results.kernel_limits = kernel_limits.summary(arp_full0, hoststat.neigh_table_fulls(), hoststat.gc_thresh3())
        if results.kernel_limits:
            progress(kernel_limits.warning(results.kernel_limits))
        results.seal_steps()
        results.write(os.path.join(run_dir, "results.json"))
        if not results.interrupted:   # a failed run's report shows its error too
            report_render.report_after_run(run_dir, progress)  # report.md + plots; never raises
    return results


def _report_load(ctx, results: Results, progress) -> None:
    """results.load, and its warnings for the user; a failure to gather it is logged, never raised
    (it must not hide the error of a failed step)."""
    try:
        results.load = _load_lapses(ctx, results)
    except Exception:  # noqa: BLE001 - a query to a broken cluster
        log.warning("could not gather the load record", exc_info=True)
        return
    for line in load_lapses.warnings(results.load or {}):
        progress(line)


def _load_lapses(ctx, results: Results) -> dict | None:
    """results.json's `load`: leases that lapsed with no fault to explain them and health-check
    answers late from load (None if neither)."""
    events = ctx.client.lifecycle_events() or []
    faults = [r for r in results._step_records if r.get("step") == "fault"]
    return load_lapses.summary(load_lapses.unexplained_lapses(events, faults), results.started,
                               results.timing.profile if results.timing else None,
                               ctx.client.late_health_answers(), ctx.client.late_readiness_answers())


def _unwrap(e: BaseException) -> BaseException:
    """The original exception of a failed actor call."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(e, ray.exceptions.RayTaskError) and isinstance(cause, BaseException) else e


def _last_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__

