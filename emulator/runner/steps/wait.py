"""The `wait` step: until an object is ready (`ready:`) or an object condition holds (`until:`)."""
from __future__ import annotations

import json
import time

from emulator.errors import KubemuError
from emulator.runner.steps.objects import expected, fetch, holds
from emulator.runner.steps.registry import step


def describe(s) -> str:
    w = s.wait
    return f"wait until {w.ready} is ready" if w.ready is not None else f"wait until {w.until.describe()}"


@step("wait", describe)
def run_wait(s, ctx) -> dict:
    """Wait for readiness, then for what makes it useful: enforced policies, programmed
    kube-proxies, load balancer changes in the datapath."""
    w = s.wait
    if w.until is not None:
        return run_wait_until(s, ctx)
    client = ctx.client
    t0 = time.time()
    kind = w.ready.api_kind
    if kind == "NetworkPolicy":   # enforced: every node's rules have it
        client.wait_for(lambda: client.get("NetworkPolicy", w.namespace, w.ready.name) is not None,
                        w.timeout, f"{w.ready} to exist")
        client.wait_policies_synced(max(1.0, w.timeout - (time.time() - t0)))
        return {"step": "wait", "target": str(w.ready), "seconds": round(time.time() - t0, 3)}
    if kind == "Ingress":
        client.wait_ingress(w.namespace, w.ready.name, w.timeout)
        client.wait_revalidated()   # the new route to the front end is what packets meet
    else:
        client.wait_ready(kind, w.namespace, w.ready.name, w.timeout, f"{w.ready} to be ready")
    if kind in ("Deployment", "Service"):
        # Ready endpoints are only useful once every node's kube-proxy has programmed them.
        client.wait_proxies_synced(max(1.0, w.timeout - (time.time() - t0)))
    if kind == "Service" and ctx.cluster.cloud is not None:
        # OVS's datapath caches may forward by the old flows after the switch acknowledged
        # new ones until revalidated: let a load balancer change reach the datapath.
        client.wait_revalidated()
    return {"step": "wait", "target": str(w.ready), "seconds": round(time.time() - t0, 3)}


def run_wait_until(s, ctx) -> dict:
    """`wait: {until: ...}`: poll the object until the condition holds or the timeout passes."""
    w, cond = s.wait, s.wait.until
    t0 = time.time()
    want = expected(cond, ctx.resolve) if cond.condition() == "equals" else None
    seen: list = [None]

    def check() -> bool:
        ok, seen[0] = holds(cond, fetch(ctx.client, cond.object, cond.namespace_of), want)
        return ok
    try:
        ctx.client.wait_for(check, w.timeout, cond.describe())
    except KubemuError as e:
        raise type(e)(f"{e} (last seen: {json.dumps(seen[0], default=str)[:200]})") from None
    return {"step": "wait", "until": cond.describe(), "seconds": round(time.time() - t0, 3)}
