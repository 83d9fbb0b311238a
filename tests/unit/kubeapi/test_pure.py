"""Pure parts of the endpoint: selectors, patches, field sets and apply, printers, discovery, paths."""
from __future__ import annotations

import pytest

from emulator.kubeapi import discovery, fieldsets, schemas, ssa
from emulator.kubeapi.patch import json_patch, merge_patch, strategic_merge
from emulator.kubeapi.printers import format_selector, pod_status, table
from emulator.kubeapi.routes import decode_continue, encode_continue, parse_target
from emulator.kubeapi.selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from emulator.kubeapi.wire import StatusError, human_duration, rfc3339, to_wire

pytestmark = pytest.mark.unit
POD = schemas.definition("io.k8s.api.core.v1.Pod")
SVC = schemas.definition("io.k8s.api.core.v1.Service")
DEP = schemas.definition("io.k8s.api.apps.v1.Deployment")


@pytest.mark.parametrize("sel,labels,ok", [
    ("app=web", {"app": "web"}, True), ("app==web", {"app": "db"}, False),
    ("app!=web", {}, True), ("app!=web", {"app": "web"}, False),
    ("tier in (a, b)", {"tier": "b"}, True), ("tier in (a,b)", {}, False),
    ("tier notin (a,b)", {}, True), ("tier notin (a,b)", {"tier": "a"}, False),
    ("app", {"app": ""}, True), ("app", {}, False), ("!app", {}, True), ("!app", {"app": "x"}, False),
    ("app=web,!canary,env in (prod)", {"app": "web", "env": "prod"}, True),
    ("app.kubernetes.io/instance=x", {"app.kubernetes.io/instance": "x"}, True),
])
def test_label_selectors(sel, labels, ok):
    assert labels_match(parse_label_selector(sel), labels) is ok


def test_bad_selectors_are_400():
    for bad in ("app in a", "a=b=c", "tier in (a"):
        with pytest.raises(StatusError) as e:
            parse_label_selector(bad)
        assert e.value.code == 400
    with pytest.raises(StatusError):
        parse_field_selector("spec.bogus=1")


def test_field_selectors():
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    assert fields_match(parse_field_selector("metadata.name=p,spec.nodeName=n1"), pod)
    assert not fields_match(parse_field_selector("status.phase!=Running"), pod)
    assert fields_match(parse_field_selector("metadata.namespace==ns"), pod)


def test_merge_and_json_patch():
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None, "d": 3}, "l": [2]}) == \
        {"a": {"c": 2, "d": 3}, "l": [2]}
    assert json_patch({"a": [1, 2]}, [{"op": "add", "path": "/a/-", "value": 3}]) == {"a": [1, 2, 3]}
    with pytest.raises(StatusError) as e:
        json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])
    assert e.value.code == 422


