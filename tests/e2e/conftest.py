"""Fixtures for whole emulated clusters (root, OVS, Ray).

`cluster_from(topology_file)` builds a cluster the way `kubemu run` does and always
tears it down; tests apply manifests through `apply()` and send real traffic through
the agents (`exec_in`, `http_load`).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

import pytest
import ray

from emulator.config import load_topology
from emulator.config.timing import timing_for
from emulator.naming import RunNames, new_run_id
from emulator.runner.cluster import Cluster
from emulator.runner.plan import make_plan
from emulator.runner.client import ClusterClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOPOLOGIES = os.path.join(ROOT, "topologies")


class ClusterHandle:
    """A running test cluster with helpers for the common test actions."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.api = cluster.api
        self.plan = cluster.plan

    def apply(self, *objs: dict) -> None:
        for o in objs:
            ray.get(self.api.apply.remote(o))

    def delete(self, kind: str, name: str, namespace: str = "default", grace: int | None = None,
               wait: bool = True, timeout: float = 60) -> None:
        """Delete as `kubectl delete` does: a Pod gracefully, waiting until it is gone
        (its kubelet terminated it) unless `wait=False`."""
        ray.get(self.api.delete.remote(kind, namespace, name, grace))
        if wait:
            self.cluster.wait_for(lambda: self.get(kind, name, namespace) is None, timeout,
                                  f"{kind} {namespace}/{name} to be deleted")

    def get(self, kind: str, name: str, namespace: str = "default") -> dict | None:
        return ray.get(self.api.get.remote(kind, namespace, name))

    def wait_ready(self, kind: str, name: str, namespace: str = "default", timeout: float = 60) -> None:
        """Wait until ready, then until every node's kube-proxy has programmed it."""
        self.cluster.wait_for(ClusterClient(self.cluster).ready_check(kind, namespace, name), timeout, f"{kind} {name}")
        self.cluster.wait_proxies_synced(timeout)

    def synced(self, timeout: float = 30) -> None:
        """Wait until every node's kube-proxy has programmed every change so far."""
        self.cluster.wait_proxies_synced(timeout)

    def agent_for(self, source: str):
        """("pod", "ns/name") | ("node", name) | ("host", name) -> (agent, target)."""
        kind, _, name = source.partition("/")
        if kind == "pod":
            ns, _, pod = name.rpartition("/")
            ns = ns or "default"
            return self.cluster.agent_of_pod(ns, pod), f"{ns}/{pod}"
        return self.cluster.agents[name], ""

    def exec_in(self, source: str, argv: list[str], timeout: float = 30) -> dict:
        """Run a command in a pod ("pod/NAME" or "pod/NS/NAME"), node ("node/N") or host ("host/H")."""
        agent, target = self.agent_for(source)
        return ray.get(agent.exec.remote(target, argv, timeout))

    def http_load(self, source: str, url: str, requests: int | None = 20, concurrency: int | None = 1,
                  timeout: float = 2.0, keepalive: bool = False, name: str | None = None,
                  **extra) -> list[dict]:
        """Real HTTP requests from a pod/node/host; one record per request.

        `extra`: other parameters of the generator (`duration`, `rate`)."""
        agent, target = self.agent_for(source)
        params = {"url": url, "requests": requests, "concurrency": concurrency, "timeout": timeout,
                  "keepalive": keepalive, **extra}
        return ray.get(agent.run_http_load.remote(target, params, name or f"t{new_run_id()}"))

    def node_ip(self, node: str) -> str:
        return next(n.ip for n in self.plan.nodes if n.name == node)

    def iptables_save(self, node: str) -> str:
        return ray.get(self.cluster.agents[node].iptables_save.remote())


@contextlib.contextmanager
def cluster_from(topology: str = "regional-3.yaml", timing: str = "fast",
                 machines: tuple[int, str] | None = None) -> Iterator[ClusterHandle]:
    """Build a cluster from a topology file in topologies/ (on `machines`: count, placement); always torn down."""
    topo = load_topology(os.path.join(TOPOLOGIES, topology))
    run_id = new_run_id()
    run_dir = tempfile.mkdtemp(prefix=f"kubemu{run_id}-")
    keep = os.environ.get("KUBEMU_KEEP_TEST_RUNS")
    cluster = Cluster(run_id, run_dir, make_plan(topo, RunNames(run_id)), timing_for(timing), machines=machines)
    try:
        with cluster:
            cluster.up()
            yield ClusterHandle(cluster)
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterHandle]:
    """A 3-node, 3-zone cluster shared by the tests of one module."""
    with cluster_from("regional-3.yaml") as c:
        yield c
