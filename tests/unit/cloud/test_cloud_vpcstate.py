"""Desired VPC state: endpoints and tags, load balancers with healthy backends, firewall rules."""
import pytest

from cloud_helpers import INTERNAL, POD_RANGE, SUBNET, TIMING, facts, hosts, node, nodes, service
from emulator.cloud import names
from emulator.cloud.healthcheck import HealthState, check_for_service
from emulator.cloud.vpcstate import desired_vpc_state, node_ips, normalize_rule, port_ranges
from emulator.errors import ConfigError

pytestmark = pytest.mark.unit
TAG = names.node_tag("demo")
CID = names.cluster_id("demo")
HC_LEGACY = ["35.191.0.0/16", "130.211.0.0/22", "209.85.152.0/22", "209.85.204.0/22"]
USER_RULE = {"name": "deny-node-egress", "direction": "egress", "action": "deny", "priority": 900,
             "source_ranges": [], "destination_ranges": [SUBNET], "target_tags": ["web"],
             "protocols": [{"protocol": "tcp", "ports": ["30000-32767"]}]}


def cluster_and_local():
    web = service("web", uid="1111-2222", status_ip="203.0.113.1", ports=((80, "TCP"), (443, "TCP")))
    loc = service("loc", uid="3333-4444", policy="Local", hc_port=31500, status_ip="203.0.113.2",
                  source_ranges=["198.51.100.0/28"])
    pending = service("pending", uid="5555")            # no address yet: no LB, no rules
    plain = service("plain", typ="ClusterIP")
    health = HealthState()
    health.set_check("default/web", check_for_service(web, TIMING), ["pool-a-1", "pool-b-1", "pool-c-1"])
    health.set_check("default/loc", check_for_service(loc, TIMING), ["pool-a-1", "pool-b-1", "pool-c-1"])
    for n in ("pool-a-1", "pool-b-1", "pool-c-1"):
        health.record("default/web", n, True, 1.0)
    health.record("default/loc", "pool-b-1", True, 1.0)   # only pool-b-1 has a ready pod
    health.record("default/loc", "pool-a-1", False, 1.0)
    return [web, loc, pending, plain], health


def build(services, health, rules=(), **kw):
    f = facts()
    return desired_vpc_state(hosts(), {}, nodes(), services, health, rules, [SUBNET, POD_RANGE],
                             cluster_name="demo", gateways=f.gateways, **kw)


def test_endpoints_kinds_tags_routes():
    services, health = cluster_and_local()
    state = build(services, health)
    assert state["gateways"] == ["10.128.0.1", "198.51.100.1"]
    assert state["vpc_ranges"] == [SUBNET, POD_RANGE]
    eps = {e["name"]: e for e in state["endpoints"]}
    assert eps["pool-a-1"] == {"name": "pool-a-1", "ip": "10.128.0.2", "mac": "02:00:00:00:00:01",
                               "port_name": "kubemuabcdp0", "dpid": 1, "routes": ["10.4.0.0/24"],
                               "gateway": "10.128.0.1", "kind": "node", "tags": [TAG, "web"]}
    assert TAG == "gke-demo-46946973-node"
    assert (eps["vm-1"]["kind"], eps["vm-1"]["routes"], eps["vm-1"]["tags"]) == ("vm", [], [])
    assert eps["inet-1"]["kind"] == "internet" and eps["prober"]["kind"] == "prober"
    assert [e["name"] for e in state["endpoints"]] == [h.name for h in hosts()]   # plan order


def test_load_balancers_cluster_all_healthy_local_only_ready_nodes():
    services, health = cluster_and_local()
    lbs = build(services, health)["load_balancers"]
    every = ["pool-a-1", "pool-b-1", "pool-c-1"]
    assert lbs == [
        {"name": "default/loc", "ip": "203.0.113.2", "protocol": "TCP", "ports": [80], "scheme": "external",
         "backends": ["pool-b-1"], "all_backends": every},
        {"name": "default/web", "ip": "203.0.113.1", "protocol": "TCP", "ports": [80, 443],
         "scheme": "external", "backends": every, "all_backends": every}]