def test_strategic_merge_lists_by_merge_key_and_directives():
    pod = {"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}]},
                                   {"name": "b", "image": "y"}],
                    "volumes": [{"name": "v1"}, {"name": "v2"}]},
           "metadata": {"finalizers": ["f1"]}}
    patch = {"spec": {"containers": [{"name": "a", "env": [{"name": "F", "value": "2"}]},
                                     {"name": "b", "$patch": "delete"}, {"name": "c", "image": "z"}],
                      "volumes": [{"name": "v2", "$patch": "delete"}],
                      "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]},
             "metadata": {"finalizers": ["f2"]}}
    out = strategic_merge(pod, patch, POD)
    assert [c["name"] for c in out["spec"]["containers"]] == ["c", "a"]
    assert out["spec"]["containers"][1]["env"] == [{"name": "E", "value": "1"}, {"name": "F", "value": "2"}]
    assert out["spec"]["volumes"] == [{"name": "v1"}]
    assert out["metadata"]["finalizers"] == ["f1", "f2"]       # primitive merge list: union
    # Service ports merge by port; $patch: replace replaces the list; $deleteFromPrimitiveList.
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}], "externalIPs": ["1.1.1.1"]},
           "metadata": {"finalizers": ["a", "b"]}}
    out = strategic_merge(svc, {"spec": {"ports": [{"port": 80, "name": "http"}]}}, SVC)
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443}]
    out = strategic_merge(svc, {"spec": {"ports": [{"$patch": "replace"}, {"port": 53}]}}, SVC)
    assert out["spec"]["ports"] == [{"port": 53}]
    out = strategic_merge(svc, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, SVC)
    assert out["metadata"]["finalizers"] == ["b"]
    out = strategic_merge({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
                          {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}, DEP)
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    assert strategic_merge({"spec": {"a": 1}}, {"spec": {"$patch": "replace", "b": 2}}, None) == {"spec": {"b": 2}}


def test_field_sets_round_trip_through_fields_v1():
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "labels": {"a": "b"}},
           "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "ports": [
               {"containerPort": 80, "protocol": "TCP"}]}]}}}}
    paths = fieldsets.field_set(dep, DEP)
    v1 = fieldsets.to_fields_v1(paths)
    assert v1["f:metadata"]["f:labels"] == {".": {}, "f:a": {}}
    c = v1["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"c"}']
    assert 'k:{"containerPort":80,"protocol":"TCP"}' in c["f:ports"]
    assert fieldsets.from_fields_v1(v1) == paths


def test_apply_conflicts_force_and_removal():
    base = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
            "spec": {"replicas": 2, "paused": False}}
    live = ssa.apply(None, base, "alice", False, DEP)
    live = ssa.record_update(live, {**live, "spec": {**live["spec"], "replicas": 5}}, "bob", DEP)
    with pytest.raises(StatusError) as e:
        ssa.apply(live, base, "alice", False, DEP)
    assert e.value.code == 409 and 'conflict with "bob"' in e.value.message and ".spec.replicas" in e.value.message
    same = ssa.apply(live, {**base, "spec": {"paused": False}}, "alice", False, DEP)   # alice stops applying replicas
    assert same["spec"] == {"replicas": 5, "paused": False}                          # bob still owns it
    forced = ssa.apply(live, base, "alice", True, DEP)
    assert forced["spec"]["replicas"] == 2
    assert [m["manager"] for m in forced["metadata"]["managedFields"]] == ["alice"]
    dropped = ssa.apply(forced, {**base, "spec": {"replicas": 2}}, "alice", False, DEP)
    assert "paused" not in dropped["spec"]


