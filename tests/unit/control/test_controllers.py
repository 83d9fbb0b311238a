"""Scheduler, Deployment/ReplicaSet and EndpointSlice controllers' pure cores."""
import pytest

from emulator.control import endpointslices as eps
from emulator.control import workloads
from emulator.control.scheduler import choose_node

pytestmark = pytest.mark.unit


def node(name, zone, ready=True, **labels):
    return {"kind": "Node", "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone, **labels}},
            "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pod(name, node=None, owner="u1", ip=None, ready=False, labels=None, term=False, ports=None):
    meta = {"name": name, "namespace": "default", "labels": labels or {"app": "web"}, "uid": name,
            "ownerReferences": [{"uid": owner}], "creationTimestamp": 0}
    if term:
        meta["deletionTimestamp"] = 1
    return {"kind": "Pod", "metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]},
            "status": {"podIP": ip, "phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_scheduler_spreads_over_zones_then_nodes():
    nodes = [node("a1", "a"), node("a2", "a"), node("b1", "b"), node("c1", "c", ready=False)]
    placed = []
    for i in range(6):
        p = pod(f"p{i}")
        n = choose_node(p, nodes, placed)
        placed.append(pod(f"p{i}", node=n))
    per = {}
    for p in placed:
        per[p["spec"]["nodeName"]] = per.get(p["spec"]["nodeName"], 0) + 1
    assert "c1" not in per                  # not ready
    assert per["b1"] == 3 and per["a1"] + per["a2"] == 3   # zones balanced
    assert abs(per["a1"] - per["a2"]) <= 1


def test_scheduler_node_selector():
    nodes = [node("a1", "a", pool="x"), node("b1", "b", pool="y")]
    p = pod("p")
    p["spec"]["nodeSelector"] = {"pool": "y"}
    assert choose_node(p, nodes, []) == "b1"
    p["spec"]["nodeSelector"] = {"pool": "z"}
    assert choose_node(p, nodes, []) is None


def deployment(replicas=3):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "d1"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}}}


def test_deployment_creates_replicaset_and_pods():
    d = deployment(3)
    acts = workloads.reconcile_deployment(d, [], [])
    assert [a.verb for a in acts] == ["create"]
    rs = acts[0].obj
    rs["metadata"]["uid"] = "rs1"
    assert rs["spec"]["replicas"] == 3 and "pod-template-hash" in rs["spec"]["selector"]["matchLabels"]
    pods = workloads.reconcile_replicaset(rs, [])
    assert len(pods) == 3 and all(a.verb == "create" for a in pods)
    assert all(a.obj["metadata"]["ownerReferences"][0]["uid"] == "rs1" for a in pods)
    # scale down: terminates the not-ready first
    live = [pod("x", node="n", owner="rs1", ready=True), pod("y", node="n", owner="rs1"),
            pod("z", node="n", owner="rs1", ready=True)]
    rs["spec"]["replicas"] = 2
    acts = workloads.reconcile_replicaset(rs, live)
    assert [(a.verb, a.obj["metadata"]["name"]) for a in acts] == [("terminate", "y")]


def test_endpointslices_conditions_and_named_ports():
    svc = {"kind": "Service", "metadata": {"name": "web", "namespace": "default", "uid": "s1"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                                            "protocol": "TCP"}]}}
    pods = [pod("a", node="n1", ip="10.4.0.2", ready=True, ports=[{"name": "http", "containerPort": 8080}]),
            pod("b", node="n2", ip="10.4.1.2", ready=False, ports=[{"name": "http", "containerPort": 8080}]),
            pod("c", node="n2", ip="10.4.1.3", ready=True, term=True, ports=[{"name": "http", "containerPort": 9090}]),
            pod("d", node="n2", ip=None, ready=True),
            pod("e", node="n2", ip="10.4.1.9", ready=True, labels={"app": "other"})]
    slices = eps.desired_slices(svc, pods)
    assert len(slices) == 2
    by_port = {s["ports"][0]["port"]: s for s in slices}
    e8080 = {e["addresses"][0]: e["conditions"] for e in by_port[8080]["endpoints"]}
    assert e8080 == {"10.4.0.2": {"ready": True, "serving": True, "terminating": False},
                     "10.4.1.2": {"ready": False, "serving": False, "terminating": False}}
    assert by_port[9090]["endpoints"][0]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert all(s["metadata"]["labels"][eps.SERVICE_NAME_LABEL] == "web" for s in slices)
    svc["spec"]["publishNotReadyAddresses"] = True
    pub = eps.desired_slices(svc, pods)
    assert all(e["conditions"]["ready"] for s in pub for e in s["endpoints"])


def test_endpointslice_for_service_without_pods_is_empty():
    svc = {"kind": "Service", "metadata": {"name": "none", "namespace": "default", "uid": "s2"},
           "spec": {"selector": {"app": "nothing"}, "ports": [{"port": 80, "protocol": "TCP"}]}}
    slices = eps.desired_slices(svc, [])
    assert len(slices) == 1 and slices[0]["endpoints"] == []
