"""API store (resourceVersion, watch log), IPAM and Service admission."""
import pytest

from emulator.api.admission import ServiceAdmission
from emulator.api.ipam import IpAllocator, PortAllocator, plan_cluster_addresses
from emulator.api.store import ApiError, Gone, ObjectStore

pytestmark = pytest.mark.unit


def svc(name, **spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


def test_store_versions_and_events():
    s = ObjectStore()
    a = s.create({"kind": "Pod", "metadata": {"name": "a"}, "spec": {}})
    assert a["metadata"]["namespace"] == "default" and a["metadata"]["resourceVersion"] == "1"
    with pytest.raises(ApiError) as e:
        s.create({"kind": "Pod", "metadata": {"name": "a"}})
    assert e.value.code == 409
    s.patch("Pod", "default", "a", lambda o: o.setdefault("status", {}).update(phase="Running"))
    s.delete("Pod", "default", "a")
    ev = s.events_since(0)
    assert [e.type for e in ev] == ["ADDED", "MODIFIED", "DELETED"]
    assert s.events_since(2)[0].type == "DELETED"
    assert s.events_since(0, ["Service"]) == []


def test_store_last_event_rv_counts_deletions():
    s = ObjectStore()
    s.create({"kind": "Service", "metadata": {"name": "a"}})
    s.create({"kind": "Pod", "metadata": {"name": "p"}})
    assert s.last_event_rv(["Service"]) == 1
    s.delete("Service", "default", "a")
    s.create({"kind": "Pod", "metadata": {"name": "q"}})
    assert s.last_event_rv(["Service", "EndpointSlice"]) == 3
    assert s.last_event_rv(["Node"]) == 0


def test_store_unchanged_update_makes_no_event():
    s = ObjectStore()
    a = s.create({"kind": "Node", "metadata": {"name": "n"}, "spec": {"x": 1}})
    s.update(a)
    assert len(s.events_since(0)) == 1


def test_store_gone_when_log_is_short():
    s = ObjectStore(log_size=2)
    for i in range(5):
        s.create({"kind": "Node", "metadata": {"name": f"n{i}"}})
    with pytest.raises(Gone):
        s.events_since(1)
    assert len(s.events_since(3)) == 2


def test_plan_addresses_flexible_ranges():
    nodes, vms = plan_cluster_addresses("10.128.0.0/20", "10.4.0.0/14", [("a", 24), ("b", 26), ("c", 24)], ["vm"])
    assert [(n.ip, n.pod_cidr) for n in nodes] == [("10.128.0.2", "10.4.0.0/24"), ("10.128.0.3", "10.4.1.0/26"),
                                                  ("10.128.0.4", "10.4.2.0/24")]
    assert vms == {"vm": "10.128.0.5"}


def test_ip_allocator_requests_and_exhaustion():
    a = IpAllocator("10.8.0.0/29")
    assert a.allocate("10.8.0.5") == "10.8.0.5"
    with pytest.raises(ApiError):
        a.allocate("10.8.0.5")
    with pytest.raises(ApiError):
        a.allocate("10.9.0.1")
    got = {a.allocate() for _ in range(4)}
    assert got == {"10.8.0.2", "10.8.0.3", "10.8.0.4", "10.8.0.6"}
    with pytest.raises(ApiError):
        a.allocate()


def test_port_allocator_range():
    p = PortAllocator(30000, 30001)
    assert {p.allocate(), p.allocate()} == {30000, 30001}
    with pytest.raises(ApiError):
        p.allocate()


def test_admission_allocates_and_keeps():
    adm = ServiceAdmission("10.8.0.0/20")
    s = adm.admit(svc("web", type="LoadBalancer", externalTrafficPolicy="Local"), None)
    ip, np, hc = s["spec"]["clusterIP"], s["spec"]["ports"][0]["nodePort"], s["spec"]["healthCheckNodePort"]
    assert ip.startswith("10.8.") and 30000 <= np <= 32767 and hc != np
    assert s["spec"]["ports"][0]["protocol"] == "TCP" and s["spec"]["ports"][0]["targetPort"] == 80
    again = adm.admit(svc("web", type="LoadBalancer", externalTrafficPolicy="Cluster"), s)
    assert again["spec"]["clusterIP"] == ip and again["spec"]["ports"][0]["nodePort"] == np
    assert "healthCheckNodePort" not in again["spec"]
    c = adm.admit(svc("plain"), None)
    assert "nodePort" not in c["spec"]["ports"][0] and c["spec"]["clusterIP"] != ip
    adm.release(again)
    assert adm.admit(svc("x", clusterIP=ip), None)["spec"]["clusterIP"] == ip
