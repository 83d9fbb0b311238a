"""NodePort, LoadBalancer, external IPs, traffic policies and source ranges, traced."""
import pytest

from kubeproxy_helpers import (CLIENT, LOCAL_POD, NODE, NODE_IP, REMOTE_POD, apply, endpoint, make_proxier,
                               service, slice_, tracer)

pytestmark = pytest.mark.unit
LB_IP = "34.120.0.5"
EXT_IP = "192.0.2.10"
SECOND_NODE_IP = "10.128.0.99"      # another address of this node


def lb(name="web", **spec):
    spec.setdefault("type", "LoadBalancer")
    return service(name, "10.8.0.20", ports=[{"name": "http", "port": 80, "nodePort": 30080}],
                   status={"loadBalancer": {"ingress": [{"ip": LB_IP}]}}, **spec)


def eps(*endpoints):
    return slice_("web", list(endpoints), [{"name": "http", "port": 8080, "protocol": "TCP"}])


def synced(*objs):
    proxier, runner = make_proxier()
    apply(proxier, *objs)
    assert proxier.sync().ok
    return proxier, runner


def test_nodeport_cluster_policy_masquerades_and_works_on_every_local_ip():
    _, runner = synced(service("web", "10.8.0.20", type="NodePort",
                               ports=[{"name": "http", "port": 80, "nodePort": 30080}]),
                       eps(endpoint(REMOTE_POD)))
    t = tracer(runner, [SECOND_NODE_IP])
    for ip in (NODE_IP, SECOND_NODE_IP):
        (o,) = t.trace(CLIENT, ip, 30080)
        assert (o.destination, o.masqueraded, o.source) == ("10.4.2.7:8080", True, NODE_IP)
    (o,) = t.trace(CLIENT, "10.128.0.77", 30080)          # not this node's address: untouched
    assert o.destination == "10.128.0.77:30080" and not o.packet.dnat
    assert "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS" in runner.last_restore
    assert ("-A KUBE-NODEPORTS -m comment --comment default/web:http -m tcp -p tcp --dport 30080 "
            "-j KUBE-EXT-") in runner.last_restore


def test_load_balancer_and_external_ips_enter_the_ext_chain():
    _, runner = synced(lb(externalIPs=[EXT_IP]), eps(endpoint(REMOTE_POD)))
    text = runner.last_restore
    assert '"default/web:http loadbalancer IP" -m tcp -p tcp -d 34.120.0.5 --dport 80 -j KUBE-EXT-' in text
    assert '"default/web:http external IP" -m tcp -p tcp -d 192.0.2.10 --dport 80 -j KUBE-EXT-' in text
    assert '"masquerade traffic for default/web:http external destinations" -j KUBE-MARK-MASQ' in text
    t = tracer(runner)
    for ip in (LB_IP, EXT_IP):
        (o,) = t.trace(CLIENT, ip, 80)
        assert o.destination == "10.4.2.7:8080" and o.masqueraded


def test_external_policy_local_keeps_client_ip_and_uses_local_endpoints():
    _, runner = synced(lb(externalTrafficPolicy="Local", healthCheckNodePort=32001),
                       eps(endpoint(LOCAL_POD, NODE), endpoint(REMOTE_POD)))
    t = tracer(runner)
    for ip, port in ((LB_IP, 80), (NODE_IP, 30080)):
        (o,) = t.trace(CLIENT, ip, port)
        assert (o.destination, o.masqueraded, o.source) == ("10.4.1.5:8080", False, CLIENT)
    # Pods short-circuit to every endpoint; the node itself too, masqueraded.
    assert set(t.destinations("10.4.1.9", LB_IP, 80)) == {"10.4.1.5:8080", "10.4.2.7:8080"}
    assert all(o.masqueraded for o in t.trace(NODE_IP, LB_IP, 80, local=True))
    assert ('-A KUBE-NODEPORTS -m comment --comment "default/web:http health check node port" '
            '-m tcp -p tcp --dport 32001 -j ACCEPT') in runner.last_restore


def test_external_policy_local_without_local_endpoint_drops_external_clients():
    _, runner = synced(lb(externalTrafficPolicy="Local"), eps(endpoint(REMOTE_POD)))
    text = runner.last_restore
    assert ('-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/web:http has no local endpoints" '
            '-m tcp -p tcp -d 34.120.0.5 --dport 80 -j DROP') in text
    assert ('-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/web:http has no local endpoints" '
            '-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j DROP') in text
    t = tracer(runner)
    (o,) = t.trace(CLIENT, NODE_IP, 30080)
    assert o.verdict == "DROP"
    (o,) = t.trace(CLIENT, LB_IP, 80)
    assert o.verdict == "DROP"
    # A pod of this node still reaches the remote endpoint through the short-circuit.
    assert t.destinations("10.4.1.9", LB_IP, 80) == {"10.4.2.7:8080": 1.0}
    # The ClusterIP still works (internalTrafficPolicy is Cluster).
    assert t.destinations("10.4.1.9", "10.8.0.20", 80) == {"10.4.2.7:8080": 1.0}


def test_external_addresses_of_a_service_without_endpoints_are_rejected():
    _, runner = synced(lb(externalIPs=[EXT_IP]))
    t = tracer(runner)
    for dst, port in ((LB_IP, 80), (EXT_IP, 80), (NODE_IP, 30080), ("10.8.0.20", 80)):
        (o,) = t.trace(CLIENT, dst, port)
        assert o.verdict == "REJECT", (dst, port)
    assert "KUBE-EXT-" not in runner.last_restore


def test_source_ranges_let_listed_clients_in_and_drop_others_in_the_firewall_chain():
    _, runner = synced(lb(loadBalancerSourceRanges=["203.0.113.0/24"]), eps(endpoint(REMOTE_POD)))
    text = runner.last_restore
    assert '"default/web:http loadbalancer IP" -m tcp -p tcp -d 34.120.0.5 --dport 80 -j KUBE-FW-' in text
    assert '"other traffic to default/web:http will be dropped by KUBE-PROXY-FIREWALL"' in text
    assert '-A KUBE-PROXY-FIREWALL -m comment --comment "default/web:http traffic not accepted by KUBE-FW-' in text
    t = tracer(runner)
    (o,) = t.trace(CLIENT, LB_IP, 80)                    # 203.0.113.9: listed
    assert o.verdict == "ACCEPT" and o.destination == "10.4.2.7:8080"
    (o,) = t.trace("198.51.100.1", LB_IP, 80)            # not listed: left un-DNATed, then dropped
    assert o.verdict == "DROP" and not o.packet.dnat
    (o,) = t.trace("198.51.100.1", NODE_IP, 30080)       # NodePorts ignore source ranges
    assert o.verdict == "ACCEPT" and o.destination == "10.4.2.7:8080"


def test_source_range_containing_the_node_also_allows_the_lb_ip_as_source():
    _, runner = synced(lb(loadBalancerSourceRanges=["10.128.0.0/16"]), eps(endpoint(REMOTE_POD)))
    assert "-s 34.120.0.5 -j KUBE-EXT-" in runner.last_restore


def test_internal_local_and_external_cluster_together():
    _, runner = synced(lb(internalTrafficPolicy="Local"), eps(endpoint(REMOTE_POD)))
    t = tracer(runner)
    (o,) = t.trace("10.4.1.9", "10.8.0.20", 80)            # ClusterIP: no local endpoint
    assert o.verdict == "DROP"
    (o,) = t.trace(CLIENT, LB_IP, 80)                       # external: Cluster policy
    assert o.destination == "10.4.2.7:8080" and o.masqueraded
