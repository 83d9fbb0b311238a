"""Scenario steps against a running cluster: wait, sleep, traffic, assert.

Each executor takes the step model and the `Cluster`, does real work (polls the API
server, runs a real traffic generator in a real namespace) and returns a JSON-able
record for results.json.
"""
from __future__ import annotations

import time
from typing import Any

import ray

from emulator.api.deletion import kubectl_grace
from emulator.config.object_steps import ObjectCondition
from emulator.config.templates import Placeholder, render, render_values
from emulator.control.objects import condition
from emulator.errors import KubemuError, Timeout
from emulator.node.containers import waiting_reasons
from emulator.runner import chaos_steps, flows, object_steps, study_steps
from emulator.report import study
from emulator.netpol import steps as netpol_steps
from emulator.impair.cluster import run_impair
from emulator.report.hops import entered_node, entered_nodes, extra_hop_ratio  # noqa: F401 (re-exported)
from emulator.report.hops import entered_without_pod_ratio, extra_hop_penalty_ms
from emulator.runner.ingress_wait import ingress_ip, ingress_state, wait_ingress


OVS_REVALIDATION_SECONDS = 0.6


class StepContext:
    """What steps share: the cluster, the scenario, flow records and summaries."""

    def __init__(self, cluster, scenario=None) -> None:
        self.cluster = cluster
        self.scenario = scenario
        self.index = 0
        self.records: dict[str, list[dict]] = {}
        self.summaries: dict[str, Any] = {}
        self.flows = flows.FlowTable()
        self.vars: dict[str, str] = {}   # `save` steps' values, `{var:NAME}`
        self.started = time.time()   # `at:` of fault steps counts from here

    def resolve(self, p: Placeholder) -> str:
        """The run-time value of a `{kind:ref}` placeholder."""
        if p.kind == "var":
            if p.name not in self.vars:
                raise KubemuError(f"no saved value {p.name!r}")
            return self.vars[p.name]
        plan = self.cluster.plan
        if p.kind in ("node", "host"):
            for h in plan.hosts:
                if h.name == p.name:
                    return h.ip
            raise KubemuError(f"no {p.kind} {p.name}")
        if p.kind in ("pod", "poddns"):
            pod = ray.get(self.cluster.api.get.remote("Pod", p.namespace, p.name))
            ip = (pod or {}).get("status", {}).get("podIP")
            if not ip:
                raise KubemuError(f"pod {p.namespace}/{p.name} has no IP")
            return ip if p.kind == "pod" else f"{ip.replace('.', '-')}.{p.namespace}.pod.cluster.local"
        if p.kind == "ingressip":
            return ingress_ip(self.cluster, p.namespace, p.name)
        svc = ray.get(self.cluster.api.get.remote("Service", p.namespace, p.name))
        if svc is None:
            raise KubemuError(f"no Service {p.namespace}/{p.name}")
        spec = svc["spec"]
        if p.kind == "clusterip":
            return spec["clusterIP"]
        if p.kind == "hcport":
            if not spec.get("healthCheckNodePort"):
                raise KubemuError(f"Service {p.namespace}/{p.name} has no healthCheckNodePort")
            return str(spec["healthCheckNodePort"])
        if p.kind == "lbip":
            ingress = svc.get("status", {}).get("loadBalancer", {}).get("ingress") or []
            if not ingress:
                raise KubemuError(f"Service {p.namespace}/{p.name} has no load balancer IP yet")
            return ingress[0]["ip"]
        ports = [q for q in spec.get("ports", []) if p.port in (None, q.get("name"), str(q.get("port")))]
        if not ports or not ports[0].get("nodePort"):
            raise KubemuError(f"Service {p.namespace}/{p.name} has no node port {p.port or ''}".rstrip())
        return str(ports[0]["nodePort"])


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
            ready = [e for s in slices for e in s.get("endpoints", []) if e.get("conditions", {}).get("ready")]
            if not ready:
                return False
            svc = ray.get(api.get.remote("Service", namespace, name))
            if svc is None or svc["spec"].get("type") != "LoadBalancer" or cluster.cloud is None:
                return svc is not None
            return lb_ready(cluster, svc, {e.get("nodeName") for e in ready})
        if kind == "Ingress":
            return ingress_state(cluster, namespace, name)[0]
        raise KubemuError(f"cannot wait for {kind}")
    return check


