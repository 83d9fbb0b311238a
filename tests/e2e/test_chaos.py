"""Chaos on one shared cluster: kube-proxy crash, SDN controller restart, API server restart and
a node crash each end with load-balanced traffic back at 100% and no stale rules; the
node-failure scenario passes and leaves nothing behind."""
from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import Iterator

import pytest
import ray

from conftest import ClusterHandle, cluster_from
from emulator.config.chaos import FaultSpec, FaultStep
from emulator.runner.steps.fault import run_fault
from emulator.runner.steps import StepContext
from emulator.report.expected_phases import comparison
from test_lifecycle import leftovers, start_run

pytestmark = pytest.mark.e2e
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFESTS = os.path.join(ROOT, "scenarios", "manifests", "node-failure.yaml")
NODES = ["default-pool-a-1", "default-pool-b-1", "default-pool-c-1"]


def _objects() -> list[dict]:
    """The scenario's manifests; the web pods tolerate an unreachable node for 60 s, so the
    node tests here see their endpoints leave and come back without an eviction."""
    from ruamel.yaml import YAML
    with open(MANIFESTS) as f:
        objs = [o for o in YAML(typ="safe").load_all(f) if o]
    for o in objs:
        if o["kind"] == "Deployment":
            o["spec"]["template"]["spec"]["tolerations"] = [
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 60}]
    return objs


@pytest.fixture(scope="module")
def lb() -> Iterator[ClusterHandle]:
    """The node-failure manifests (web x2 behind Cluster and Local load balancers) on 3 nodes."""
    with cluster_from("regional-3-lb.yaml") as c:
        c.apply(*_objects())
        for svc in ("web-cluster", "web-local"):
            c.wait_ready("Service", svc)
        yield c


def lb_url(c: ClusterHandle, svc: str) -> str:
    s = c.get("Service", svc)
    return f"http://{s['status']['loadBalancer']['ingress'][0]['ip']}/hostname"


def ok_ratio(c: ClusterHandle, svc: str, n: int = 40, timeout: float = 1.0) -> float:
    recs = c.http_load("host/inet-1", lb_url(c, svc), requests=n, timeout=timeout)
    return sum(r["outcome"] == "ok" for r in recs) / len(recs)


def back_to_full(c: ClusterHandle, timeout: float = 60) -> None:
    """Both load balancers answer every request of a 40-request flow (retried until `timeout`;
    each request may take 3 s, so that a SYN lost while a busy machine starves the datapath
    is retransmitted rather than counted as no recovery)."""
    deadline = time.time() + timeout
    while True:
        ratios = {svc: ok_ratio(c, svc, timeout=3.0) for svc in ("web-cluster", "web-local")}
        if all(r == 1.0 for r in ratios.values()):
            return
        assert time.time() < deadline, f"traffic did not recover: {ratios}"
        time.sleep(0.5)


def scale(c: ClusterHandle, replicas: int) -> None:
    dep = c.get("Deployment", "web")
    dep["spec"]["replicas"] = replicas
    c.apply(dep)


def ready_endpoint_ips(c: ClusterHandle) -> set[str]:
    slices, _ = ray.get(c.api.list.remote("EndpointSlice"))
    return {a for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")
            for a in e["addresses"]}


def no_stale_rules(c: ClusterHandle, nodes: list[str]) -> None:
    """The endpoints a node's rules DNAT to are exactly the API server's ready endpoints now."""
    c.synced()
    want = ready_endpoint_ips(c)
    for n in nodes:
        seps = dnat_targets(c, n)
        assert seps == want, f"{n}: stale {seps - want}, missing {want - seps}"


def dnat_targets(c: ClusterHandle, node: str) -> set[str]:
    """The endpoint IPs a node's kube-proxy rules DNAT to."""
    return set(re.findall(r"-j DNAT --to-destination ([\d.]+):\d+", c.iptables_save(node)))


def fault(c: ClusterHandle, **spec) -> dict:
    """Run a `fault` step as `kubemu run` does."""
    ctx = getattr(c, "step_ctx", None) or StepContext(c.cluster)
    c.step_ctx = ctx
    return run_fault(FaultStep(fault=FaultSpec(**spec)), ctx)


def test_kube_proxy_crash_restarts_and_resyncs(lb):
    done: list[dict] = []
    t = threading.Thread(target=lambda: done.append(
        fault(lb, action="kube-proxy-crash", node="default-pool-c-1", down=2.0)))
    t.start()
    time.sleep(0.5)
    # changes while kube-proxy is down (a pod replaced, one added): the restarted one relists
    pods, _ = ray.get(lb.api.list.remote("Pod", "default", {"app": "web"}))
    lb.delete("Pod", sorted(p["metadata"]["name"] for p in pods)[0])
    scale(lb, 3)
    t.join()
    assert done[0]["action"] == "kube-proxy-crash"
    lb.wait_ready("Deployment", "web")
    lb.wait_ready("Service", "web-cluster")
    back_to_full(lb)
    no_stale_rules(lb, NODES)


