"""Traffic flows of a scenario: start a generator on the source's agent, in the foreground or background.

A flow is one remote call to the source's node agent (`NodeAgent.run_flow`), which runs
the generator as a real process in the source's namespace and returns its records. A
foreground flow waits for that call; a background flow keeps the ObjectRef and the step
returns at once (a node host takes 16 calls per host at a time, at least 64). `await`, an
`assert` on the flow and the end of the scenario collect it. If the run fails or is interrupted, the
cluster teardown kills the generator processes with the run's namespaces and processes.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from emulator.config.loads import split_target
from emulator.config.templates import render
from emulator.errors import KubemuError
from emulator.labels import label_selector_matches
from emulator.report import stats
from emulator.report import summary as report_summary


@dataclass
class FlowRun:
    """One started flow: its step record (updated when it ends) and the pending call."""

    name: str
    kind: str
    background: bool
    started: float
    step_rec: dict[str, Any]
    ref: Any = None
    pod_refs: list[tuple[str, Any]] | None = None   # from: deployment/NAME: (pod, pending call or None) each
    collected: float | None = None   # when the driver had its records (an await, an assert, the end)
    ended: float | None = None       # when its last request ended (from the records)


@dataclass
class FlowTable:
    """Flows of a run: started, finished, and those whose summary results.json has not got yet."""

    runs: dict[str, FlowRun] = field(default_factory=dict)
    unreported: list[str] = field(default_factory=list)

    def pending(self) -> list[str]:
        """Names of the flows still running, in start order."""
        return [n for n, r in self.runs.items() if r.collected is None]


def load_params(spec, resolve) -> dict[str, Any]:
    """Generator parameters of a traffic spec, placeholders resolved by `resolve`."""
    load = spec.load
    kind = spec.protocol
    if kind == "http":
        headers = {k: render(v, resolve) for k, v in (load.headers or {}).items()} or None
        return {"url": render(load.url, resolve), "keepalive": load.keepalive, "headers": headers, **load.pacing()}
    if kind == "ping":
        return {"host": render(load.host, resolve), "count": load.count, "interval": load.interval,
                "timeout": load.timeout}
    if kind == "dns":
        expect = None if load.expect is None else [render(e, resolve) for e in load.expect]
        return {"name": render(load.name, resolve), "type": load.type, "expect": expect, "within": load.within,
                "count": load.count, "interval": load.interval, "timeout": load.timeout, "search": load.search}
    host, port = split_target(render(load.target, resolve), 5201 if kind == "iperf3" else None)
    if kind == "iperf3":
        return {"host": host, "port": port, "duration": load.duration, "parallel": load.parallel,
                "reverse": load.reverse, "timeout": load.timeout}
    if kind == "udp":
        return {"host": host, "port": port, "message": load.message, "reuse_socket": load.reuse_socket,
                **load.pacing()}
    return {"host": host, "port": port, "send": load.send, **load.pacing()}


def describe(spec) -> str:
    """`traffic NAME: 100 HTTP requests from pod/default/client to URL` for progress output."""
    load, kind = spec.load, spec.protocol
    if kind == "ping":
        what, to = f"{load.count} ICMP echoes", load.host
    elif kind == "dns":
        what, to = f"DNS {load.type} " + ("until the expected answer" if load.expect is not None
                                          else f"x{load.count}"), load.name
    elif kind == "iperf3":
        what, to = f"{load.duration:g}s iperf3 test", load.target
    else:
        n = [f"{load.requests} requests"] if load.requests else []
        n += [f"{load.duration:g}s"] if load.duration else []
        what, to = f"{' / '.join(n)} {kind.upper()}", getattr(load, "url", None) or load.target
    bg = " (background)" if spec.background else ""
    return f"traffic {spec.name}{bg}: {what} from {spec.from_} to {to}"


_IN_TURN = ThreadPoolExecutor(max_workers=8, thread_name_prefix="flow-in-turn")


def deployment_pods(client, namespace: str, name: str) -> list[dict]:
    """A Deployment's running pods with an IP (not terminating), by name."""
    dep = client.get("Deployment", namespace, name)
    if dep is None:
        raise KubemuError(f"no Deployment {namespace}/{name}")
    pods = client.list("Pod", namespace)
    return sorted((p for p in pods if label_selector_matches(dep["spec"].get("selector"), p["metadata"].get("labels") or {})
                   and p.get("status", {}).get("podIP") and p["spec"].get("nodeName")
                   and not p["metadata"].get("deletionTimestamp")
                   and p.get("status", {}).get("phase") == "Running"), key=lambda p: p["metadata"]["name"])


def sources(spec, client) -> list[tuple[Any, str, str]]:
    """(agent, target, pod name or "") of each place the flow starts from: one, or with
    `from: deployment/NAME` every pod of it (or the `pod:` N-th)."""
    src = spec.from_
    if src.kind == "pod":
        ns = src.namespace or "default"
        return [(client.agent_of_pod(ns, src.name), f"{ns}/{src.name}", src.name)]
    if src.kind != "deployment":
        return [(client.agent(src.name), "", "")]
    pods = deployment_pods(client, src.namespace, src.name)
    if spec.pod is not None:
        if spec.pod >= len(pods):
            raise KubemuError(f"deployment/{src.name} has {len(pods)} running pods: no pod {spec.pod}")
        pods = [pods[spec.pod]]
    if not pods:
        raise KubemuError(f"deployment/{src.name} has no running pod")
    return [(client.agent(p["spec"]["nodeName"]), f"{src.namespace}/{p['metadata']['name']}",
             p["metadata"]["name"]) for p in pods]


