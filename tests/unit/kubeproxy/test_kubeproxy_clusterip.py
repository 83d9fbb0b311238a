"""ClusterIP behaviours, rendered then traced through the fake kernel."""
import pytest

from kubeproxy_helpers import (LOCAL_POD, NODE, NODE_IP, REMOTE_POD, apply, endpoint, make_proxier, service,
                               slice_, tracer)

pytestmark = pytest.mark.unit
POD = "10.4.1.9"          # a client pod on this node


def synced(*objs):
    proxier, runner = make_proxier()
    apply(proxier, *objs)
    assert proxier.sync().ok
    return proxier, runner


def test_three_endpoints_are_chosen_with_equal_probability():
    _, runner = synced(service("web", "10.8.0.10"),
                       slice_("web", [endpoint("10.4.2.7"), endpoint("10.4.3.3"), endpoint(LOCAL_POD, NODE)]))
    text = runner.last_restore
    assert "--probability 0.3333333333 -j KUBE-SEP-" in text
    assert "--probability 0.5000000000 -j KUBE-SEP-" in text
    dests = tracer(runner).destinations(POD, "10.8.0.10", 80)
    assert dests.keys() == {"10.4.1.5:8080", "10.4.2.7:8080", "10.4.3.3:8080"}
    assert all(abs(p - 1 / 3) < 1e-9 for p in dests.values())


def test_real_kube_proxy_comments_and_rule_shapes():
    _, runner = synced(service("web", "10.8.0.10"), slice_("web", [endpoint("10.4.2.7")]))
    text = runner.last_restore
    assert ('-A KUBE-SERVICES -m comment --comment "default/web cluster IP" -m tcp -p tcp -d 10.8.0.10 '
            '--dport 80 -j KUBE-SVC-') in text
    assert '-m comment --comment "default/web -> 10.4.2.7:8080" -j KUBE-SEP-' in text
    assert "-m comment --comment default/web -s 10.4.2.7 -j KUBE-MARK-MASQ" in text
    assert "-m tcp -p tcp -j DNAT --to-destination 10.4.2.7:8080" in text
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000" in text
    assert "-j MASQUERADE --random-fully" in text
    assert text.index("*filter") < text.index("*nat")


def test_pod_client_keeps_its_ip_but_outside_client_is_masqueraded():
    _, runner = synced(service("web", "10.8.0.10"), slice_("web", [endpoint(REMOTE_POD)]))
    t = tracer(runner)
    (o,) = t.trace(POD, "10.8.0.10", 80)
    assert (o.verdict, o.destination, o.masqueraded, o.source) == ("ACCEPT", "10.4.2.7:8080", False, POD)
    (o,) = t.trace(NODE_IP, "10.8.0.10", 80, local=True)      # the node itself
    assert o.masqueraded and o.destination == "10.4.2.7:8080"
    (o,) = t.trace("192.168.50.1", "10.8.0.10", 80)            # routed in from outside the pod range
    assert o.masqueraded


def test_named_target_port_uses_the_slice_port_with_that_name():
    _, runner = synced(
        service("web", "10.8.0.10", ports=[{"name": "http", "port": 80, "targetPort": "web"},
                                           {"name": "metrics", "port": 9100, "targetPort": "prom"}]),
        slice_("web", [endpoint(REMOTE_POD)], [{"name": "metrics", "port": 9900, "protocol": "TCP"},
                                               {"name": "http", "port": 8443, "protocol": "TCP"}]))
    t = tracer(runner)
    assert t.destinations(POD, "10.8.0.10", 80) == {"10.4.2.7:8443": 1.0}
    assert t.destinations(POD, "10.8.0.10", 9100) == {"10.4.2.7:9900": 1.0}
    assert '"default/web:http cluster IP"' in runner.last_restore