def test_sdn_controller_restart(lb):
    """The bridge keeps forwarding on its flows: no request fails across the restart."""
    out: list[dict] = []
    t = threading.Thread(target=lambda: out.extend(lb.http_load(
        "host/inet-1", lb_url(lb, "web-cluster"), requests=None, concurrency=None, rate=50, duration=6,
        timeout=3.0)))   # as in test_vpc.py: a loaded machine's stalls are not an outage
    t.start()
    time.sleep(1.0)
    t0 = time.time()
    fault(lb, action="sdn-restart")
    lb.cluster.wait_for(lambda: lb.cluster.sdn_ready(t0), 30, "the restarted SDN controller to program the bridge", 0.2)
    t.join(120)
    assert out and [r["outcome"] for r in out if r["outcome"] != "ok"] == []
    back_to_full(lb)
    no_stale_rules(lb, NODES)


def test_controller_manager_restart_resumes_reconciling(lb):
    fault(lb, action="controller-manager-restart")
    pods, _ = ray.get(lb.api.list.remote("Pod", "default", {"app": "web"}))
    lb.delete("Pod", sorted(p["metadata"]["name"] for p in pods)[0])   # the new one must replace it
    lb.wait_ready("Deployment", "web")
    lb.wait_ready("Service", "web-cluster")
    back_to_full(lb)
    no_stale_rules(lb, NODES)


def test_api_server_restart_keeps_state_and_watchers_resume(lb):
    svc = lb.get("Service", "web-cluster")
    rv = int(ray.get(lb.api.resource_version.remote()))
    fault(lb, action="api-restart")
    after = lb.get("Service", "web-cluster")
    assert after["spec"]["clusterIP"] == svc["spec"]["clusterIP"]
    assert after["metadata"]["uid"] == svc["metadata"]["uid"]
    assert int(ray.get(lb.api.resource_version.remote())) >= rv
    # watchers resumed: a change after the restart reaches the controllers and every kube-proxy
    scale(lb, 4)
    lb.wait_ready("Deployment", "web")
    lb.wait_ready("Service", "web-local")
    assert len(ready_endpoint_ips(lb)) == 5          # 4 web pods + kube-dns
    back_to_full(lb)
    no_stale_rules(lb, NODES)


def web_pods_on(c: ClusterHandle, node: str) -> dict[str, str]:
    """name -> pod IP of the web pods bound to `node`."""
    pods, _ = ray.get(c.api.list.remote("Pod", "default", {"app": "web"}))
    return {p["metadata"]["name"]: p["status"].get("podIP") for p in pods if p["spec"].get("nodeName") == node}


def node_ready(c: ClusterHandle, node: str) -> str:
    return next(x["status"] for x in c.get("Node", node, "")["status"]["conditions"] if x["type"] == "Ready")


def test_partition_node_goes_unknown_and_comes_back_with_the_same_pods(lb):
    node = "default-pool-b-1"
    pods = web_pods_on(lb, node)
    assert pods
    fault(lb, name="cut", action="partition", node=node)
    assert lb.cluster.down_nodes == {node}
    ips = set(pods.values())
    lb.cluster.wait_for(lambda: not (ips & ready_endpoint_ips(lb)), 30, "endpoints of the partitioned node to go")
    assert node_ready(lb, node) == "Unknown"
    back_to_full(lb)
    # the partitioned node cannot reach the API server: its kube-proxy never heard that its
    # own pods left the endpoints (the other nodes' rules dropped them)
    lb.synced()
    assert ips <= dnat_targets(lb, node)
    assert not ips & dnat_targets(lb, "default-pool-a-1")
    fault(lb, action="recover", of="cut")
    assert not lb.cluster.down_nodes
    # the kubelet lived through it: the same pods are ready endpoints again, nothing restarted
    lb.cluster.wait_for(lambda: ips <= ready_endpoint_ips(lb), 30, "the same pods to be ready again")
    assert node_ready(lb, node) == "True" and web_pods_on(lb, node) == pods
    lb.wait_ready("Service", "web-local")
    back_to_full(lb)
    no_stale_rules(lb, NODES)