def test_printers_pod_status_ready_from_condition_and_service_cells():
    pod = {"metadata": {"name": "p", "creationTimestamp": rfc3339(1000)},
           "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
           "status": {"phase": "Running", "podIP": "10.0.0.5", "conditions": [{"type": "Ready", "status": "True"}]}}
    t = table("Pod", [pod], "7", now=1000 + 185)
    assert [c["name"] for c in t["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert [c["priority"] for c in t["columnDefinitions"]] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert t["rows"][0]["cells"] == ["p", "2/2", "Running", 0, "3m5s", "10.0.0.5", "n1", "<none>", "<none>"]
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert pod_status({**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "x"}}) == "Terminating"
    svc = {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.9",
                                                "ports": [{"port": 80, "nodePort": 31234, "protocol": "TCP"},
                                                          {"port": 53, "protocol": "UDP"}]}}
    assert table("Service", [svc])["rows"][0]["cells"][1:5] == ["NodePort", "10.96.0.9", "<none>",
                                                                 "80:31234/TCP,53/UDP"]
    assert format_selector({"matchLabels": {"b": "2", "a": "1"},
                            "matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["x"]}]}) == \
        "a=1,b=2,t notin (x)"


@pytest.mark.parametrize("secs,text", [(5, "5s"), (119, "119s"), (185, "3m5s"), (600, "10m"), (3 * 3600, "3h"),
                                       (3 * 3600 + 300, "3h5m"), (30 * 3600, "30h"), (50 * 3600, "2d2h"),
                                       (400 * 86400, "400d"), (3 * 365 * 86400, "3y")])
def test_human_duration(secs, text):
    assert human_duration(secs) == text


def test_discovery_documents():
    core = discovery.resource_list("", "v1")
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert pods["shortNames"] == ["po"] and pods["categories"] == ["all"] and pods["namespaced"]
    assert {"pods/status", "pods/log", "pods/exec"} <= {r["name"] for r in core["resources"]}
    apps = discovery.resource_list("apps", "v1")
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    agg = discovery.aggregated(False)
    assert agg["kind"] == "APIGroupDiscoveryList" and "apps" in [i["metadata"]["name"] for i in agg["items"]]
    assert discovery.aggregated(True)["items"][0]["metadata"]["name"] == ""


def test_paths_and_continue_tokens():
    t = parse_target("/api/v1/namespaces/ns1/pods/p/status")
    assert (t.resource.kind, t.namespace, t.name, t.sub) == ("Pod", "ns1", "p", "status")
    t = parse_target("/api/v1/namespaces/ns1")
    assert (t.resource.kind, t.namespace, t.name) == ("Namespace", None, "ns1")
    t = parse_target("/apis/apps/v1/deployments")
    assert (t.resource.kind, t.namespace, t.name) == ("Deployment", None, None)
    with pytest.raises(StatusError):
        parse_target("/api/v1/namespaces/ns1/pods/p/bogus")
    assert decode_continue(encode_continue(5, "ns/x")) == (5, "ns/x")
    with pytest.raises(StatusError):
        decode_continue("garbage")


def test_wire_form_has_rfc3339_times_and_api_version():
    out = to_wire({"kind": "Lease", "metadata": {"name": "l", "creationTimestamp": 0.0},
                   "spec": {"renewTime": 1.5}})
    assert out["apiVersion"] == "coordination.k8s.io/v1"
    assert out["metadata"]["creationTimestamp"] == "1970-01-01T00:00:00Z"
    assert out["spec"]["renewTime"] == "1970-01-01T00:00:01.500000Z"


def test_api_errors_survive_pickling_as_through_ray():
    import pickle
    from emulator.api.store import ApiError, Gone
    e = pickle.loads(pickle.dumps(ApiError(409, "Namespace /x already exists")))
    assert isinstance(e, ApiError) and e.code == 409 and str(e) == "409: Namespace /x already exists"
    g = pickle.loads(pickle.dumps(Gone(7)))
    assert isinstance(g, Gone) and g.code == 410 and g.rv == 7


def test_times_round_trip_to_the_stores_epoch_seconds():
    from emulator.kubeapi.wire import from_wire
    stored = {"kind": "Lease", "metadata": {"name": "n1", "creationTimestamp": 100.0},
              "spec": {"renewTime": 123.25, "holderIdentity": "n1"}}
    assert from_wire(to_wire(stored))["spec"]["renewTime"] == 123.25
    assert from_wire(to_wire(stored))["metadata"]["creationTimestamp"] == 100.0
    with pytest.raises(StatusError):
        from_wire({"metadata": {"deletionTimestamp": "yesterday"}})


def _pb(num: int, payload: bytes | int) -> bytes:
    """One protobuf field: length-delimited bytes or a varint."""
    def varint(n: int) -> bytes:
        out = b""
        while True:
            b, n = n & 0x7F, n >> 7
            out += bytes([b | (0x80 if n else 0)])
            if not n:
                return out
    if isinstance(payload, int):
        return varint(num << 3) + varint(payload)
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def test_protobuf_bodies_decode_to_json_objects():
    from emulator.kubeapi.protobuf import MAGIC, decode_body
    meta = _pb(1, b"web") + _pb(2, b"") + _pb(11, _pb(1, b"app") + _pb(2, b"web")) + _pb(7, 0)
    port = _pb(1, b"") + _pb(3, 80) + _pb(4, _pb(1, 1) + _pb(3, b"http")) + _pb(2, b"TCP")
    spec = _pb(1, port) + _pb(4, b"ClusterIP")
    svc = _pb(1, meta) + _pb(2, spec)
    body = MAGIC + _pb(1, _pb(1, b"v1") + _pb(2, b"Service")) + _pb(2, svc)
    assert decode_body(body) == {"apiVersion": "v1", "kind": "Service",
                                 "metadata": {"name": "web", "labels": {"app": "web"}},
                                 "spec": {"ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}],
                                          "type": "ClusterIP"}}
    with pytest.raises(StatusError):
        decode_body(b"not protobuf")


def test_workload_rules_read_like_the_api_server():
    from emulator.kubeapi.validation import problems
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
           "spec": {"selector": {"matchLabels": {"app": "x"}},
                    "template": {"metadata": {"labels": {"app": "y"}},
                                 "spec": {"containers": [{"name": "c", "image": "i"}, {"name": "c", "image": "i"}]}}}}
    _, causes = problems(dep)
    assert [f"{c['field']}: {c['message']}" for c in causes] == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"y"}: '
        "`selector` does not match template `labels`",
        'spec.template.spec.containers[1].name: Duplicate value: "c"']