def test_udp_port_next_to_tcp_port_on_the_same_number():
    _, runner = synced(
        service("dns", "10.8.0.53", ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                                           {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]),
        slice_("dns", [endpoint(REMOTE_POD)], [{"name": "dns", "port": 5353, "protocol": "UDP"},
                                              {"name": "dns-tcp", "port": 5354, "protocol": "TCP"}]))
    t = tracer(runner)
    assert t.destinations(POD, "10.8.0.53", 53, "udp") == {"10.4.2.7:5353": 1.0}
    assert t.destinations(POD, "10.8.0.53", 53, "tcp") == {"10.4.2.7:5354": 1.0}
    assert "-m udp -p udp -j DNAT --to-destination 10.4.2.7:5353" in runner.last_restore


def test_hairpin_pod_reaching_itself_is_masqueraded():
    _, runner = synced(service("web", "10.8.0.10"), slice_("web", [endpoint(LOCAL_POD, NODE)]))
    (o,) = tracer(runner).trace(LOCAL_POD, "10.8.0.10", 80)
    assert o.destination == "10.4.1.5:8080" and o.masqueraded and o.source == NODE_IP


def test_service_without_endpoints_rejects_in_filter():
    _, runner = synced(service("empty", "10.8.0.11"))
    assert ('-A KUBE-SERVICES -m comment --comment "default/empty has no endpoints" -m tcp -p tcp '
            '-d 10.8.0.11 --dport 80 -j REJECT') in runner.last_restore
    assert "KUBE-SVC-" not in runner.last_restore
    (o,) = tracer(runner).trace(POD, "10.8.0.11", 80)
    assert o.verdict == "REJECT"                       # connection refused, not a timeout
    (o,) = tracer(runner).trace(NODE_IP, "10.8.0.11", 80, local=True)
    assert o.verdict == "REJECT"


def test_not_ready_endpoints_are_skipped_then_terminating_ones_used_as_fallback():
    proxier, runner = synced(service("web", "10.8.0.10"),
                             slice_("web", [endpoint("10.4.2.7"), endpoint("10.4.2.8", ready=False)]))
    assert tracer(runner).destinations(POD, "10.8.0.10", 80) == {"10.4.2.7:8080": 1.0}
    apply(proxier, slice_("web", [endpoint("10.4.2.7", ready=False, serving=True, terminating=True),
                                  endpoint("10.4.2.8", ready=False)]), event="MODIFIED")
    assert proxier.sync().ok
    assert tracer(runner).destinations(POD, "10.8.0.10", 80) == {"10.4.2.7:8080": 1.0}
    apply(proxier, slice_("web", [endpoint("10.4.2.8", ready=False)]), event="MODIFIED")
    assert proxier.sync().ok
    (o,) = tracer(runner).trace(POD, "10.8.0.10", 80)
    assert o.verdict == "REJECT"


def test_internal_traffic_policy_local_uses_only_local_endpoints():
    proxier, runner = synced(service("web", "10.8.0.10", internalTrafficPolicy="Local"),
                             slice_("web", [endpoint(LOCAL_POD, NODE), endpoint(REMOTE_POD)]))
    assert "-j KUBE-SVL-" in runner.last_restore
    assert tracer(runner).destinations(POD, "10.8.0.10", 80) == {"10.4.1.5:8080": 1.0}
    apply(proxier, slice_("web", [endpoint(REMOTE_POD)]), event="MODIFIED")
    assert proxier.sync().ok
    assert '"default/web has no local endpoints"' in runner.last_restore
    (o,) = tracer(runner).trace(POD, "10.8.0.10", 80)
    assert o.verdict == "DROP"


def test_large_cluster_mode_drops_per_endpoint_comments():
    proxier, runner = make_proxier(large_cluster_endpoints=2)
    apply(proxier, service("web", "10.8.0.10"),
          slice_("web", [endpoint("10.4.2.7"), endpoint("10.4.2.8"), endpoint("10.4.2.9")]))
    assert proxier.sync().ok
    text = runner.last_restore
    assert "-> 10.4.2.7:8080" not in text and "--comment default/web -s" not in text
    assert '"default/web cluster IP"' in text          # KUBE-SERVICES keeps its comments
    assert len(tracer(runner).destinations(POD, "10.8.0.10", 80)) == 3
