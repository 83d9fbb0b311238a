"""Helpers for the Service behaviour e2e tests: manifests, waits and traffic probes.

Used by test_service_behaviors.py and test_service_behaviors_2.py (the `cluster`
fixture of conftest.py is their only shared state).
"""
from __future__ import annotations

import collections
import ipaddress
import json
import sys
import time
from typing import Any, Callable

import ray

from emulator.control.objects import condition

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
A, B, C = NODES = ("default-pool-a-1", "default-pool-b-1", "default-pool-c-1")
VM_IP = "10.128.0.5"


# ---- manifests ---------------------------------------------------------------------

def pod(name: str, node: str, labels: dict | None = None, containers: list[dict] | None = None,
        args: tuple[str, ...] = ("pause",)) -> dict:
    """A Pod pinned to a node (by default a `pause` client)."""
    cs = containers or [{"name": "c", "image": AGNHOST, "args": list(args)}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "containers": cs}}


def netexec_pod(name: str, node: str, labels: dict | None = None, http_port: int = 8080,
                port_name: str = "http", readiness: dict | None = None) -> dict:
    """An agnhost netexec pod (HTTP on `http_port`, UDP 8081) pinned to a node."""
    c = {"name": "c", "image": AGNHOST, "args": ["netexec", f"--http-port={http_port}", "--udp-port=8081"],
         "ports": [{"name": port_name, "containerPort": http_port},
                   {"name": "udp", "containerPort": 8081, "protocol": "UDP"}]}
    if readiness:
        c["readinessProbe"] = readiness
    return pod(name, node, labels, containers=[c])


def service(name: str, selector: dict | None, ports: list[dict], **spec: Any) -> dict:
    """A Service; `selector=None` makes one whose EndpointSlices are written by hand."""
    body = {"ports": ports, **spec}
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


def deployment(name: str, replicas: int, labels: dict) -> dict:
    c = {"name": "c", "image": AGNHOST, "args": ["netexec", "--http-port=8080", "--udp-port=8081"],
         "ports": [{"name": "http", "containerPort": 8080}]}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [c]}}}}


# ---- waiting -----------------------------------------------------------------------

def wait_until(fn: Callable[[], Any], ok: Callable[[Any], bool], timeout: float, what: str,
               interval: float = 0.1) -> Any:
    """Call `fn` until `ok(result)`; returns that result, fails after `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        result = fn()
        if ok(result):
            return result
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {result!r}"[:2000])
        time.sleep(interval)


def endpoints(cluster, svc: str) -> list[dict]:
    """Endpoints of all the Service's EndpointSlices."""
    slices, _ = ray.get(cluster.api.list.remote("EndpointSlice", "default", {"kubernetes.io/service-name": svc}))
    return [e for s in slices for e in s.get("endpoints", [])]


def ready_endpoints(cluster, svc: str) -> int:
    return sum(1 for e in endpoints(cluster, svc) if e.get("conditions", {}).get("ready"))


def wait_endpoints(cluster, svc: str, count: int, ready: bool = True, timeout: float = 30) -> None:
    """Wait until the Service has `count` (ready) endpoints, then until kube-proxy programmed them."""
    fn = (lambda: ready_endpoints(cluster, svc)) if ready else (lambda: len(endpoints(cluster, svc)))
    wait_until(fn, lambda n: n == count, timeout, f"{count} endpoints of {svc}")
    cluster.synced()


def up(cluster, *objs: dict, pods: int | None = None) -> None:
    """Apply objects, wait for every Pod among them to be ready and every Service to have
    `pods` ready endpoints (default: all the pods applied), then for kube-proxy."""
    cluster.apply(*objs)
    pod_names = [o["metadata"]["name"] for o in objs if o["kind"] == "Pod"]
    for name in pod_names:
        cluster.wait_ready("Pod", name)
    want = len(pod_names) if pods is None else pods
    for o in objs:
        if o["kind"] == "Service" and want:
            wait_endpoints(cluster, o["metadata"]["name"], want)
    cluster.synced()


def wait_running(cluster, name: str, timeout: float = 30) -> dict:
    """Wait until a Pod has an IP (whether or not it is ready)."""
    return wait_until(lambda: cluster.get("Pod", name), lambda p: bool(p and p.get("status", {}).get("podIP")),
                      timeout, f"pod {name} running")


def is_ready(cluster, name: str) -> bool:
    return condition(cluster.get("Pod", name), "Ready")


# ---- lookups -----------------------------------------------------------------------

def cluster_ip(cluster, svc: str) -> str:
    return cluster.get("Service", svc)["spec"]["clusterIP"]


def node_port(cluster, svc: str, index: int = 0) -> int:
    return cluster.get("Service", svc)["spec"]["ports"][index]["nodePort"]


def pod_ip(cluster, name: str) -> str:
    return cluster.get("Pod", name)["status"]["podIP"]


def gateway_of(cluster, node: str) -> str:
    """The node's cbr0 address (first address of its pod range)."""
    spec = next(n for n in cluster.plan.nodes if n.name == node)
    return str(ipaddress.ip_network(spec.pod_cidr).network_address + 1)


def client_pods(cluster) -> dict[str, str]:
    """A `pause` client pod on each node: {node: pod name}."""
    names = {A: "cli-a", B: "cli-b", C: "cli-c"}
    cluster.apply(*[pod(name, node) for node, name in names.items()])
    for name in names.values():
        cluster.wait_ready("Pod", name)
    return names


# ---- traffic -----------------------------------------------------------------------

def outcomes(recs: list[dict]) -> dict[str, int]:
    """{outcome: count} of load generator records."""
    return dict(collections.Counter(r["outcome"] for r in recs))


def failures(recs: list[dict]) -> list[tuple]:
    """The distinct (outcome, errno, error) of the records that were not "ok" (for messages)."""
    return sorted({(r["outcome"], r.get("errno"), r.get("error")) for r in recs if r["outcome"] != "ok"},
                  key=str)


def udp(cluster, source: str, host: str, port: int, message: str = "hostname", requests: int = 10,
        timeout: float = 1.0) -> list[dict]:
    """Real UDP request/response exchanges (a new socket each) from a pod, node or host."""
    argv = [sys.executable, "-m", "emulator.traffic.udp_probe", "--host", host, "--port", str(port),
            "--message", message, "--requests", str(requests), "--timeout", str(timeout), "--out", "-"]
    res = cluster.exec_in(source, argv, timeout=timeout * requests + 30)
    assert res["rc"] == 0, res["stderr"]
    return [json.loads(line) for line in res["stdout"].splitlines() if line.strip()]


def curl(cluster, source: str, url: str, timeout: float = 2.0) -> tuple[int | None, dict[str, str], str]:
    """(status or None when no response, lowercased headers, body) of one `curl` request."""
    res = cluster.exec_in(source, ["curl", "-sS", "-i", "--max-time", str(timeout), url], timeout=timeout + 30)
    if res["rc"] != 0:
        return None, {}, res["stderr"].strip()
    head, _, body = res["stdout"].replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body
