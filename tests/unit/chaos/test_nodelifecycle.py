"""The node lifecycle controller's core: NotReady after the grace period, taint, pods not
ready, eviction after tolerationSeconds, recovery; `now` injected."""
from __future__ import annotations

import pytest

from emulator.control.nodelifecycle import UNREACHABLE, evaluate, toleration_seconds, unreachable_taint

pytestmark = pytest.mark.unit

GRACE, EVICT = 5.0, 10.0


def node(name: str, ready: str = "True", taints: list | None = None) -> dict:
    return {"kind": "Node", "metadata": {"name": name}, "spec": {"taints": taints or []},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}}


def lease(name: str, renew: float) -> dict:
    return {"kind": "Lease", "metadata": {"name": name, "namespace": "kube-node-lease"}, "spec": {"renewTime": renew}}


def pod(name: str, node_name: str, ready: str = "True", tolerations: list | None = None) -> dict:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node_name, "tolerations": tolerations or []},
            "status": {"podIP": "10.4.0.5", "conditions": [{"type": "Ready", "status": ready}]}}


def apply(nodes: list[dict], pods: list[dict], actions) -> None:
    """Play the actions on the object lists (what the API server would store)."""
    for a in actions:
        objs = nodes if a.obj["kind"] == "Node" else pods
        i = next(i for i, o in enumerate(objs) if o["metadata"]["name"] == a.obj["metadata"]["name"])
        if a.verb == "terminate":
            objs[i] = {**objs[i], "metadata": {**objs[i]["metadata"], "deletionTimestamp": 1.0}}
        elif a.verb == "status":
            objs[i] = {**objs[i], "status": a.obj["status"]}
        else:
            objs[i] = a.obj


def test_fresh_lease_changes_nothing():
    res = evaluate([node("a")], [lease("a", 100.0)], [pod("p", "a")], GRACE, EVICT, now=104.9)
    assert res.actions == [] and res.events == []


def test_silent_node_goes_unknown_tainted_and_its_pods_not_ready():
    nodes, pods = [node("a"), node("b")], [pod("p", "a"), pod("q", "b")]
    leases = [lease("a", 100.0), lease("b", 105.5)]
    res = evaluate(nodes, leases, pods, GRACE, EVICT, now=105.6)
    apply(nodes, pods, res.actions)
    assert nodes[0]["status"]["conditions"][-1]["status"] == "Unknown"
    assert unreachable_taint(nodes[0])["timeAdded"] == 105.6
    assert pods[0]["status"]["conditions"][-1] == {"type": "Ready", "status": "False", "reason": "NodeLost",
                                                   "message": "", "lastTransitionTime": 105.6}
    assert nodes[1]["status"]["conditions"][-1]["status"] == "True"
    assert pods[1]["status"]["conditions"][0]["status"] == "True"
    assert [e["event"] for e in res.events] == ["node_not_ready", "node_tainted", "pods_not_ready"]
    # a second pass changes nothing more until tolerationSeconds have passed
    assert evaluate(nodes, leases, pods, GRACE, EVICT, now=110.4).actions == []


def test_pods_are_evicted_after_toleration_seconds_unless_they_tolerate_longer():
    taint = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": 200.0}
    nodes = [node("a", "Unknown", [taint])]
    forever = [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]
    longer = [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]
    pods = [pod("p", "a", "False"), pod("keep", "a", "False", forever), pod("late", "a", "False", longer)]
    res = evaluate(nodes, [lease("a", 190.0)], pods, GRACE, EVICT, now=210.0)
    assert [(a.verb, a.obj["metadata"]["name"]) for a in res.actions] == [("terminate", "p")]
    assert toleration_seconds(pods[1], EVICT) is None and toleration_seconds(pods[2], EVICT) == 60
    assert evaluate(nodes, [lease("a", 190.0)], pods, GRACE, EVICT, now=209.9).actions == []


def test_ready_again_removes_the_taint():
    taint = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": 200.0}
    nodes = [node("a", "True", [taint, {"key": "other", "effect": "NoSchedule"}])]
    res = evaluate(nodes, [lease("a", 300.0)], [], GRACE, EVICT, now=300.5)
    apply(nodes, [], res.actions)
    assert nodes[0]["spec"]["taints"] == [{"key": "other", "effect": "NoSchedule"}]
    assert [e["event"] for e in res.events] == ["node_untainted"]


def test_node_without_a_lease_is_left_alone():
    assert evaluate([node("a")], [], [pod("p", "a")], GRACE, EVICT, now=1e9).actions == []


def test_kubelet_status_sync_posts_only_what_the_api_server_has_wrong():
    import threading
    from types import SimpleNamespace

    from emulator.node.kubelet import sync_pod_status
    posted = []
    cache = {("Pod", "default", k): pod(k, "a", ready) for k, ready in (("p", "False"), ("q", "True"), ("r", "False"))}
    for i, o in enumerate(cache.values()):
        o["metadata"]["resourceVersion"] = str(10 + i)
    kubelet = SimpleNamespace(
        pods={f"default/{k}": SimpleNamespace(key=f"default/{k}", posted_rv=rv, post_failed=False)
              for k, rv in (("p", 5), ("q", 0), ("r", 12))},
        informer=SimpleNamespace(lock=threading.Lock(), cache=cache),
        ready_of=lambda local: "True",
        post_status=lambda local: posted.append(local.key))
    sync_pod_status(kubelet)
    assert posted == ["default/p"]   # r: the cache (rv 12) is not newer than the kubelet's own post of it
    # r's last post failed: the stored version is the one before it, and the sync posts again
    kubelet.pods["default/r"].post_failed = True
    posted.clear()
    sync_pod_status(kubelet)
    assert posted == ["default/p", "default/r"]
    sync_pod_status(None)


def test_grace_runs_from_when_the_controller_saw_the_renewal():
    from emulator.control.nodelifecycle import LeaseClock
    clock, nodes, pods = LeaseClock(), [node("a")], [pod("p", "a")]
    # first seen at 100 with a renewal written at 90 (the controller just started): not silent yet
    res = evaluate(nodes, [lease("a", 90.0)], pods, GRACE, EVICT, 100.0, clock.observe([lease("a", 90.0)], 100.0))
    assert res.actions == []
    # the controller fell behind: its next pass is at 108 and only now sees the renewal of 104
    seen = clock.observe([lease("a", 104.0)], 108.0)
    assert evaluate(nodes, [lease("a", 104.0)], pods, GRACE, EVICT, 108.0, seen).actions == []
    # no renewal seen since 108: silent after the grace period, and the event tells the kubelet's silence
    seen = clock.observe([lease("a", 104.0)], 113.5)
    res = evaluate(nodes, [lease("a", 104.0)], pods, GRACE, EVICT, 113.5, seen)
    assert [e["event"] for e in res.events][:1] == ["node_not_ready"] and res.events[0]["silent_s"] == 9.5