def lb_ready(cluster, svc: dict, endpoint_nodes: set[str]) -> bool:
    """A load balancer is ready when it has an IP and exactly the nodes it should use pass
    their health checks: the nodes with a ready endpoint (Local) or every node (Cluster)."""
    if not (svc.get("status", {}).get("loadBalancer", {}).get("ingress")):
        return False
    key = f"{svc['metadata'].get('namespace', 'default')}/{svc['metadata']['name']}"
    # What the switches have (the last state pushed), not what is about to be pushed.
    pushed = ray.get(cluster.cloud.state.remote()) or {}
    lbs = [lb for lb in pushed.get("load_balancers", []) if lb["name"] == key or lb["name"].startswith(key + "/")]
    if not lbs:
        return False
    if svc["spec"].get("externalTrafficPolicy") == "Local":
        want = endpoint_nodes
    else:
        want = {n.name for n in cluster.plan.nodes} - cluster.down_nodes
    return all(set(lb["backends"]) == want for lb in lbs)


def pod_problems(cluster, kind: str, namespace: str, name: str) -> list[str]:
    """Why the pods behind a Pod or Deployment are not ready: `pod/x: c: CrashLoopBackOff (...)`."""
    if kind == "Pod":
        pods = [p for p in [ray.get(cluster.api.get.remote("Pod", namespace, name))] if p]
    elif kind == "Deployment":
        dep = ray.get(cluster.api.get.remote("Deployment", namespace, name))
        sel = ((dep or {}).get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        pods = ray.get(cluster.api.list.remote("Pod", namespace, sel))[0] if sel else []
    else:
        return []
    return [f"pod/{p['metadata']['name']}: {r}" for p in sorted(pods, key=lambda p: p["metadata"]["name"])
            for r in waiting_reasons(p)]


def run_wait(step, ctx: StepContext) -> dict:
    w = step.wait
    if w.until is not None:
        return object_steps.run_wait_until(step, ctx)
    t0 = time.time()
    if w.ready.api_kind == "NetworkPolicy":   # enforced: every node's rules have it
        ctx.cluster.wait_for(lambda: ray.get(ctx.cluster.api.get.remote("NetworkPolicy", w.namespace, w.ready.name))
                             is not None, w.timeout, f"{w.ready} to exist")
        netpol_steps.wait_policies_synced(ctx.cluster, max(1.0, w.timeout - (time.time() - t0)))
        return {"step": "wait", "target": str(w.ready), "seconds": round(time.time() - t0, 3)}
    if w.ready.api_kind == "Ingress":
        wait_ingress(ctx.cluster, w.namespace, w.ready.name, w.timeout)
        time.sleep(OVS_REVALIDATION_SECONDS)   # the new route to the front end settles
    else:
        try:
            ctx.cluster.wait_for(ready_check(ctx.cluster, w.ready.api_kind, w.namespace, w.ready.name),
                                 w.timeout, f"{w.ready} to be ready")
        except Timeout as e:
            why = pod_problems(ctx.cluster, w.ready.api_kind, w.namespace, w.ready.name)
            if not why:
                raise
            raise Timeout(f"{e}: {'; '.join(why)}") from None
    if w.ready.api_kind in ("Deployment", "Service"):
        # Ready endpoints are only useful once every node's kube-proxy has programmed them.
        ctx.cluster.wait_proxies_synced(max(1.0, w.timeout - (time.time() - t0)))
    if w.ready.api_kind == "Service" and ctx.cluster.cloud is not None:
        # OVS's datapath caches may forward by the old flows for up to ~0.5 s after the
        # switch acknowledged new ones (revalidation): let a load balancer change settle.
        time.sleep(OVS_REVALIDATION_SECONDS)
    return {"step": "wait", "target": str(w.ready), "seconds": round(time.time() - t0, 3)}


def run_sleep(step, ctx: StepContext) -> dict:
    time.sleep(step.sleep)
    return {"step": "sleep", "seconds": step.sleep}


def run_traffic(step, ctx: StepContext) -> dict:
    return flows.run_traffic(step, ctx)


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


def run_assert(step, ctx: StepContext) -> dict:
    a = step.assert_
    if isinstance(a, ObjectCondition):
        return object_steps.run_object_assert(step, ctx)
    if a.flow in ctx.flows.runs:
        flows.finish(a.flow, ctx)   # a background flow: wait for it first
    summary = ctx.summaries.get(a.flow)
    if summary is None:
        raise KubemuError(f"flow {a.flow} has not run")
    checks = []
    for metric, bound in a.checks().items():
        if metric == "extra_hop_ratio":
            value = extra_hop_ratio(ctx.records[a.flow], ctx.cluster.plan)
        elif metric == "entered_without_pod_ratio":
            value = entered_without_pod_ratio(ctx.records[a.flow], ctx.cluster.plan)
        elif metric == "extra_hop_penalty_ms":
            value = extra_hop_penalty_ms(ctx.records[a.flow], ctx.cluster.plan)
        elif metric.endswith(("_ci_low", "_ci_high")):   # seeded as the report's study section
            base, end = metric.rsplit("_ci_", 1)
            seed = f"{ctx.scenario.seed or 0}:{a.flow}" + (":p50" if base == "p50_ms" else "")
            value = study.estimate(ctx.records[a.flow], ctx.cluster.plan.nodes, base, seed)["ci_" + end]
        else:
            value = metric_value(summary, metric)
        checks.append({"metric": metric, "expected": str(bound), "actual": value, "ok": bound.holds(value)})
    for metric, wanted in a.set_checks().items():
        want = sorted({_expected_value(w, ctx) for w in wanted})
        got = set_metric(metric, summary, ctx.records[a.flow], ctx.cluster.plan)
        checks.append({"metric": metric, "expected": want, "actual": got, "ok": want == got})
    for key, holds in (("contains", lambda w, g: w <= g), ("not_contains", lambda w, g: not (w & g))):
        for metric, wanted in (getattr(a, key) or {}).items():
            want = sorted({_expected_value(w, ctx) for w in wanted})
            got = set_metric(metric, summary, ctx.records[a.flow], ctx.cluster.plan)
            checks.append({"metric": f"{metric} {key}", "expected": want, "actual": got,
                           "ok": holds(set(want), set(got))})
    return {"step": "assert", "flow": a.flow, "checks": checks, "ok": all(c["ok"] for c in checks)}


def _expected_value(value: Any, ctx: StepContext) -> str:
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


def run_apply(step, ctx: StepContext) -> dict:
    objs = ctx.scenario.step_objects(ctx.index)
    for mo in objs:   # placeholders rendered at apply time: {pod:client}/32 in an ipBlock
        ray.get(ctx.cluster.api.apply.remote(render_values(mo.obj, ctx.resolve)))
    return {"step": "apply", "objects": [mo.ref for mo in objs]}


def run_delete(step, ctx: StepContext) -> dict:
    d = step.delete
    grace = kubectl_grace(d.grace_period, d.force)
    ray.get(ctx.cluster.api.delete.remote(d.object.api_kind, d.namespace, d.object.name, grace))
    out = {"step": "delete", "object": str(d.object)}
    if grace is not None:
        out["grace_period"] = grace
    return out


def run_scale(step, ctx: StepContext) -> dict:
    sc = step.scale
    dep = ray.get(ctx.cluster.api.get.remote("Deployment", sc.namespace, sc.deployment))
    if dep is None:
        raise KubemuError(f"no Deployment {sc.namespace}/{sc.deployment}")
    dep["spec"]["replicas"] = sc.replicas
    ray.get(ctx.cluster.api.update.remote(dep))
    return {"step": "scale", "deployment": sc.deployment, "replicas": sc.replicas}


EXECUTORS = {"wait": run_wait, "sleep": run_sleep, "traffic": run_traffic, "assert": run_assert,
             "apply": run_apply, "delete": run_delete, "scale": run_scale, "await": flows.run_await,
             "impair": run_impair, "save": object_steps.run_save}
EXECUTORS.update(chaos_steps.EXECUTORS)
EXECUTORS.update(study_steps.EXECUTORS)
EXECUTORS.update({"reachability": netpol_steps.run_reachability, "label": netpol_steps.run_label})
