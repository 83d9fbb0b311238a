#!/usr/bin/env python3
"""Scale over machines: bring-up, memory per node, request throughput, cross- vs same-machine.

For each node count (2 netexec pods per node, one client pod) and each machine count (1
= today's single fabric; 3 = simulated machines joined by VXLAN, placement `spread`),
prints: seconds to the cluster being up and to the first successful request, the number
of node host processes (each runs up to --per-process emulated hosts of a machine),
memory per node counted apart: the run's processes (PSS: shared pages divided among the
processes that map them; RSS, which counts them once per process, beside it; the node
hosts' PSS alone; with --breakdown the largest process kinds) and the kernel's objects
(growth of unreclaimable slab, per-cpu and vmalloc memory over the run, machine-wide:
other work meanwhile counts too), how many node leases lapsed (NodeReady -> Unknown, up to
the throughput measurement), how long a new Service takes to be programmed on the nodes
(p50 and the last node, from its creation), steady request throughput
(HTTP through the ClusterIP from the client pod, 8 concurrent, new connection each), and,
with several machines, the throughput and p50 latency of requests from a node to a pod on
another machine divided by those to a pod on the node's own machine. After each row, a
"ceiling" line: how many nodes the machine's available memory allows at this row's cost per
node, how many of the cores the run used (CPU seconds of its processes over the row's wall
time), its busiest process kind, the tasks waiting on host-wide kernel locks (state D,
sampled every 2 s: every namespace's `ip` takes the one rtnl lock), how often the kernel's
one ARP table for all namespaces was full, and which resource runs out first.

Run as root: .venv/bin/python bench/scale.py [--nodes 10,50,100] [--machines 1,3] [--timing gke]
[--per-process 64] [--own-informers] [--breakdown] (--per-process 1: one process per
host, kubemu's former layout). At 100 nodes on 2 cores the `fast` profile's 1 s leases and
5 s grace can lapse under load (nodes NotReady, pods evicted): use `--timing gke` there.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

import ray

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bringup import manifests, topology  # noqa: E402
from memory import format_kinds, kernel_growth, kernel_memory, mem_available_mib, run_cpu, run_memory  # noqa: E402
from emulator.config.timing import timing_for  # noqa: E402
from emulator.kernel import hoststat  # noqa: E402
from emulator.naming import RunNames, new_run_id  # noqa: E402
from emulator.report.stats import summarize  # noqa: E402
from emulator.runner.client import ClusterClient  # noqa: E402
from emulator.runner.cluster import Cluster  # noqa: E402
from emulator.runner.node_hosts import HOSTS_PER_PROCESS  # noqa: E402
from emulator.runner.plan import make_plan  # noqa: E402

URL = "http://web.default.svc.cluster.local/hostname"
HOST_KINDS = ("ray::NodeHost", "ray::NodeAgent")   # the processes that run emulated hosts (now, before)


def load(agent, target: str, url: str, requests: int, concurrency: int = 8) -> dict:
    """Requests per second and p50 latency (ms) of one HTTP load."""
    recs = ray.get(agent.run_http_load.remote(target, {"url": url, "requests": requests, "concurrency": concurrency,
                                                       "timeout": 2.0}, f"bench{time.time_ns()}"))
    s = summarize(recs)
    return {"rps": s.throughput_rps or 0.0, "p50": s.total_ms.p50 if s.total_ms else float("nan"),
            "ok": s.success_ratio}


def wait_first_request(cluster: Cluster, t0: float, limit: float = 600.0) -> float | None:
    """Seconds from `t0` to the first successful request of the client pod (None after `limit` s)."""
    while time.time() - t0 < limit:
        try:
            if load(cluster.agent_of_pod("default", "client"), "default/client", URL, 1, 1)["ok"] == 1.0:
                return time.time() - t0
        except Exception:  # the client pod is not scheduled or running yet
            pass
        time.sleep(0.2)
    return None


def cross_ratio(cluster: Cluster) -> tuple[float, float]:
    """(throughput, p50 latency) of node -> pod on another machine over node -> pod on its own machine."""
    place = cluster.fleet.placement
    pods, _ = ray.get(cluster.api.list.remote("Pod", "default", {"app": "web"}))
    src = cluster.plan.nodes[0].name
    same = [p for p in pods if place[p["spec"]["nodeName"]] == place[src] and p["spec"]["nodeName"] != src]
    other = [p for p in pods if place[p["spec"]["nodeName"]] != place[src]]
    if not same or not other:
        return float("nan"), float("nan")
    agent = cluster.agents[src]
    res = [load(agent, "", f"http://{p['status']['podIP']}:8080/hostname", 400) for p in (same[0], other[0])]
    return res[1]["rps"] / res[0]["rps"], res[1]["p50"] / res[0]["p50"]


def service_change(cluster: Cluster, timeout: float = 300.0) -> tuple[float, float]:
    """(p50, max) seconds from a new Service (and its EndpointSlice) to its rules on each node.

    The Service selects the web pods; a node counts once its kube-proxy's sync mark reaches
    the resourceVersions of both the Service and its first EndpointSlice with endpoints."""
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "probe", "namespace": "default"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 81, "targetPort": 8080}]}}
    t0 = time.time()
    ray.get(cluster.api.apply.remote(svc))
    done: dict[str, float] = {}
    want = None
    while time.time() - t0 < timeout:
        if want is None:
            created = ray.get(cluster.api.get.remote("Service", "default", "probe"))
            slices, _ = ray.get(cluster.api.list.remote("EndpointSlice", "default",
                                                       {"kubernetes.io/service-name": "probe"}))
            ready = [sl for sl in slices if sl.get("endpoints")]
            if ready:
                want = max(int(o["metadata"]["resourceVersion"]) for o in [*ready, created])
        if want is not None:
            now = time.time() - t0
            for name, mark in cluster.proxy_marks().items():
                if mark >= want and name not in done:
                    done[name] = now
            if len(done) == len(cluster.plan.nodes) - len(cluster.down_nodes):
                times = sorted(done.values())
                return times[len(times) // 2], times[-1]
        time.sleep(0.05)
    return float("nan"), float("nan")


class BlockedSampler:
    """Tasks in uninterruptible sleep (kernel lock waits: rtnl, iptables-legacy tables), sampled
    every `period` seconds on the whole host while the run lasts: their mean and peak."""

    def __init__(self, period: float = 2.0) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(period,), daemon=True)

    def _loop(self, period: float) -> None:
        while not self._stop.wait(period):
            self.samples.append(hoststat.blocked_tasks())

    def __enter__(self) -> "BlockedSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self) -> tuple[float, int]:
        """(mean, peak) tasks in state D over the samples."""
        return (sum(self.samples) / len(self.samples), max(self.samples)) if self.samples else (0.0, 0)


def ceiling(nodes: int, mib_per_node: float, avail_mib: float, cpu: dict, wall: float,
            blocked: tuple[float, int] = (0.0, 0), arp_full: int = 0) -> str:
    """Where this size stands against the machine: the nodes memory allows, the cores the run
    used, the busiest process kind (a single-threaded one saturates at one core), the tasks
    waiting on host-wide kernel locks (more on average than there are cores: the locks, not
    the cores, set the pace) and the shared ARP table (full: traffic to new neighbours dropped)."""
    cores = os.cpu_count() or 1
    used = sum(s for _, s in cpu.values()) / wall
    kind, (procs, secs) = next(iter(cpu.items()), ("?", (0, 0.0)))
    share = secs / wall / procs if procs else 0.0
    mem_nodes = int(avail_mib / mib_per_node) if mib_per_node > 0 else 0
    first = (f"the kernel's ARP table (one for all namespaces): full {arp_full} times" if arp_full else
             "memory" if mem_nodes <= nodes else
             f"CPU: {kind} at {share:.2f} of a core per process" if share >= 0.8 else
             f"CPU: the run used {used:.1f} of {cores} cores" if used >= 0.8 * cores else
             f"host-wide kernel locks: {blocked[0]:.0f} tasks waiting on average for {cores} cores"
             if blocked[0] >= cores else "nothing yet")
    return (f"ceiling at {nodes} nodes: memory allows ~{mem_nodes} nodes ({mib_per_node:.1f} MiB per node of "
            f"{avail_mib / 1024:.1f} GiB available); the run used {used:.2f} of {cores} cores over {wall:.0f} s, "
            f"busiest {kind} ({procs} process(es), {share:.2f} of a core each); tasks in kernel lock waits "
            f"{blocked[0]:.1f} on average, {blocked[1]} at peak; ARP table full {arp_full} times; "
            f"first to run out: {first}")


def measure(nodes: int, machines: int, timing: str = "fast", per_process: int = HOSTS_PER_PROCESS,
            shared_informers: bool = True, keep: bool = False) -> dict:
    """One cluster: bring-up, memory, throughput and (several machines) the cross/same ratios."""
    topo = topology(nodes)
    run_id = new_run_id()
    run_dir = tempfile.mkdtemp(prefix=f"kubemu{run_id}-scale-")
    kernel0, avail0 = kernel_memory(), mem_available_mib()
    arp_full0 = hoststat.neigh_table_fulls()
    profile = timing_for(timing)
    t0 = time.time()
    out: dict = {"nodes": len(topo.nodes()), "machines": machines}
    try:
        with BlockedSampler() as blocked, Cluster(run_id, run_dir, make_plan(topo, RunNames(run_id)), profile,
                     machines=(machines, "spread"), hosts_per_process=per_process,
                     shared_informers=shared_informers) as cluster:
            cluster.up()
            out["up"] = time.time() - t0
            out["hosts_procs"] = len(cluster.node_hosts)
            for obj in manifests(2 * len(topo.nodes())):
                ray.get(cluster.api.apply.remote(obj))
            out["first"] = wait_first_request(cluster, t0, 600 * cluster.wait_scale)
            cluster.wait_proxies_synced(120 * cluster.wait_scale)
            out["svc_p50"], out["svc_max"] = service_change(cluster)
            mem = run_memory(run_id)
            out["mib_per_node"], out["rss_per_node"] = mem["pss"] / out["nodes"], mem["rss"] / out["nodes"]
            hosts = [v for k, v in mem["kinds"].items() if k in HOST_KINDS]
            out["hosts_pss_per_node"] = sum(v[1] for v in hosts) / out["nodes"]
            kernel, stacks = kernel_growth(kernel0, kernel_memory())
            out["kernel_per_node"], out["stacks_per_node"] = kernel / out["nodes"], stacks / out["nodes"]
            out["kinds"] = format_kinds(mem)
            events = ClusterClient(cluster).lifecycle_events() or []
            lapses = [e for e in events if e["event"] == "node_not_ready"]   # leases that lapsed
            out["lapsed"], out["lapse_detail"] = len(lapses), lapse_detail(lapses, profile)
            try:
                out["rps"] = load(cluster.agent_of_pod("default", "client"), "default/client", URL, 2000)["rps"]
            except Exception as e:   # the client pod evicted meanwhile (lapsed leases), say
                print(f"throughput load failed: {str(e).splitlines()[-1][:200]}", flush=True)
                out["rps"] = float("nan")
            out["cross"] = cross_ratio(cluster) if machines > 1 else (float("nan"), float("nan"))
            out["cpu"], out["wall"] = run_cpu(run_id), time.time() - t0
            per_node = out["mib_per_node"] + out["kernel_per_node"] + out["stacks_per_node"]
            out["ceiling"] = ceiling(out["nodes"], per_node, avail0, out["cpu"], out["wall"], blocked.figures(),
                                     hoststat.neigh_table_fulls() - arp_full0)
    finally:
        if keep:
            print(f"run directory kept: {run_dir}", flush=True)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    return out


def lapse_detail(lapses: list[dict], timing) -> str:
    """Whose clock was late when leases lapsed: the age of the kubelet's last renewal when the
    controller marked the node (about the grace period: the kubelet stopped renewing; less:
    the controller did not see renewals that were made)."""
    if not lapses:
        return ""
    ages = sorted(e.get("silent_s", float("nan")) for e in lapses)
    return (f"lapsed: {len(lapses)} on {len({e['node'] for e in lapses})} nodes; the last renewal was "
            f"p50 {ages[len(ages) // 2]:.1f} s, max {ages[-1]:.1f} s old when the node was marked "
            f"(grace {timing.node_monitor_grace_period:g} s, renewals every {timing.node_lease_interval:g} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="10,50,100")
    ap.add_argument("--machines", default="1,3")
    ap.add_argument("--breakdown", action="store_true", help="print memory per process kind too")
    ap.add_argument("--timing", default="fast", choices=["fast", "gke"],
                    help="timing profile (gke: 10 s leases, 50 s grace; fast: 1 s and 5 s)")
    ap.add_argument("--per-process", type=int, default=HOSTS_PER_PROCESS,
                    help="emulated hosts per node host process (1: a process per host)")
    ap.add_argument("--own-informers", action="store_true",
                    help="each node keeps its own watches (default: a node host's nodes share one per kind set)")
    ap.add_argument("--keep-logs", action="store_true", help="keep each row's run directory (logs) and print it")
    args = ap.parse_args()
    print("MiB/node: PSS and RSS of the run's processes; host PSS: of the node host processes alone; "
          "kernel: slab, per-cpu and vmalloc growth (kernel objects); stacks: kernel stacks and page tables")
    print(f"{'nodes':>5} {'machines':>8} {'host procs':>10} {'up s':>7} {'first req s':>11} {'PSS MiB/node':>12} "
          f"{'RSS MiB/node':>12} {'host PSS/node':>13} {'kernel MiB/node':>15} {'stacks MiB/node':>15} "
          f"{'lapsed leases':>13} {'svc->node p50/max s':>19} {'req/s':>7} {'cross/same req/s':>16} {'cross/same p50':>14}")
    for n in [int(x) for x in args.nodes.split(",")]:
        for m in [int(x) for x in args.machines.split(",")]:
            r = measure(n, m, args.timing, args.per_process, not args.own_informers, args.keep_logs)
            first = r["first"] if r["first"] is not None else float("nan")
            print(f"{r['nodes']:>5} {m:>8} {r['hosts_procs']:>10} {r['up']:>7.1f} {first:>11.1f} "
                  f"{r['mib_per_node']:>12.1f} {r['rss_per_node']:>12.1f} {r['hosts_pss_per_node']:>13.1f} "
                  f"{r['kernel_per_node']:>15.2f} "
                  f"{r['stacks_per_node']:>15.2f} {r['lapsed']:>13} {r['svc_p50']:>9.2f}/{r['svc_max']:<9.2f} {r['rps']:>7.0f} "
                  f"{r['cross'][0]:>16.2f} {r['cross'][1]:>14.2f}",
                  flush=True)
            print("   ", r["ceiling"], flush=True)
            if r["lapse_detail"]:
                print("   ", r["lapse_detail"], flush=True)
            if args.breakdown:
                print(r["kinds"], flush=True)


if __name__ == "__main__":
    main()