def test_node_crash_endpoints_leave_and_traffic_recovers(lb):
    pods, _ = ray.get(lb.api.list.remote("Pod", "default", {"app": "web"}))
    node = sorted(p["spec"]["nodeName"] for p in pods)[0]
    on_node = {p["status"]["podIP"] for p in pods if p["spec"]["nodeName"] == node}
    fault(lb, action="crash", node=node)
    # a crashed machine keeps no conntrack entry (they would steer reused 4-tuples after the reboot)
    ct = lb.exec_in(f"node/{node}", ["conntrack", "-L"])
    assert ct["rc"] == 0 and ct["stdout"].strip() == "", ct["stdout"][:500]
    lb.cluster.wait_for(lambda: not (on_node & ready_endpoint_ips(lb)), 30, "endpoints of the crashed node to go")
    node_obj = lb.get("Node", node, "")
    assert any(c["type"] == "Ready" and c["status"] == "Unknown" for c in node_obj["status"]["conditions"])
    assert any(t["key"] == "node.kubernetes.io/unreachable" for t in node_obj["spec"]["taints"])
    up = [n for n in NODES if n != node]
    # the crashed node shared its process with the others, which kept serving and syncing
    assert {lb.cluster.agents[n].host for n in NODES} == {lb.cluster.agents[node].host}
    back_to_full(lb)
    no_stale_rules(lb, up)
    fault(lb, action="recover", node=node)
    lb.cluster.wait_for(lambda: not lb.get("Node", node, "")["spec"].get("taints"), 30, "the taint to go")
    assert node_ready(lb, node) == "True"
    lb.wait_ready("Deployment", "web")
    lb.wait_ready("Service", "web-cluster")
    back_to_full(lb)
    # Once back and ready, no request fails, the recovered node included. inet-2 made no
    # connect during the crash: inet-1's failed ones leave UNREPLIED SYN_SENT conntrack entries
    # (120 s) that a reused source port still follows to the gone endpoint, as on GKE.
    for svc in ("web-cluster", "web-local"):
        recs = lb.http_load("host/inet-2", lb_url(lb, svc), requests=150, concurrency=None, rate=50, timeout=2.0)
        assert [r["error"] for r in recs if r["outcome"] != "ok"] == [], svc
        assert node in {r["node"] for r in recs}, f"{svc}: the recovered node serves again"


def test_pod_kill_and_link_flap(lb):
    rec = fault(lb, action="pod-kill", deployment="web")
    ns, name = rec["pod"].split("/")
    lb.cluster.wait_for(lambda: lb.get("Pod", name) is None, 20, f"pod {name} to go")
    lb.wait_ready("Deployment", "web")
    lb.wait_ready("Service", "web-local")
    back_to_full(lb)
    fault(lb, action="link-flap", node="default-pool-c-1", down=0.5)
    back_to_full(lb)
    no_stale_rules(lb, NODES)


def test_node_failure_scenario_passes_and_leaves_nothing(tmp_path):
    proc, run_id = start_run(tmp_path, os.path.join(ROOT, "scenarios", "node-failure.yaml"))
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert leftovers(run_id) == []
    results = json.load(open(next(tmp_path.glob("*/results.json"))))
    avail = {s["flow"]: s for s in results["steps"] if s["step"] == "availability"}
    # Cluster: the crashed node's pod stays an endpoint until NotReady (grace 5 s): requests
    # entering other nodes time out until then; Local: only the health check's 2 x 0.5 s.
    assert avail["probe-cluster"]["figures"]["requests_lost"] > 0
    for a in avail.values():   # back at 100% success for 5 s within 12 s of the crash
        assert a["ok"] and a["figures"]["recovered"] and a["figures"]["recover_s"] <= 12.0
        # any later failure reused the source port of a connect that failed in the outage, or
        # was sent while a busy machine's late health-check answers flapped a surviving node
        f = a["figures"]
        assert f["later_failures"] == f["later_stale_conntrack"] + f["later_healthcheck_flap"], f
    ph = avail["probe-cluster"]["phases"]
    assert 5.0 <= ph["node_silent_s"] <= 6.0               # grace 5 s since the last lease, within 20%
    assert 10.0 <= ph["pods_evicted_s"] - ph["node_tainted_s"] <= 12.0   # tolerationSeconds 10 s
    assert ph["services"]["web-cluster"]["endpoints_removed_s"] == pytest.approx(ph["node_not_ready_s"], abs=0.5)
    # every phase inside the window the fast profile predicts, widened by 20% (expected_phases.py)
    rows = comparison(ph)
    assert {r[0] for r in rows} >= {"node not ready", "pods evicted", "web-cluster (Cluster) steered away",
                                    "web-local (Local) steered away"}
    assert all(ok for *_, ok in rows), rows
    assert "Against the timing profile (fast)" in open(next(tmp_path.glob("*/report.md"))).read()