def source_agent(src, client) -> tuple[Any, str]:
    """The agent that runs a single source's generators and its target argument ("ns/pod" or "")."""
    if src.kind == "pod":
        ns = src.namespace or "default"
        return client.agent_of_pod(ns, src.name), f"{ns}/{src.name}"
    return client.agent(src.name), ""


def start(spec, ctx) -> FlowRun:
    """Resolve the spec and start the generator on the source's agent(s) (returns at once)."""
    src = spec.from_
    client = ctx.client
    where = sources(spec, client)
    params = load_params(spec, ctx.resolve)
    t0 = time.time()
    rec = {"step": "traffic", "flow": spec.name, "kind": spec.protocol, "from": str(src),
           "background": spec.background, "started": round(t0, 6)}
    if src.kind == "deployment":
        rec["pods"] = [pod for _, _, pod in where]
    run = FlowRun(spec.name, spec.protocol, spec.background, t0, rec)
    if src.kind == "deployment" and (spec.pods == "all" or spec.pod is not None):
        run.pod_refs = [(pod, client.start_flow(agent, target, spec.protocol, params, f"{spec.name}--{pod}"))
                        for agent, target, pod in where]
    elif src.kind == "deployment":       # every pod in turn: one after the other, in a driver thread
        def in_turn() -> list[list[dict]]:
            return [client.run_flow(agent, target, spec.protocol, params, f"{spec.name}--{pod}")
                    for agent, target, pod in where]
        run.pod_refs = [(pod, None) for _, _, pod in where]
        run.ref = _IN_TURN.submit(in_turn)
    else:
        agent, target, _ = where[0]
        run.ref = client.start_flow(agent, target, spec.protocol, params, spec.name)
    ctx.flows.runs[spec.name] = run
    return run


def _collect(run: FlowRun, ctx) -> list[dict]:
    """The flow's records; from several pods: merged (each marked with `source_pod`) and
    written to flows/NAME.jsonl as one flow's are."""
    if run.pod_refs is None:
        return ctx.client.result(run.ref)
    per_pod = run.ref.result() if run.ref is not None else ctx.client.result([r for _, r in run.pod_refs])
    records = []
    for pod, recs in zip([p for p, _ in run.pod_refs], per_pod):
        records += [{**r, "source_pod": pod} for r in recs]
    records.sort(key=lambda r: r.get("t_start") or 0.0)
    run_dir = getattr(ctx.cluster, "run_dir", None)
    if run_dir:
        with open(os.path.join(run_dir, "flows", f"{run.name}.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    return records


def finish(name: str, ctx) -> FlowRun:
    """Wait for a flow (if still running), keep its records and summary, complete its step record."""
    run = ctx.flows.runs.get(name)
    if run is None:
        raise KubemuError(f"flow {name} has not run")
    if run.collected is not None:
        return run
    try:
        records = _collect(run, ctx)
    finally:
        run.collected = time.time()
        run.ref = run.pod_refs = None
    ctx.records[name] = records
    ctx.summaries[name] = stats.summarize(records)
    ends = [r["t_start"] + (r.get("total_ms") or 0.0) / 1000.0 for r in records if r.get("t_start")]
    run.ended = max(ends, default=run.collected)
    run.step_rec.update(ended=round(run.ended, 6), collected=round(run.collected, 6),
                        seconds=round(run.ended - run.started, 3), requests=len(records))
    ctx.flows.unreported.append(name)
    return run


def await_all(ctx) -> list[str]:
    """Wait for every flow still running; their names."""
    names = ctx.flows.pending()
    for name in names:
        finish(name, ctx)
    return names


def new_results(ctx) -> dict[str, dict[str, Any]]:
    """results.json entries of the flows finished since the last call: summary, kind, start/end, background."""
    out = {}
    for name in ctx.flows.unreported:
        run = ctx.flows.runs[name]
        out[name] = {**report_summary.to_json(ctx.summaries[name]), "kind": run.kind,
                     "background": run.background, "started": round(run.started, 6),
                     "ended": round(run.ended or 0.0, 6)}
    ctx.flows.unreported.clear()
    return out


def run_traffic(step, ctx) -> dict:
    """The `traffic` step: start the flow; wait for it unless it runs in the background."""
    run = start(step.traffic, ctx)
    if not run.background:
        finish(run.name, ctx)
    return run.step_rec


def run_await(step, ctx) -> dict:
    """The `await` step: wait for the named background flows (or all of them)."""
    t0 = time.time()
    names = ctx.flows.pending() if step.await_ == "all" else list(step.await_)
    for name in names:
        finish(name, ctx)
    return {"step": "await", "flows": names, "seconds": round(time.time() - t0, 3)}
