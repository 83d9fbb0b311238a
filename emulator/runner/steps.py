"""Scenario steps against a running cluster: wait, sleep, traffic, assert.

Each executor takes the step model and the `Cluster`, does real work (polls the API
server, runs a real traffic generator in a real namespace) and returns a JSON-able
record for results.json.
"""
from __future__ import annotations

import time
from typing import Any

import ray

from emulator.control.objects import condition
from emulator.errors import KubemuError
from emulator.report import stats


class StepContext:
    """What steps share: the cluster, flow records and summaries."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.records: dict[str, list[dict]] = {}
        self.summaries: dict[str, Any] = {}


def ready_check(cluster, kind: str, namespace: str, name: str):
    """A callable telling whether the object is ready (Deployment, Pod, Service)."""
    api = cluster.api

    def check() -> bool:
        if kind == "Deployment":
            d = ray.get(api.get.remote("Deployment", namespace, name))
            if d is None:
                return False
            st, want = d.get("status", {}), d["spec"].get("replicas", 1)
            return st.get("readyReplicas", 0) >= want and st.get("updatedReplicas", 0) >= want \
                and st.get("replicas", 0) == want
        if kind == "Pod":
            p = ray.get(api.get.remote("Pod", namespace, name))
            return p is not None and condition(p, "Ready")
        if kind == "Service":
            slices, _ = ray.get(api.list.remote("EndpointSlice", namespace,
                                                {"kubernetes.io/service-name": name}))
            return any(e.get("conditions", {}).get("ready") for s in slices for e in s.get("endpoints", []))
        raise KubemuError(f"cannot wait for {kind}")
    return check


def run_wait(step, ctx: StepContext) -> dict:
    w = step.wait
    t0 = time.time()
    ctx.cluster.wait_for(ready_check(ctx.cluster, w.ready.api_kind, w.namespace, w.ready.name),
                         w.timeout, f"{w.ready} to be ready")
    if w.ready.api_kind in ("Deployment", "Service"):
        # Ready endpoints are only useful once every node's kube-proxy has programmed them.
        ctx.cluster.wait_proxies_synced(max(1.0, w.timeout - (time.time() - t0)))
    return {"step": "wait", "target": str(w.ready), "seconds": round(time.time() - t0, 3)}


def run_sleep(step, ctx: StepContext) -> dict:
    time.sleep(step.sleep)
    return {"step": "sleep", "seconds": step.sleep}


def http_params(h) -> dict:
    """Parameters of the HTTP load generator for an `http:` spec."""
    return {"url": h.url, "requests": h.requests, "concurrency": h.concurrency, "timeout": h.timeout,
            "keepalive": h.keepalive}


def run_traffic(step, ctx: StepContext) -> dict:
    spec = step.traffic
    src = spec.from_
    cluster = ctx.cluster
    if src.kind == "pod":
        agent, target = cluster.agent_of_pod(src.namespace or "default", src.name), \
            f"{src.namespace or 'default'}/{src.name}"
    else:
        agent, target = cluster.agents[src.name], ""
    t0 = time.time()
    records = ray.get(agent.run_http_load.remote(target, http_params(spec.http), spec.name))
    ctx.records[spec.name] = records
    summary = stats.summarize(records)
    ctx.summaries[spec.name] = summary
    return {"step": "traffic", "flow": spec.name, "from": str(src), "seconds": round(time.time() - t0, 3),
            "requests": len(records)}


def metric_value(summary, metric: str) -> float:
    """The value of an assertable metric of a flow summary."""
    if metric == "success_ratio":
        return summary.success_ratio
    if metric == "distinct_backends":
        return summary.distinct_backends
    if metric.endswith("_ms"):
        q = metric[:-3]
        lat = summary.total_ms
        return float("inf") if lat is None else getattr(lat, q)
    raise KubemuError(f"unknown metric {metric}")


def run_assert(step, ctx: StepContext) -> dict:
    a = step.assert_
    summary = ctx.summaries.get(a.flow)
    if summary is None:
        raise KubemuError(f"flow {a.flow} has not run")
    checks = []
    for metric, bound in a.checks().items():
        value = metric_value(summary, metric)
        checks.append({"metric": metric, "expected": str(bound), "actual": value, "ok": bound.holds(value)})
    return {"step": "assert", "flow": a.flow, "checks": checks, "ok": all(c["ok"] for c in checks)}


EXECUTORS = {"wait": run_wait, "sleep": run_sleep, "traffic": run_traffic, "assert": run_assert}
