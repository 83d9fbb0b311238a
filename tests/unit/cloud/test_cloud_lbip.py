"""Load balancer IP allocation: external, explicit, internal, stable, released, exhausted."""
import pytest

from cloud_helpers import EXTERNAL, INTERNAL, SUBNET, service
from emulator.cloud.lbip import LbIpAllocator, LbIpError, desired_status, is_load_balancer, lb_scheme

pytestmark = pytest.mark.unit
HOSTS = {"10.128.0.2", "10.128.0.3", "10.128.15.253"}


def alloc(external=EXTERNAL, subnet=SUBNET):
    return LbIpAllocator(external, subnet)


def test_scheme_from_annotations_and_class():
    assert lb_scheme(service("a")) == "external"
    assert lb_scheme(service("a", annotations=INTERNAL)) == "internal"
    assert lb_scheme(service("a", annotations={"cloud.google.com/load-balancer-type": "Internal"})) == "internal"
    assert lb_scheme(service("a", annotations={"networking.gke.io/load-balancer-type": "internal"})) == "internal"
    assert lb_scheme(service("a", annotations={"networking.gke.io/load-balancer-type": "External"})) == "external"
    svc = service("a")
    svc["spec"]["loadBalancerClass"] = "networking.gke.io/l4-regional-internal"
    assert lb_scheme(svc) == "internal" and is_load_balancer(svc)
    svc["spec"]["loadBalancerClass"] = "example.com/other"
    assert not is_load_balancer(svc)
    assert not is_load_balancer(service("a", typ="NodePort"))


def test_external_next_free_and_explicit():
    a = alloc()
    res = a.sync([service("web", created=1), service("api", created=2),
                  service("static", lb_ip="203.0.113.10", created=3)])
    assert res.errors == {}
    assert res.ingress["default/static"] == [{"ip": "203.0.113.10"}]   # honoured
    assert res.ingress["default/web"] == [{"ip": "203.0.113.1"}]       # oldest first
    assert res.ingress["default/api"] == [{"ip": "203.0.113.2"}]


def test_requested_ip_taken_or_outside_is_an_error_and_pending():
    a = alloc()
    a.sync([service("web", lb_ip="203.0.113.10")])
    res = a.sync([service("web", lb_ip="203.0.113.10"), service("copy", lb_ip="203.0.113.10"),
                  service("far", lb_ip="192.0.2.1"), service("bad", lb_ip="nope")])
    assert res.ingress["default/web"] == [{"ip": "203.0.113.10"}]
    assert res.ingress["default/copy"] == [] and "already used by the load balancer of default/web" in res.errors["default/copy"]
    assert res.ingress["default/far"] == [] and "not in the external range" in res.errors["default/far"]
    assert "not an IPv4 address" in res.errors["default/bad"]


def test_internal_from_subnet_avoiding_hosts_and_reserved():
    a = alloc()
    res = a.sync([service("ilb", annotations=INTERNAL), service("ilb2", annotations=INTERNAL, created=1)], HOSTS)
    # From the top of 10.128.0.0/20: .15.255 broadcast and .15.254 are GCP-reserved, .15.253 a host.
    assert res.ingress["default/ilb"] == [{"ip": "10.128.15.252"}]
    assert res.ingress["default/ilb2"] == [{"ip": "10.128.15.251"}]
    res = a.sync([service("x", annotations=INTERNAL, lb_ip="10.128.0.2")], HOSTS)
    assert "used by a node or VM" in res.errors["default/x"]
    res = a.sync([service("y", annotations=INTERNAL, lb_ip="10.128.0.1")], HOSTS)
    assert "reserved" in res.errors["default/y"]
    res = a.sync([service("z", annotations=INTERNAL, lb_ip="203.0.113.5")], HOSTS)
    assert "not in the VPC subnet" in res.errors["default/z"]
    res = a.sync([service("w", annotations=INTERNAL, lb_ip="10.128.3.3")], HOSTS)
    assert res.ingress["default/w"] == [{"ip": "10.128.3.3"}]


