"""The `reachability` step: a NetworkPolicy probe matrix against a running cluster.

Wait until the pods are ready and every node enforces the newest policies (and kube-proxy has
the Services), then from each pod probe each target pod's Service IP on each port in
parallel (one probe process per source pod; `matrix.probe_matrix` re-probes blocked
cells once), print the matrices and fail the step when one differs from the expectation.
"""
from __future__ import annotations

import json
import sys
import time

from emulator.errors import KubemuError
from emulator.netpol.matrix import compare, probe_matrix
from emulator.runner.steps.registry import step


def describe(s) -> str:
    r = s.reachability
    return f"reachability {r.name or ''}: {len(r.pods)}x{len(r.pods)} pods on {', '.join(map(str, r.ports))}"


def _targets(client, spec) -> dict[tuple[str, str], tuple[str, int] | None]:
    """(to pod, port) -> (Service IP, Service port), None when the Service lacks that port."""
    out = {}
    for pod in spec.pods:
        ns, name = spec.service_of(pod)
        svc = client.get("Service", ns, name)
        if svc is None or not svc["spec"].get("clusterIP"):
            raise KubemuError(f"no Service {ns}/{name} with a ClusterIP to probe {pod}")
        for pp in spec.ports:
            port = next((q["port"] for q in svc["spec"].get("ports", [])
                         if q.get("protocol", "TCP") == pp.protocol and q.get("targetPort", q["port"]) == pp.port),
                        None)
            out[(pod, str(pp))] = (svc["spec"]["clusterIP"], port) if port else None
    return out


def _run_probes(client, spec, reqs: dict[str, list[list]]) -> dict[str, list[str]]:
    """One probe process per source pod, in its namespace, all at once."""
    argv = {src: [sys.executable, "-m", "emulator.netpol.probe",
                  json.dumps({"timeout": spec.timeout, "targets": targets})] for src, targets in reqs.items()}
    out = {}
    for src, res in client.exec_in_pods(argv, 30 + spec.timeout).items():
        if res["rc"] != 0:
            raise KubemuError(f"reachability probe failed in {src}: {res['stderr'][-300:]}")
        out[src] = json.loads(res["stdout"])
    return out


MAX_TRACED = 3   # differences whose conntrack entries the record keeps


def _conntrack(client, diff: dict) -> dict[str, list[str]]:
    """The conntrack entries between a differing cell's two pods, on the source's and the
    target's node (a flow that outlived a policy change shows up here)."""
    pods = {k: client.get("Pod", *diff[k].split("/", 1)) for k in ("from", "to")}
    ips = {k: ((p or {}).get("status") or {}).get("podIP") for k, p in pods.items()}
    out: dict[str, list[str]] = {}
    if not all(ips.values()):
        return out
    to = f"={ips['to']}"   # an entry's src=/dst= field, not a longer address it prefixes
    for p in pods.values():
        node = ((p or {}).get("spec") or {}).get("nodeName")
        if not node or node in out:
            continue
        try:
            lines = client.conntrack_from(node, ips["from"])
        except Exception as e:  # diagnostics only
            out[node] = [f"conntrack failed: {e}"]
            continue
        out[node] = [ln for ln in lines if any(f.endswith(to) for f in ln.split())][:20]
    return out


@step("reachability", describe)
def run_reachability(s, ctx) -> dict:
    """Probe the matrix, print it next to the expectation, record it."""
    spec, client = s.reachability, ctx.client
    t0 = time.time()
    pods = [client.ready_check("Pod", *p.split("/", 1)) for p in spec.pods]
    client.wait_for(lambda: all(check() for check in pods), 90, "the probed pods to be ready", 0.2)
    waited = client.wait_policies_synced(60)
    client.wait_proxies_synced(60)
    targets = _targets(client, spec)
    outcome = probe_matrix(spec.pods, spec.ports, lambda d, port: targets[(d, port)],
                           lambda reqs: _run_probes(client, spec, reqs))
    rec = compare(spec.name or "reachability", spec.pods, spec.ports, outcome, spec.expect.allows)
    for diff in rec["differences"][:MAX_TRACED]:
        diff["conntrack"] = _conntrack(client, diff)
    print(rec["text"], flush=True)
    return {"step": "reachability", "name": spec.name, "pods": spec.pods, **rec,
            "policy_sync_wait_s": round(waited, 3), "seconds": round(time.time() - t0, 3)}
