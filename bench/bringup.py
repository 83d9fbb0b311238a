#!/usr/bin/env python3
"""Bring-up time: from nothing to the first successful request through a ClusterIP.

For 3, 10 and 30 nodes (2 netexec pods per node, one client pod), prints the time of
each phase and the total to the first successful HTTP request from the client pod to
the Service's DNS name. Baseline measured in the same run: creating and wiring the same
number of bare namespaces with veths by hand (`ip` commands), the kernel's floor.

Run as root: .venv/bin/python bench/bringup.py [--nodes 3,10,30]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import ray

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emulator.config.timing import timing_for  # noqa: E402
from emulator.config.topology import Topology  # noqa: E402
from emulator.naming import RunNames, new_run_id  # noqa: E402
from emulator.runner.cluster import Cluster  # noqa: E402
from emulator.runner.plan import make_plan  # noqa: E402

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"


def topology(nodes: int) -> Topology:
    """Exactly `nodes` nodes spread over 3 zones (a second pool takes the remainder)."""
    zones = ["us-central1-a", "us-central1-b", "us-central1-c"]
    pools = []
    if nodes >= 3:
        pools.append({"name": "pool", "zones": zones, "nodes_per_zone": nodes // 3})
    if nodes % 3:
        pools.append({"name": "extra", "zones": zones[:nodes % 3], "nodes_per_zone": 1})
    return Topology.model_validate({"name": f"bench-{nodes}", "vpc": {"subnet": "10.128.0.0/20"},
                                    "cluster": {"name": "bench", "node_pools": pools}})


def manifests(replicas: int) -> list[dict]:
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                      "name": "web", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                      "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
         "spec": {"containers": [{"name": "c", "image": AGNHOST, "args": ["pause"]}]}},
    ]


def bring_up(nodes: int) -> dict:
    """Seconds per phase until the first successful request."""
    topo = topology(nodes)
    run_id = new_run_id()
    run_dir = tempfile.mkdtemp(prefix=f"kubemu{run_id}-bench-")
    t0 = time.time()
    cluster = Cluster(run_id, run_dir, make_plan(topo, RunNames(run_id)), timing_for("fast"))
    with cluster:
        cluster.up()
        t_up = time.time() - t0
        for obj in manifests(2 * len(topo.nodes())):
            ray.get(cluster.api.apply.remote(obj))
        first = None
        while time.time() - t0 < 300:
            try:
                agent = cluster.agent_of_pod("default", "client")
                recs = ray.get(agent.run_http_load.remote(
                    "default/client", {"url": "http://web.default.svc.cluster.local/hostname",
                                       "requests": 1, "timeout": 0.5}, f"probe{time.time():.0f}"))
                if recs and recs[0]["outcome"] == "ok":
                    first = time.time() - t0
                    break
            except Exception:  # the client pod is not scheduled or running yet
                pass
            time.sleep(0.1)
        timeline = dict(cluster.timeline)
    subprocess.run(["rm", "-rf", run_dir])
    return {"nodes": len(topo.nodes()), "cluster_up": t_up, "first_request": first, "timeline": timeline,
            "teardown": time.time() - t0 - (first or 0)}


def baseline(nodes: int) -> float:
    """Seconds to create and wire `nodes` namespaces with a veth each, by hand, then remove them."""
    prefix = f"kubemu{new_run_id()}-base"
    t0 = time.time()
    try:
        for i in range(nodes):
            subprocess.run(["ip", "netns", "add", f"{prefix}{i}"], check=True)
        subprocess.run(["ip", "-batch", "-"], check=True, text=True, input="".join(
            f"link add {prefix[-9:]}{i} netns {prefix}0 type veth peer name eth0 netns {prefix}{i}\n"
            for i in range(1, nodes)))
        return time.time() - t0
    finally:
        for i in range(nodes):
            subprocess.run(["ip", "netns", "del", f"{prefix}{i}"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="3,10,30")
    args = ap.parse_args()
    print(f"{'nodes':>5} {'pods':>5} {'cluster up s':>12} {'first request s':>15} "
          f"{'bare netns s':>12} {'ratio':>7}  phases (s since start)")
    for n in [int(x) for x in args.nodes.split(",")]:
        r = bring_up(n)
        base = baseline(r["nodes"])
        first = r["first_request"]
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r["timeline"].items())
        print(f"{r['nodes']:>5} {2 * r['nodes'] + 1:>5} {r['cluster_up']:>12.2f} "
              f"{first if first is not None else float('nan'):>15.2f} {base:>12.2f} "
              f"{(first or float('nan')) / base:>7.0f}x  {phases}", flush=True)


if __name__ == "__main__":
    main()
