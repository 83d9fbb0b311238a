"""Events: the pure builder, aggregation by key, and which controller writes produce which events."""
from __future__ import annotations

import pytest

from emulator.control.action_events import lifecycle_events, workload_events
from emulator.control.events import EventRecorder, bump, event_key, expired, make_event, rfc3339
from emulator.control.workloads import Action

pytestmark = pytest.mark.unit

POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "web-abc-x1", "namespace": "shop", "uid": "u-1", "resourceVersion": 7,
                    "ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc", "uid": "rs-1",
                                         "apiVersion": "apps/v1"}]},
       "spec": {"nodeName": "node-a"}}


def test_make_event_is_a_core_v1_event_in_the_objects_namespace():
    ev = make_event(POD, "Scheduled", "Successfully assigned shop/web-abc-x1 to node-a",
                    component="default-scheduler", now=1_800_000_000.0)
    assert ev["apiVersion"] == "v1" and ev["kind"] == "Event"
    assert ev["metadata"]["namespace"] == "shop" and ev["metadata"]["name"].startswith("web-abc-x1.")
    assert ev["involvedObject"] == {"kind": "Pod", "apiVersion": "v1", "name": "web-abc-x1", "namespace": "shop",
                                    "uid": "u-1", "resourceVersion": "7"}
    assert ev["type"] == "Normal" and ev["count"] == 1
    assert ev["source"] == {"component": "default-scheduler"} and ev["reportingComponent"] == "default-scheduler"
    assert ev["firstTimestamp"] == ev["lastTimestamp"] == rfc3339(1_800_000_000.0) == "2027-01-15T08:00:00Z"


def test_node_events_live_in_default_and_bad_type_is_refused():
    node = {"kind": "Node", "metadata": {"name": "n1", "uid": "n"}}
    ev = make_event(node, "NodeNotReady", "Node n1 status is now: NodeNotReady", "Normal", "node-controller")
    assert ev["metadata"]["namespace"] == "default" and "namespace" not in ev["involvedObject"]
    with pytest.raises(ValueError):
        make_event(node, "X", "y", "Error")


def test_bump_keeps_the_first_time_and_name():
    ev = make_event(POD, "Killing", "Stopping container c", now=100.0)
    again = bump(ev, 160.0)
    assert again["count"] == 2 and again["firstTimestamp"] == ev["firstTimestamp"]
    assert again["lastTimestamp"] == rfc3339(160.0) and again["metadata"]["name"] == ev["metadata"]["name"]
    assert event_key(again) == event_key(ev)
    assert event_key(make_event(POD, "Killing", "Stopping container d")) != event_key(ev)


class _Method:
    def __init__(self, sink: list, fail: bool = False) -> None:
        self.sink, self.fail = sink, fail

    def remote(self, obj):
        if self.fail:
            raise ConnectionError("cut off")
        self.sink.append(obj)
        return object()


class _Api:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[dict] = []
        self.apply = _Method(self.sent, fail)


def test_recorder_aggregates_repeats_into_one_event_with_a_count():
    api = _Api()
    rec = EventRecorder(api, "kubelet", "node-a")
    for _ in range(3):
        rec.record(POD, "Started", "Started container c")
    rec.record(POD, "Killing", "Stopping container c")
    names = {e["metadata"]["name"] for e in api.sent[:3]}
    assert len(names) == 1 and [e["count"] for e in api.sent[:3]] == [1, 2, 3]
    assert api.sent[3]["reason"] == "Killing" and api.sent[3]["source"] == {"component": "kubelet", "host": "node-a"}


def test_recorder_never_raises_and_counts_what_it_dropped():
    rec = EventRecorder(_Api(fail=True), "kubelet")
    rec.record(POD, "Started", "Started container c")
    assert rec.dropped == 1 and rec.sent == 0


def test_recorder_forgets_old_keys_beyond_its_bound():
    api = _Api()
    rec = EventRecorder(api, "kubelet", max_keys=2)
    for msg in ("a", "b", "c", "a"):
        rec.record(POD, "Started", msg)
    assert api.sent[-1]["count"] == 1     # "a" was forgotten: a new event


def test_controller_writes_become_the_events_kubectl_shows():
    dep = {"kind": "Deployment", "metadata": {"name": "web", "namespace": "shop", "uid": "d-1"}}
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": "web-abc", "namespace": "shop",
                       "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "d-1",
                                            "apiVersion": "apps/v1"}]},
          "spec": {"replicas": 6}}
    scaled = {**rs, "spec": {"replicas": 2}}
    cache = {("ReplicaSet", "shop", "web-abc"): rs, ("Deployment", "shop", "web"): dep}
    out = workload_events([Action("create", rs), Action("create", POD), Action("bind", POD),
                           Action("terminate", POD)], lambda k, n, m: None)
    assert [(e.component, e.involved["kind"], e.reason, e.message) for e in out] == [
        ("deployment-controller", "Deployment", "ScalingReplicaSet", "Scaled up replica set web-abc to 6 from 0"),
        ("replicaset-controller", "ReplicaSet", "SuccessfulCreate", "Created pod: web-abc-x1"),
        ("default-scheduler", "Pod", "Scheduled", "Successfully assigned shop/web-abc-x1 to node-a"),
        ("replicaset-controller", "ReplicaSet", "SuccessfulDelete", "Deleted pod: web-abc-x1")]
    down = workload_events([Action("update", scaled)], lambda k, n, m: cache.get((k, n, m)))
    assert [e.message for e in down] == ["Scaled down replica set web-abc to 2 from 6"]
    assert workload_events([Action("update", rs)], lambda k, n, m: cache.get((k, n, m))) == []


def test_node_lifecycle_records_become_node_not_ready_and_eviction_events():
    records = [{"t": 1.0, "node": "n1", "event": "node_not_ready", "silent_s": 3.0},
               {"t": 1.0, "node": "n1", "event": "node_tainted"}]
    out = lifecycle_events(records, [Action("terminate", POD), Action("update", {"kind": "Node"})],
                           lambda k, n, m: None)
    assert [(e.involved["kind"], e.reason, e.message) for e in out] == [
        ("Node", "NodeNotReady", "Node n1 status is now: NodeNotReady"),
        ("Pod", "TaintManagerEviction", "Marking for deletion Pod shop/web-abc-x1")]


def test_events_expire_an_hour_after_they_were_last_seen():
    old = bump(make_event(POD, "Started", "a", now=1000.0), 2000.0)
    fresh = make_event(POD, "Started", "b", now=5000.0)
    assert expired([old, fresh, {"lastTimestamp": None}], now=2000.0 + 3601) == [old]
    assert expired([old, fresh], now=2000.0 + 3599) == []
