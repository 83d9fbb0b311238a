#!/usr/bin/env python3
"""Benchmark kube-proxy syncs at 1k and 10k Services (2 endpoints each). Run as root.

For each size, in a temporary namespace `kubemu<id>-kpbench` (always deleted): Python
rendering time, the first full sync (save + render + one restore), a steady-state full
resync, a one-Service incremental sync (median of several), and, as the baseline, the
very same full payload restored by bare `iptables-<backend>-restore` into a second fresh
namespace in the same run.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emulator.kubeproxy.proxier import Proxier  # noqa: E402
from emulator.kernel.iptables import IptablesRunner, choose_backend  # noqa: E402
from emulator.naming import new_run_id  # noqa: E402
from emulator.kernel.netns import ns_exec_prefix  # noqa: E402

NODE, NODE_IP, CLUSTER_CIDR = "node-a", "10.128.0.2", "10.4.0.0/14"


@contextlib.contextmanager
def temp_namespace(run_id: str, suffix: str) -> Iterator[str]:
    """A fresh named netns that is deleted whatever happens."""
    name = f"kubemu{run_id}-{suffix}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def objects(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`count` ClusterIP Services and their slices, 2 endpoints each (one on this node)."""
    services, slices = [], []
    for i in range(count):
        name = f"svc-{i}"
        services.append({"kind": "Service", "metadata": {"name": name, "namespace": "bench"},
                         "spec": {"clusterIP": f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}",
                                  "selector": {"app": name},
                                  "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
        slices.append(slice_for(name, i, 2))
    return services, slices


def slice_for(name: str, i: int, replicas: int) -> dict[str, Any]:
    """The EndpointSlice of Service `i` with `replicas` endpoints."""
    eps = [{"addresses": [f"10.{4 + r}.{i // 256 % 256}.{i % 256}"], "conditions": {"ready": True},
            "nodeName": NODE if r == 0 else f"node-{r}"} for r in range(replicas)]
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{name}-x", "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": name}},
            "endpoints": eps, "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


class RecordingRunner(IptablesRunner):
    """IptablesRunner that keeps the last payload (to replay it as the baseline)."""

    last = ""

    def restore(self, text: str) -> None:
        self.last = text
        super().restore(text)


def bare_restore(ns: str, backend: str, payload: str) -> float:
    """Seconds for one bare `iptables-restore --noflush --counters` of the payload."""
    argv = ns_exec_prefix(ns) + [f"iptables-{backend}-restore", "--noflush", "--counters"]
    start = time.perf_counter()
    subprocess.run(argv, input=payload, text=True, check=True, capture_output=True)
    return time.perf_counter() - start


def run(count: int, backend: str, run_id: str, repeats: int) -> dict[str, float]:
    """Measure one size; returns the figures in seconds."""
    services, slices = objects(count)
    with temp_namespace(run_id, "kpbench") as ns, temp_namespace(run_id, "kpbase") as base:
        runner = RecordingRunner(ns_exec_prefix(ns), backend)
        proxier = Proxier(NODE, [NODE_IP], CLUSTER_CIDR, runner)
        for svc in services:
            proxier.on_service("ADDED", svc)
        for sl in slices:
            proxier.on_endpointslice("ADDED", sl)
        first = proxier.sync()
        assert first.ok and first.full, first.error
        payload = runner.last
        resync = proxier.sync(full=True)
        assert resync.ok, resync.error
        incremental = []
        for k in range(repeats):
            i = (k * 7919) % count
            proxier.on_endpointslice("MODIFIED", slice_for(f"svc-{i}", i, 3 if k % 2 == 0 else 1))
            res = proxier.sync()
            assert res.ok and not res.full and res.rewritten_services == 1, res
            incremental.append(res)
        baseline = bare_restore(base, backend, payload)
    inc_total = statistics.median(r.total_seconds for r in incremental)
    return {
        "lines": payload.count("\n"),
        "render": first.render_seconds, "full": first.total_seconds, "save": first.save_seconds,
        "restore": first.restore_seconds, "resync": resync.total_seconds,
        "inc": inc_total, "inc_render": statistics.median(r.render_seconds for r in incremental),
        "inc_restore": statistics.median(r.restore_seconds for r in incremental),
        "inc_lines": incremental[-1].lines, "baseline": baseline,
    }


def main() -> int:
    """Parse arguments, run the sizes and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--backend", default="auto", choices=("auto", "legacy", "nft"))
    parser.add_argument("--repeats", type=int, default=7, help="incremental syncs to take the median of")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/kubeproxy_sync.py needs root (it creates network namespaces)", file=sys.stderr)
        return 2
    backend = choose_backend(args.backend)
    run_id = new_run_id()
    print(f"backend: {backend}   namespaces: kubemu{run_id}-kpbench / -kpbase   (times in ms)")
    header = (f"{'services':>8} {'lines':>7} {'render':>7} {'full':>7} {'resync':>7} {'incr':>6}"
              f" {'(rend/rest)':>12} {'bare':>7} {'full/bare':>9} {'render/bare':>11}")
    print(header)
    for size in (int(s) for s in args.sizes.split(",")):
        r = run(size, backend, run_id, args.repeats)
        print(f"{size:>8} {int(r['lines']):>7} {r['render'] * 1e3:>7.0f} {r['full'] * 1e3:>7.0f}"
              f" {r['resync'] * 1e3:>7.0f} {r['inc'] * 1e3:>6.1f}"
              f" {r['inc_render'] * 1e3:>5.1f}/{r['inc_restore'] * 1e3:<6.1f}"
              f" {r['baseline'] * 1e3:>7.0f} {r['full'] / r['baseline']:>9.2f}x"
              f" {r['render'] / r['baseline']:>10.2f}x")
    print("full = first sync (iptables-save + render + restore); resync = steady-state full sync;"
          " incr = one Service's endpoints changed (median); bare = same full payload restored by"
          f" iptables-{backend}-restore into a fresh namespace")
    return 0


if __name__ == "__main__":
    sys.exit(main())