def test_firewall_rules_exactly():
    services, health = cluster_and_local()
    fw = build(services, health, [USER_RULE])["firewall"]
    prefix = f"gke-demo-{names.cluster_hash('demo')}"
    lb_web, lb_loc = names.lb_name(services[0]), names.lb_name(services[1])
    assert lb_web == "a11112222" and lb_loc == "a33334444"
    assert [r["name"] for r in fw] == [
        f"{prefix}-all", f"{prefix}-vms", "default-allow-internal",
        "k8s-fw-a33334444", "k8s-a33334444-http-hc",
        "k8s-fw-a11112222", f"k8s-{CID}-node-http-hc",
        "deny-node-egress", "implied-deny-ingress", "implied-allow-egress"]
    by = {r["name"]: r for r in fw}
    assert by[f"{prefix}-all"] == {
        "name": f"{prefix}-all", "direction": "ingress", "action": "allow", "priority": 1000,
        "source_ranges": [POD_RANGE], "destination_ranges": [], "target_tags": [TAG],
        "protocols": [{"protocol": "all", "ports": []}]}
    assert by[f"{prefix}-vms"]["source_ranges"] == [SUBNET]
    assert by[f"{prefix}-vms"]["protocols"] == [{"protocol": "tcp", "ports": ["1-65535"]},
                                                 {"protocol": "udp", "ports": ["1-65535"]},
                                                 {"protocol": "icmp", "ports": []}]
    internal = by["default-allow-internal"]
    assert (internal["priority"], internal["source_ranges"], internal["target_tags"]) == \
        (65534, [SUBNET, POD_RANGE], [])
    assert by["k8s-fw-a11112222"] == {
        "name": "k8s-fw-a11112222", "direction": "ingress", "action": "allow", "priority": 1000,
        "source_ranges": ["0.0.0.0/0"], "destination_ranges": ["203.0.113.1"], "target_tags": [TAG],
        "protocols": [{"protocol": "tcp", "ports": ["80", "443"]}]}
    # loadBalancerSourceRanges go into the k8s-fw rule, as GKE's cloud provider does.
    assert by["k8s-fw-a33334444"]["source_ranges"] == ["198.51.100.0/28"]
    assert by["k8s-fw-a33334444"]["destination_ranges"] == ["203.0.113.2"]
    assert by[f"k8s-{CID}-node-http-hc"] == {
        "name": f"k8s-{CID}-node-http-hc", "direction": "ingress", "action": "allow", "priority": 1000,
        "source_ranges": HC_LEGACY, "destination_ranges": [], "target_tags": [TAG],
        "protocols": [{"protocol": "tcp", "ports": ["10256"]}]}
    assert by["k8s-a33334444-http-hc"]["protocols"] == [{"protocol": "tcp", "ports": ["31500"]}]
    assert by["deny-node-egress"] == {**USER_RULE, "source_ranges": []}
    assert by["implied-deny-ingress"]["action"] == "deny" and by["implied-deny-ingress"]["priority"] == 65535
    assert by["implied-allow-egress"]["direction"] == "egress"


def test_source_ranges_option_and_annotation():
    services, health = cluster_and_local()
    fw = {r["name"]: r for r in build(services, health, source_ranges_in_firewall=False)["firewall"]}
    assert fw["k8s-fw-a33334444"]["source_ranges"] == ["0.0.0.0/0"]
    svc = service("ann", uid="77", status_ip="203.0.113.3",
                  annotations={"service.beta.kubernetes.io/load-balancer-source-ranges": "10.0.0.0/8, 192.0.2.1/32"})
    fw = {r["name"]: r for r in build([svc], None)["firewall"]}
    assert fw["k8s-fw-a77"]["source_ranges"] == ["10.0.0.0/8", "192.0.2.1/32"]


