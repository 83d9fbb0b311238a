#!/usr/bin/env python3
"""Data-plane cost of each path to one pod: direct, ClusterIP, load balancer (Cluster and Local).

One cluster (topologies/regional-3-lb.yaml, timing fast), one server pod on
default-pool-c-1 running agnhost netexec (HTTP :8080) and a real `iperf3 -s` (:5201),
behind a ClusterIP Service and two LoadBalancer Services (externalTrafficPolicy Cluster
and Local). For each path: iperf3 TCP throughput (one stream; the median of several
tests taken in turns over the paths) and HTTP latency (a new
connection per request: TCP connect p50, total p50/p99), as ratios to the direct path
FROM THE SAME KIND OF SOURCE:

  in-cluster: client pod on default-pool-a-1 -> server pod IP (direct) | -> ClusterIP
  outside:    VPC VM vm-1 -> server pod IP (direct, routed by the VPC: an internet host
              cannot reach pod IPs, as in GKE) | internet host inet-1 -> LB IP, Cluster
              policy | -> LB IP, Local policy (both sources are hosts on the VPC fabric)

Every request and test is real traffic through namespaces, veths, iptables and OVS.
Run as root: .venv/bin/python bench/dataplane.py [--requests 300] [--seconds 2] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import statistics
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ray  # noqa: E402

from emulator.config import load_topology  # noqa: E402
from emulator.config.scenario import TrafficSpec  # noqa: E402
from emulator.config.timing import timing_for  # noqa: E402
from emulator.naming import RunNames, new_run_id  # noqa: E402
from emulator.report.hops import entered_node  # noqa: E402
from emulator.runner import flows  # noqa: E402
from emulator.runner.cluster import Cluster  # noqa: E402
from emulator.runner.plan import make_plan  # noqa: E402
from emulator.runner.client import ClusterClient  # noqa: E402
from emulator.runner.steps import StepContext  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
PORTS = [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "iperf", "port": 5201, "targetPort": 5201}]
# (label, source, host to reach, baseline label)
PATHS = [("pod -> pod IP (direct)", "pod/client", "{pod:server}", None),
         ("pod -> ClusterIP", "pod/client", "{clusterip:srv}", "pod -> pod IP (direct)"),
         ("VM -> pod IP (direct)", "host/vm-1", "{pod:server}", None),
         ("internet -> LB, Cluster", "host/inet-1", "{lbip:lb-cluster}", "VM -> pod IP (direct)"),
         ("internet -> LB, Local", "host/inet-1", "{lbip:lb-local}", "VM -> pod IP (direct)")]


def manifests() -> list[dict]:
    """The server pod, the client pod and the three Services."""
    def svc(name: str, **spec) -> dict:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"selector": {"app": "srv"}, "ports": PORTS, **spec}}
    return [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server", "labels": {"app": "srv"}},
         "spec": {"nodeName": "default-pool-c-1", "containers": [
             {"name": "web", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
              "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}},
             {"name": "iperf3", "image": "networkstatic/iperf3", "command": ["iperf3", "-s", "-p", "5201"]}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
         "spec": {"nodeName": "default-pool-a-1", "containers": [{"name": "c", "image": AGNHOST, "args": ["pause"]}]}},
        svc("srv"),
        svc("lb-cluster", type="LoadBalancer", externalTrafficPolicy="Cluster"),
        svc("lb-local", type="LoadBalancer", externalTrafficPolicy="Local"),
    ]


def flow(ctx: StepContext, name: str, source: str, kind: str, load: dict):
    """Run one flow through the scenario runner's code path; its summary."""
    spec = TrafficSpec.model_validate({"name": name, "from": source, kind: load})
    flows.start(spec, ctx)
    flows.finish(spec.name, ctx)
    return ctx.summaries[spec.name]


def throughput(ctx: StepContext, rounds: int, seconds: float) -> dict[str, dict]:
    """iperf3 Mbit/s per path: `rounds` rounds over every path in turn (so a busy moment
    of the shared machine hits every path), median and all values."""
    got: dict[str, list] = {label: [] for label, *_ in PATHS}
    for r in range(rounds):
        for i, (label, source, host, _) in enumerate(PATHS):
            s = flow(ctx, f"p{i}-iperf3-{r}", source, "iperf3", {"target": f"{host}:5201", "duration": seconds})
            got[label].append(((s.bits_per_second or 0.0) / 1e6, s.retransmits))
    return {label: {"mbps": statistics.median(m for m, _ in v), "all_mbps": [m for m, _ in v],
                    "retransmits": int(statistics.median(t or 0 for _, t in v))} for label, v in got.items()}


