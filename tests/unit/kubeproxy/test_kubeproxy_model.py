"""Service and EndpointSlice dicts become typed records; trackers record only changes."""
import pytest

from emulator.kubeproxy.model import ServicePortName, categorize_endpoints, parse_endpoint_slice, parse_service
from emulator.kubeproxy.tracker import EndpointsChangeTracker, EndpointsMap, ServiceChangeTracker, ServicePortMap
from kubeproxy_helpers import NODE, endpoint, service, slice_

pytestmark = pytest.mark.unit


def test_ports_defaults_and_names():
    ports = parse_service(service("web", "10.8.0.10", ports=[
        {"name": "http", "port": 80, "targetPort": "http"},
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]))
    http = ports[ServicePortName("default", "web", "http", "TCP")]
    dns = ports[ServicePortName("default", "web", "dns", "UDP")]
    assert (http.port, http.protocol, http.target_port) == (80, "TCP", "http")
    assert (dns.port, dns.proto) == (53, "udp")
    assert http.name.string == "default/web:http"


@pytest.mark.parametrize("obj", [
    service("headless", "None"),
    service("noip", ""),
    service("ext", "10.8.0.1", type="ExternalName", externalName="example.com"),
])
def test_services_kube_proxy_ignores(obj):
    assert parse_service(obj) == {}


def test_selectorless_service_is_proxied_like_default_kubernetes():
    obj = service("kubernetes", "10.8.0.1", ports=[{"name": "https", "port": 443}])
    del obj["spec"]["selector"]
    assert len(parse_service(obj)) == 1


def test_policies_affinity_and_lb_fields():
    obj = service("lb", "10.8.0.12", type="LoadBalancer", externalTrafficPolicy="Local",
                  internalTrafficPolicy="Local", healthCheckNodePort=31999, sessionAffinity="ClientIP",
                  loadBalancerSourceRanges=["203.0.113.0/24 "],
                  ports=[{"port": 80, "nodePort": 30080}],
                  status={"loadBalancer": {"ingress": [{"ip": "34.1.1.1"}, {"ip": "34.1.1.2", "ipMode": "Proxy"},
                                                        {"hostname": "x.example"}]}})
    (sp,) = parse_service(obj).values()
    assert sp.external_policy_local and sp.internal_policy_local
    assert sp.health_check_node_port == 31999 and sp.node_port == 30080
    assert sp.affinity_seconds == 10800                     # the API default
    assert sp.lb_ips == ("34.1.1.1",)                       # ipMode Proxy is not a VIP
    assert sp.lb_source_ranges == ("203.0.113.0/24",)


def test_external_policy_local_needs_external_access():
    (sp,) = parse_service(service("c", "10.8.0.13", externalTrafficPolicy="Local")).values()
    assert not sp.external_policy_local and not sp.externally_accessible
    (sp,) = parse_service(service("c", "10.8.0.13", externalTrafficPolicy="Local",
                                  externalIPs=["192.0.2.1"])).values()
    assert sp.external_policy_local


def test_slice_conditions_and_locality():
    obj = slice_("web", [
        {"addresses": ["10.4.1.5"], "conditions": {}, "nodeName": NODE},        # nil ready: ready
        endpoint("10.4.2.7", ready=False, serving=True, terminating=True),
    ])
    (eps,) = parse_endpoint_slice(obj, NODE).values()
    assert (eps[0].ready, eps[0].serving, eps[0].is_local) == (True, True, True)
    assert (eps[1].ready, eps[1].serving, eps[1].terminating, eps[1].is_local) == (False, True, True, False)


def test_terminating_fallback_only_when_nothing_is_ready():
    (sp,) = parse_service(service("web", "10.8.0.10")).values()
    obj = slice_("web", [endpoint("10.4.2.7", ready=False, serving=True, terminating=True),
                         endpoint("10.4.2.8", ready=False, serving=False, terminating=True)])
    (eps,) = parse_endpoint_slice(obj, NODE).values()
    cluster, _, _, has_any = categorize_endpoints(eps, sp)
    assert [e.ip for e in cluster] == ["10.4.2.7"] and has_any
    obj["endpoints"].append(endpoint("10.4.2.9"))
    (eps,) = parse_endpoint_slice(obj, NODE).values()
    cluster, _, _, _ = categorize_endpoints(eps, sp)
    assert [e.ip for e in cluster] == ["10.4.2.9"]


def test_service_tracker_reports_only_real_changes():
    tracker, smap = ServiceChangeTracker(), ServicePortMap()
    tracker.update("ADDED", service("web", "10.8.0.10"))
    assert smap.update(tracker) == {("default", "web")}
    changed = service("web", "10.8.0.10")
    changed["metadata"]["annotations"] = {"x": "y"}              # no effect on rules
    tracker.update("MODIFIED", changed)
    assert smap.update(tracker) == set()
    tracker.update("DELETED", changed)
    assert smap.update(tracker) == {("default", "web")} and len(smap) == 0
    with pytest.raises(ValueError):
        tracker.update("BOOKMARK", changed)


def test_endpoints_tracker_merges_slices_and_counts_local_ips():
    tracker, emap = EndpointsChangeTracker(NODE), EndpointsMap()
    ports = [{"name": "a", "port": 8080}, {"name": "b", "port": 9090}]
    tracker.update("ADDED", slice_("web", [endpoint("10.4.1.5", NODE)], ports, name="web-1"))
    tracker.update("ADDED", slice_("web", [endpoint("10.4.2.7"), endpoint("10.4.1.5", NODE)], ports, name="web-2"))
    assert emap.update(tracker) == {("default", "web")}
    spn = ServicePortName("default", "web", "a", "TCP")
    assert [e.string for e in emap.get(spn)] == ["10.4.1.5:8080", "10.4.2.7:8080"]   # deduplicated
    assert emap.local_ready_endpoints() == {("default", "web"): 1}      # one IP, two ports: 1
    tracker.update("DELETED", slice_("web", [], ports, name="web-2"))
    assert emap.update(tracker) == {("default", "web")}
    assert [e.string for e in emap.get(spn)] == ["10.4.1.5:8080"]
    assert tracker.update("ADDED", {"metadata": {"name": "orphan"}}) is False