def test_internal_lb_udp_mixed_and_shared_rules():
    ilb = service("ilb", uid="88", annotations=INTERNAL, status_ip="10.128.15.252", ports=((53, "UDP"), (53, "TCP")))
    web2 = service("web2", uid="99", status_ip="203.0.113.9")
    web3 = service("web3", uid="98", status_ip="203.0.113.8", ports=((8080, "TCP"), (8081, "TCP"), (9000, "TCP")))
    state = build([ilb, web2, web3], None)
    lbs = {lb["name"]: lb for lb in state["load_balancers"]}
    assert lbs["default/ilb/tcp"]["scheme"] == "internal" and lbs["default/ilb/udp"]["protocol"] == "UDP"
    assert lbs["default/ilb/udp"]["ip"] == "10.128.15.252"
    # No health checking: every node that a load balancer targets is a backend.
    assert lbs["default/web2"]["backends"] == ["pool-a-1", "pool-b-1", "pool-c-1"]
    fw = {r["name"]: r for r in state["firewall"]}
    assert fw["k8s-fw-a88"]["protocols"] == [{"protocol": "tcp", "ports": ["53"]}, {"protocol": "udp", "ports": ["53"]}]
    assert fw[f"k8s-{CID}-node-hc"]["source_ranges"] == ["35.191.0.0/16", "130.211.0.0/22"]
    assert fw["k8s-fw-a98"]["protocols"] == [{"protocol": "tcp", "ports": ["8080-8081", "9000"]}]
    # The shared Cluster-policy health check rule exists once.
    assert [r["name"] for r in state["firewall"]].count(f"k8s-{CID}-node-http-hc") == 1


def test_no_healthy_node_and_excluded_nodes():
    services, health = cluster_and_local()
    health.record("default/loc", "pool-b-1", False, 2.0)
    health.record("default/loc", "pool-b-1", False, 3.0)      # no healthy node left
    lbs = {lb["name"]: lb for lb in build(services, health)["load_balancers"]}
    # Empty backends; all_backends is what the SDN falls back to (GCP's last resort).
    assert lbs["default/loc"]["backends"] == []
    assert lbs["default/loc"]["all_backends"] == ["pool-a-1", "pool-b-1", "pool-c-1"]
    excluded = node("x", "10.128.0.9", **{"node.kubernetes.io/exclude-from-external-load-balancers": ""})
    assert node_ips(nodes() + [excluded]) == {"pool-a-1": "10.128.0.2", "pool-b-1": "10.128.0.3",
                                              "pool-c-1": "10.128.0.4"}
    f = facts()
    state = desired_vpc_state(hosts(), {}, nodes()[:2] + [excluded], services, health, [], [SUBNET, POD_RANGE],
                              cluster_name="demo", gateways=f.gateways)
    lbs = {lb["name"]: lb for lb in state["load_balancers"]}
    assert lbs["default/web"]["all_backends"] == ["pool-a-1", "pool-b-1"]
    assert lbs["default/web"]["backends"] == ["pool-a-1", "pool-b-1"]   # a Node gone: out at once


def test_user_rules_normalized_and_clashes_rejected():
    r = normalize_rule({"name": "allow-web", "action": "allow", "protocols": [{"protocol": "tcp", "ports": [80]}]})
    assert r["direction"] == "ingress" and r["source_ranges"] == ["0.0.0.0/0"] and r["priority"] == 1000
    assert r["protocols"] == [{"protocol": "tcp", "ports": ["80"]}]
    with pytest.raises(ConfigError):
        normalize_rule({"name": "x", "protocols": [{"protocol": "gre"}]})
    with pytest.raises(ConfigError, match="used twice"):
        build([], None, [{"name": "default-allow-internal", "action": "deny"}])
    assert port_ranges([80, 81, 82, 443, 8080]) == ["80-82", "443", "8080"]


def test_extra_keys_and_missing_mac():
    state = build([], None, extra={"router_mac": "42:01:0a:80:00:01"})
    assert state["router_mac"] == "42:01:0a:80:00:01" and state["load_balancers"] == []
    bad = hosts()
    bad[0] = bad[0].model_copy(update={"mac": None})
    with pytest.raises(ConfigError, match="no MAC"):
        desired_vpc_state(bad, {}, [], [], None, [], [SUBNET, POD_RANGE], cluster_name="demo", gateways=[])
