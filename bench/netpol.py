#!/usr/bin/env python3
"""NetworkPolicy enforcement latency: from a policy change to its rules on every node.

A 3-node cluster with network policy enabled, 100 netexec pods in 10 label groups and
100 NetworkPolicies (policy i selects pod i and allows ingress from the next group on
8080, and from an ipBlock with an except). Measured, median of `--repeat` changes each:
- policy edit: one policy's allowed group changes; time until every node's enforcer
  has applied a ruleset that includes that change (its resourceVersion);
- no-op change: a namespace label nothing selects; every node renders, nothing is applied;
- the same policy edit with only that 1 policy left (baseline for the 100-policy cost);
- observed by traffic: the time from the edit until real TCP connects from p1 to p0 (allowed
  before the edit, not after) time out, seen from inside p1 (a connect every ~5 ms; the
  first of two timeouts in a row of 0.25 s counts).

Run as root: .venv/bin/python bench/netpol.py [--pods 100 --policies 100 --repeat 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import ray

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emulator.config.timing import timing_for  # noqa: E402
from emulator.config.topology import Topology  # noqa: E402
from emulator.naming import RunNames, new_run_id  # noqa: E402
from emulator.runner.client import ClusterClient  # noqa: E402
from emulator.runner.cluster import Cluster  # noqa: E402
from emulator.runner.plan import make_plan  # noqa: E402

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
GROUPS = 10
BLOCKED_WATCH = """
import json, socket, sys, time
ip, start, ok, last_ok, failed = sys.argv[1], time.time(), 0, None, []
while time.time() < start + 30:
    s = socket.socket(); s.settimeout(0.25)
    t = time.time()
    try:
        s.connect((ip, 8080)); ok += 1; last_ok = t; failed = []
    except OSError:
        failed.append(t)
        if len(failed) == 2:   # two timeouts in a row: blocked, not a slow machine
            print(json.dumps({"start": start, "ok": ok, "last_ok": last_ok, "blocked": failed[0]})); break
    finally:
        s.close()
    time.sleep(0.005)
"""


def topology() -> Topology:
    return Topology.model_validate({
        "name": "bench-netpol", "vpc": {"subnet": "10.128.0.0/20"},
        "cluster": {"name": "bench", "network_mode": "calico", "network_policy": True,
                    "node_pools": [{"name": "pool", "zones": ["us-central1-a", "us-central1-b", "us-central1-c"]}]}})


def pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p{i}", "labels": {"group": f"g{i % GROUPS}", "idx": str(i)}},
            "spec": {"containers": [{"name": "c", "image": AGNHOST, "args": ["netexec", "--http-port=8080"]}]}}


def policy(i: int, allow_group: int) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": f"np{i}"},
            "spec": {"podSelector": {"matchLabels": {"idx": str(i)}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"group": f"g{allow_group % GROUPS}"}}},
                                           {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
                                  "ports": [{"port": 8080, "protocol": "TCP"}]}]}}


def synced_after(cluster: Cluster, rv: int) -> float:
    """Seconds until every node's enforcer has applied changes up to `rv`."""
    agents = [cluster.agents[n.name] for n in cluster.plan.nodes]
    t0 = time.perf_counter()
    while min(ray.get([a.netpol_synced_rv.remote() for a in agents])) < rv:
        time.sleep(0.005)
    return time.perf_counter() - t0


def timed_change(cluster: Cluster, obj: dict) -> float:
    """Apply `obj`; seconds from the apply call to enforcement on every node."""
    t0 = time.perf_counter()
    out = ray.get(cluster.api.apply.remote(obj))
    return (time.perf_counter() - t0) + synced_after(cluster, int(out["metadata"]["resourceVersion"]))


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f} ms (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--policies", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    run_id = new_run_id()
    run_dir = tempfile.mkdtemp(prefix=f"kubemu{run_id}-bench-")
    with Cluster(run_id, run_dir, make_plan(topology(), RunNames(run_id)), timing_for("fast")) as cluster:
        cluster.up()
        api = cluster.api
        t0 = time.time()
        ray.get([api.apply.remote(pod(i)) for i in range(args.pods)])

        def running() -> bool:
            pods, _ = ray.get(api.list.remote("Pod", "default"))
            return sum(1 for p in pods if p.get("status", {}).get("podIP")) >= args.pods
        cluster.wait_for(running, 300, f"{args.pods} pods to run", 0.5)
        print(f"{args.pods} pods running in {time.time() - t0:.1f}s")
        t0 = time.time()
        ray.get([api.apply.remote(policy(i, i + 1)) for i in range(args.policies)])
        ClusterClient(cluster).wait_policies_synced(120)
        print(f"{args.policies} policies created and enforced on {len(cluster.plan.nodes)} nodes "
              f"in {time.time() - t0:.1f}s")
        rules = ray.get(cluster.agents[cluster.plan.nodes[0].name].iptables_save.remote())
        print(f"node 1: {sum(1 for ln in rules.splitlines() if ln.startswith('-A cali-'))} cali- rules")

        edits = [timed_change(cluster, policy(0, 1 + (k % 2))) for k in range(2 * args.repeat)]
        noop = [timed_change(cluster, {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": "default", "labels": {"bench": str(k)}}})
                for k in range(args.repeat)]
        # Observed by traffic: p1 (g1) reaches p0 (g0) while np0 allows g1; switch np0 to g2.
        ray.get(api.apply.remote(policy(0, 1)))
        ClusterClient(cluster).wait_policies_synced(60)
        p0 = ray.get(api.get.remote("Pod", "default", "p0"))["status"]["podIP"]
        watcher = cluster.agent_of_pod("default", "p1").exec.remote(
            "default/p1", [sys.executable, "-c", BLOCKED_WATCH, p0], 60)
        time.sleep(1.0)
        t_apply = time.time()
        ray.get(api.apply.remote(policy(0, 2)))
        res = ray.get(watcher)
        seen = json.loads(res["stdout"]) if res["stdout"].strip() else {}
        if not seen or not seen["ok"] or seen["start"] > t_apply:
            raise SystemExit(f"the traffic watcher did not see the pods connect before the change: {res}")
        observed = seen["blocked"] - t_apply

        for i in range(1, args.policies):
            ray.get(api.delete.remote("NetworkPolicy", "default", f"np{i}"))
        ClusterClient(cluster).wait_policies_synced(60)
        single = [timed_change(cluster, policy(0, 1 + (k % 2))) for k in range(2 * args.repeat)]

        print(f"policy edit, {args.policies} policies, {args.pods} pods: {median_ms(edits)}")
        print(f"no-op change (nothing to apply):        {median_ms(noop)}")
        print(f"policy edit, 1 policy, {args.pods} pods:      {median_ms(single)}")
        print(f"ratio 100 policies / 1 policy:          {statistics.median(edits) / statistics.median(single):.2f}x")
        print(f"observed by traffic (edit -> first blocked connect from p1 to p0): {observed * 1000:.0f} ms")
        print(json.dumps({"edit_ms": statistics.median(edits) * 1000, "noop_ms": statistics.median(noop) * 1000,
                          "single_ms": statistics.median(single) * 1000, "observed_ms": observed * 1000}))


if __name__ == "__main__":
    main()
