"""Executors of the `reachability` and `label` steps against a running cluster.

Reachability: wait until the pods are ready and every node enforces the newest policies (and kube-proxy has
the Services), then from each pod probe each target pod's Service IP on each port in
parallel (one probe process per source pod; `matrix.probe_matrix` re-probes blocked
cells once), print the matrices and fail the step when one differs from the expectation.
"""
from __future__ import annotations

import json
import sys
import time

import ray

from emulator.errors import KubemuError
from emulator.netpol.matrix import compare, probe_matrix

KINDS = ["NetworkPolicy", "Pod", "Namespace"]


def wait_policies_synced(cluster, timeout: float) -> float:
    """Wait until every node's enforcer has applied every policy/pod/namespace change so far."""
    if not any(n.network_policy for n in cluster.plan.nodes):
        return 0.0
    api = cluster.api
    objs = [o for k in KINDS for o in ray.get(api.list.remote(k))[0]]
    want = max([int(o["metadata"]["resourceVersion"]) for o in objs] + [ray.get(api.last_event_rv.remote(KINDS))])
    agents = [cluster.agents[n.name] for n in cluster.plan.nodes]

    def synced() -> bool:
        return min(ray.get([a.netpol_synced_rv.remote() for a in agents])) >= want
    return cluster.wait_for(synced, timeout, "every node to enforce the network policies", 0.05)


def _targets(cluster, spec) -> dict[tuple[str, str], tuple[str, int] | None]:
    """(to pod, port) -> (Service IP, Service port), None when the Service lacks that port."""
    out = {}
    for pod in spec.pods:
        ns, name = spec.service_of(pod)
        svc = ray.get(cluster.api.get.remote("Service", ns, name))
        if svc is None or not svc["spec"].get("clusterIP"):
            raise KubemuError(f"no Service {ns}/{name} with a ClusterIP to probe {pod}")
        for pp in spec.ports:
            port = next((q["port"] for q in svc["spec"].get("ports", [])
                         if q.get("protocol", "TCP") == pp.protocol and q.get("targetPort", q["port"]) == pp.port),
                        None)
            out[(pod, str(pp))] = (svc["spec"]["clusterIP"], port) if port else None
    return out


def _run_probes(cluster, spec, reqs: dict[str, list[list]]) -> dict[str, list[str]]:
    """One probe process per source pod, in its namespace, all at once."""
    refs = {}
    for src, targets in reqs.items():
        ns, name = src.split("/", 1)
        req = json.dumps({"timeout": spec.timeout, "targets": targets})
        refs[src] = cluster.agent_of_pod(ns, name).exec.remote(
            src, [sys.executable, "-m", "emulator.netpol.probe", req], 30 + spec.timeout)
    out = {}
    for src, ref in refs.items():
        res = ray.get(ref)
        if res["rc"] != 0:
            raise KubemuError(f"reachability probe failed in {src}: {res['stderr'][-300:]}")
        out[src] = json.loads(res["stdout"])
    return out


def run_reachability(step, ctx) -> dict:
    """Probe the matrix, print it next to the expectation, record it."""
    spec, cluster = step.reachability, ctx.cluster
    t0 = time.time()
    from emulator.runner.steps import ready_check   # the runner imports this module
    pods = [ready_check(cluster, "Pod", *p.split("/", 1)) for p in spec.pods]
    cluster.wait_for(lambda: all(check() for check in pods), 90, "the probed pods to be ready", 0.2)
    waited = wait_policies_synced(cluster, 60)
    cluster.wait_proxies_synced(60)
    targets = _targets(cluster, spec)
    outcome = probe_matrix(spec.pods, spec.ports, lambda d, port: targets[(d, port)],
                           lambda reqs: _run_probes(cluster, spec, reqs))
    rec = compare(spec.name or "reachability", spec.pods, spec.ports, outcome, spec.expect.allows)
    print(rec["text"], flush=True)
    return {"step": "reachability", "name": spec.name, "pods": spec.pods, **rec,
            "policy_sync_wait_s": round(waited, 3), "seconds": round(time.time() - t0, 3)}


def run_label(step, ctx) -> dict:
    """Set or remove labels of a Pod or Namespace (null removes), as `kubectl label --overwrite`."""
    kind, _, rest = step.label.object.partition("/")
    ns, _, name = rest.rpartition("/")
    api_kind = "Pod" if kind == "pod" else "Namespace"
    obj = ray.get(ctx.cluster.api.get.remote(api_kind, ns if kind == "pod" else "", name))
    if obj is None:
        if kind == "pod":
            raise KubemuError(f"no Pod {ns}/{name}")
        obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    labels = dict(obj["metadata"].get("labels") or {})
    for k, v in step.label.labels.items():
        if v is None:
            labels.pop(k, None)
        else:
            labels[k] = v
    obj["metadata"]["labels"] = labels
    ray.get(ctx.cluster.api.apply.remote(obj))
    return {"step": "label", "object": step.label.object, "labels": labels}