def test_stable_for_the_service_life_then_released():
    a = alloc()
    web = service("web")
    assert a.sync([web]).ingress["default/web"] == [{"ip": "203.0.113.1"}]
    other = service("other")
    for _ in range(3):   # repeated passes keep the address
        res = a.sync([web, other])
        assert res.ingress["default/web"] == [{"ip": "203.0.113.1"}]
    assert res.ingress["default/other"] == [{"ip": "203.0.113.2"}]
    # Deleted: released.
    res = a.sync([other])
    assert [r.ip for r in res.released] == ["203.0.113.1"] and "default/web" not in res.ingress
    # Type change to ClusterIP releases; no ingress for it.
    res = a.sync([service("other", typ="ClusterIP")])
    assert [r.ip for r in res.released] == ["203.0.113.2"] and res.ingress == {}
    assert a.assigned == {}


def test_scheme_change_uid_change_and_new_request_reallocate():
    a = alloc()
    a.sync([service("web")], HOSTS)
    res = a.sync([service("web", annotations=INTERNAL)], HOSTS)
    assert res.ingress["default/web"] == [{"ip": "10.128.15.252"}] and res.released[0].ip == "203.0.113.1"
    res = a.sync([service("web", annotations=INTERNAL, uid="new-uid")], HOSTS)   # recreated
    assert len(res.released) == 1
    res = a.sync([service("web", uid="new-uid", lb_ip="203.0.113.50")], HOSTS)
    assert res.ingress["default/web"] == [{"ip": "203.0.113.50"}]
    # Dropping loadBalancerIP keeps the address (GKE keeps the forwarding rule's IP).
    res = a.sync([service("web", uid="new-uid")], HOSTS)
    assert res.ingress["default/web"] == [{"ip": "203.0.113.50"}] and not res.released


def test_exhaustion():
    a = alloc(external="203.0.113.0/30")   # .1 and .2 usable
    res = a.sync([service("a", created=1), service("b", created=2), service("c", created=3)])
    assert res.ingress["default/a"] == [{"ip": "203.0.113.1"}]
    assert res.ingress["default/b"] == [{"ip": "203.0.113.2"}]
    assert res.ingress["default/c"] == [] and "no free external" in res.errors["default/c"]
    with pytest.raises(LbIpError):
        a.allocate("default/d", "u", "external", None)
    # Freeing one lets the pending Service through on the next pass.
    res = a.sync([service("b", created=2), service("c", created=3)])
    assert res.ingress["default/c"] == [{"ip": "203.0.113.1"}] and res.errors == {}


def test_restart_adopts_status_before_allocating():
    fresh = alloc()
    # A new Service sorts first, but the existing ones keep the addresses in their status.
    svcs = [service("new", created=0), service("old1", status_ip="203.0.113.1", created=5),
            service("old2", status_ip="10.128.15.252", annotations=INTERNAL, created=6)]
    res = fresh.sync(svcs, HOSTS)
    assert res.ingress["default/old1"] == [{"ip": "203.0.113.1"}]
    assert res.ingress["default/old2"] == [{"ip": "10.128.15.252"}]
    assert res.ingress["default/new"] == [{"ip": "203.0.113.2"}]
    # A status address of the wrong scheme is not adopted.
    res = alloc().sync([service("moved", status_ip="203.0.113.7", annotations=INTERNAL)], HOSTS)
    assert res.ingress["default/moved"] == [{"ip": "10.128.15.252"}]


def test_desired_status_patch():
    svc = service("web")
    assert desired_status(svc, [{"ip": "203.0.113.1"}]) == {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}
    svc = service("web", status_ip="203.0.113.1")
    assert desired_status(svc, [{"ip": "203.0.113.1"}]) is None
    assert desired_status(svc, None) == {"loadBalancer": {}}
    assert desired_status(service("plain", typ="ClusterIP"), None) is None
