#!/usr/bin/env python3
"""SDN controller restarts (or bridge channel reconnects) under load-balanced traffic.

One regional-3-lb cluster, a LoadBalancer Service over netexec pods on two nodes and,
per round, 100 req/s of HTTP from the internet host for `--seconds`; one disturbance per
round, 1 s into the traffic:
- `restart`: kill the SDN controller's process (Ray starts a new one);
- `none`: nothing (the noise floor of the machine: requests lost without any disturbance);
- `reconnect`: cut the bridge's controller channel (its controller record points at a
  dead socket) and set it back after `--away` seconds (OVS keeps forwarding on its flows
  meanwhile).
Prints the failed requests of every round, the flow and group mods the controller sent to
the bridge because of it, and the flow/group table lines that differ across it.

Run as root: .venv/bin/python bench/sdn_restart.py [--rounds 20 --mode restart]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from typing import Any

import ray

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emulator.config import load_topology  # noqa: E402
from emulator.config.timing import timing_for  # noqa: E402
from emulator.naming import RunNames, new_run_id  # noqa: E402
from emulator.runner.cluster import Cluster  # noqa: E402
from emulator.runner.plan import make_plan  # noqa: E402
from emulator.runner.steps import ready_check  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"


def deploy(cluster: Cluster) -> str:
    """netexec pods on the first two nodes behind a LoadBalancer Service; its external IP."""
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"u{i}", "labels": {"app": "u"}},
             "spec": {"nodeSelector": {"kubernetes.io/hostname": n.name},
                      "containers": [{"name": "c", "image": AGNHOST, "args": ["netexec", "--http-port=8080"]}]}}
            for i, n in enumerate(cluster.plan.nodes[:2])]
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "u"},
           "spec": {"type": "LoadBalancer", "selector": {"app": "u"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    for obj in (*pods, svc):
        ray.get(cluster.api.apply.remote(obj))
    cluster.wait_for(ready_check(cluster, "Service", "default", "u"), 60, "Service u")
    cluster.wait_proxies_synced(60)
    return ray.get(cluster.api.get.remote("Service", "default", "u"))["status"]["loadBalancer"]["ingress"][0]["ip"]


def tables(cluster: Cluster) -> set[str]:
    """The bridge's flows and groups, without counters (to compare before and after)."""
    return set(ray.get(cluster.machines[0].table_lines.remote()))


def sent(cluster: Cluster) -> int:
    """Flow and group mods the (current) controller sent to the bridge so far."""
    return ray.get(cluster.sdn.changes_sent.remote()).get(cluster.fabric_info["dpid"], 0)


def port_reuse(out: list[dict], last_used: dict[int, float]) -> list[float | None]:
    """Seconds since each failed request's source port last carried a request (None: first
    use), updating `last_used`: sporadic connect timeouts on a port reused within a minute
    point at the server's TIME_WAIT, not at the network."""
    ages: list[float | None] = []
    for r in sorted(out, key=lambda r: r["t_start"]):
        port = r.get("local_port")
        if r["outcome"] != "ok":
            ages.append(round(r["t_start"] - last_used[port], 1) if port in last_used else None)
        if port:
            last_used[port] = r["t_start"]
    return ages


def one_round(cluster: Cluster, agent: Any, ip: str, mode: str, seconds: float, away: float,
              last_used: dict[int, float]) -> dict:
    """Traffic for `seconds`, the disturbance 1 s in; failures and table changes."""
    before = tables(cluster)
    sent_before = 0 if mode == "restart" else sent(cluster)
    out: list[dict] = []
    params = {"url": f"http://{ip}/hostname", "requests": None, "concurrency": None, "rate": 100,
              "duration": seconds, "timeout": 1.0, "keepalive": False}
    t = threading.Thread(target=lambda: out.extend(ray.get(agent.run_http_load.remote("", params, f"t{new_run_id()}"))))
    t.start()
    time.sleep(1.0)
    t0 = time.time()
    if mode == "restart":
        cluster.restart_sdn_controller()
    elif mode == "reconnect":
        ray.get(cluster.machines[0].set_controller_channel.remote(False))
        time.sleep(away)
        ray.get(cluster.machines[0].set_controller_channel.remote(True))
    cluster.wait_for(lambda: cluster.sdn_ready(t0 if mode == "restart" else 0.0), 30,
                     "the SDN controller to program the bridge", 0.2)
    programmed = time.time() - t0
    t.join(seconds + 60)
    after = tables(cluster)
    mods = sent(cluster) - sent_before
    failed = [r for r in out if r["outcome"] != "ok"]
    return {"requests": len(out), "failed": len(failed), "programmed_s": round(programmed, 2),
            "first_fail_s": round(min(r["t_start"] for r in failed) - t0, 2) if failed else None,
            "outcomes": sorted({r["outcome"] for r in failed}),
            "tables_changed": len(before ^ after), "mods_sent": mods, "port_ages": port_reuse(out, last_used)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20, help="rounds per mode")
    ap.add_argument("--mode", nargs="+", choices=["restart", "reconnect", "none"], default=["restart"])
    ap.add_argument("--seconds", type=float, default=12.0, help="traffic per round")
    ap.add_argument("--away", type=float, default=2.0, help="reconnect: seconds without a controller")
    args = ap.parse_args()
    run_id = new_run_id()
    run_dir = tempfile.mkdtemp(prefix=f"kubemu{run_id}-")
    topo = load_topology(os.path.join(ROOT, "topologies", "regional-3-lb.yaml"))
    lost_any = False
    with Cluster(run_id, run_dir, make_plan(topo, RunNames(run_id)), timing_for("fast")) as cluster:
        cluster.up()
        ip = deploy(cluster)
        agent = cluster.agents["inet-1"]
        summaries = []
        last_used: dict[int, float] = {}   # source port -> when it last carried a request
        for mode in args.mode:
            results = []
            for i in range(args.rounds):
                r = one_round(cluster, agent, ip, mode, args.seconds, args.away, last_used)
                results.append(r)
                print(f"{mode} {i + 1:2d}: {r['failed']:4d} of {r['requests']} failed {r['outcomes']} "
                      f"(first at {r['first_fail_s']} s), programmed after {r['programmed_s']} s, "
                      f"{r['mods_sent']} mods sent, {r['tables_changed']} flow/group lines changed; "
                      f"failed ports last used {r['port_ages'][:6]} s before", flush=True)
            lost = sum(r["failed"] for r in results)
            lost_any |= bool(lost) and mode != "none"
            summaries.append(f"{mode}: {lost} of {sum(r['requests'] for r in results)} requests failed over "
                             f"{args.rounds} rounds ({sum(1 for r in results if r['failed'])} rounds with failures), "
                             f"{sum(r['mods_sent'] for r in results)} mods sent, "
                             f"{sum(r['tables_changed'] for r in results)} table lines changed")
        print("\n".join(summaries))
    return 1 if lost_any else 0


if __name__ == "__main__":
    sys.exit(main())