def latency(ctx: StepContext, requests: int) -> dict[str, dict]:
    """HTTP latency per path: a new connection per request, one request at a time."""
    out = {}
    for i, (label, source, host, _) in enumerate(PATHS):
        port = 8080 if host.startswith("{pod:") else 80   # a pod IP: the container port; a Service: its port
        name = f"p{i}-http"
        s = flow(ctx, name, source, "http", {"url": f"http://{host}:{port}/hostname", "requests": requests})
        entered = Counter(entered_node(r, ctx.cluster.plan) for r in ctx.records[name]) \
            if source.startswith("host/inet") else {}
        out[label] = {"ok": s.ok, "count": s.count, "connect_p50": s.connect_ms and s.connect_ms.p50,
                      "p50": s.total_ms and s.total_ms.p50, "p99": s.total_ms and s.total_ms.p99,
                      "entered": dict(entered)}
    return out


def _sigterm(_signum, _frame):
    raise KeyboardInterrupt("SIGTERM")


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def print_table(results: dict[str, dict], bases: dict[str, str | None]) -> None:
    """One row per path, with ratios to its baseline."""
    print(f"{'path':<28} {'Mbit/s':>8} {'ratio':>6} {'retr':>6} {'ok':>9} {'conn p50':>9} "
          f"{'p50 ms':>7} {'ratio':>6} {'p99 ms':>7} {'ratio':>6}  LB: requests per entry node")
    for label, r in results.items():
        base = results.get(bases[label] or label)
        print(f"{label:<28} {r['mbps']:>8.1f} {_ratio(r['mbps'], base['mbps']):>6} "
              f"{'-' if r['retransmits'] is None else r['retransmits']:>6} {r['ok']:>4}/{r['count']:<4} "
              f"{_num(r['connect_p50']):>9} {_num(r['p50']):>7} {_ratio(r['p50'], base['p50']):>6} "
              f"{_num(r['p99']):>7} {_ratio(r['p99'], base['p99']):>6}  "
              + (", ".join(f"{n or '?'} {c}" for n, c in sorted(r["entered"].items(), key=str)) or "-"), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300, help="HTTP requests per path")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each iperf3 test")
    ap.add_argument("--rounds", type=int, default=3, help="iperf3 tests per path (the median is shown)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _sigterm)   # tear down on `kill` / `timeout` too
    topo = load_topology(os.path.join(ROOT, "topologies", "regional-3-lb.yaml"))
    run_id = new_run_id()
    run_dir = tempfile.mkdtemp(prefix=f"kubemu{run_id}-dataplane-")
    t0 = time.time()
    try:
        with Cluster(run_id, run_dir, make_plan(topo, RunNames(run_id)), timing_for("fast")) as cluster:
            cluster.up()
            for obj in manifests():
                ray.get(cluster.api.apply.remote(obj))
            for kind, name in (("Pod", "server"), ("Pod", "client"), ("Service", "srv"),
                               ("Service", "lb-cluster"), ("Service", "lb-local")):
                cluster.wait_for(ClusterClient(cluster).ready_check(kind, "default", name), 120, f"{kind} {name}")
            cluster.wait_proxies_synced(60)
            ClusterClient(cluster).wait_revalidated()
            print(f"cluster of {len(topo.nodes())} nodes ready in {time.time() - t0:.1f}s; server pod on "
                  f"default-pool-c-1, client pod on default-pool-a-1; {args.requests} HTTP requests "
                  f"(new connection each) and {args.rounds} one-stream iperf3 tests of {args.seconds:g}s "
                  "per path (median)", flush=True)
            ctx = StepContext(cluster)
            tput, lat = throughput(ctx, args.rounds, args.seconds), latency(ctx, args.requests)
            results = {label: {**tput[label], **lat[label]} for label, *_ in PATHS}
        print_table(results, {label: base for label, _, _, base in PATHS})
        print("iperf3 Mbit/s of each round: " + "; ".join(
            f"{label}: {', '.join(f'{m:.0f}' for m in r['all_mbps'])}" for label, r in results.items()))
        print("ratios: in-cluster paths against pod -> pod IP; load balancer paths against "
              "VM -> pod IP (a host on the VPC fabric); Mbit/s ratio < 1 and latency ratio > 1 mean cost")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"total {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
