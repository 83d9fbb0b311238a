"""Stale UDP conntrack entries are deleted after the sync that made them stale."""
import pytest

from kubeproxy_helpers import apply, endpoint, make_proxier, service, slice_

pytestmark = pytest.mark.unit

UDP_PORTS = [{"name": "dns", "port": 53, "targetPort": 8081, "protocol": "UDP"}]
SLICE_PORTS = [{"name": "dns", "port": 8081, "protocol": "UDP"}]


def udp_service(ports=UDP_PORTS, **spec):
    return service("dns", "10.8.0.10", ports, **spec)


def synced(proxier, runner):
    runner.conntrack_deletions.clear()
    result = proxier.sync()
    assert result.ok
    assert result.conntrack_filters == len(runner.conntrack_deletions)
    return runner.conntrack_deletions


def test_udp_port_getting_its_first_endpoint_clears_flows_to_its_addresses():
    proxier, runner = make_proxier()
    apply(proxier, udp_service(type="NodePort", externalIPs=["203.0.113.7"],
                               ports=[{**UDP_PORTS[0], "nodePort": 30053}]))
    apply(proxier, slice_("dns", [], SLICE_PORTS))
    assert synced(proxier, runner) == []
    apply(proxier, slice_("dns", [endpoint("10.4.2.7")], SLICE_PORTS), event="MODIFIED")
    assert synced(proxier, runner) == [["-p", "udp", "--orig-dst", "10.8.0.10"],
                                       ["-p", "udp", "--orig-dst", "203.0.113.7"],
                                       ["-p", "udp", "--dport", "30053"]]


def test_removed_or_unready_udp_endpoint_clears_its_nated_flows():
    proxier, runner = make_proxier()
    apply(proxier, udp_service(), slice_("dns", [endpoint("10.4.2.7"), endpoint("10.4.2.8")], SLICE_PORTS))
    synced(proxier, runner)
    apply(proxier, slice_("dns", [endpoint("10.4.2.8")], SLICE_PORTS), event="MODIFIED")
    assert synced(proxier, runner) == [["-p", "udp", "--orig-dst", "10.8.0.10", "--dst-nat", "10.4.2.7"]]
    apply(proxier, slice_("dns", [endpoint("10.4.2.8", ready=False), endpoint("10.4.2.9")], SLICE_PORTS),
          event="MODIFIED")
    assert synced(proxier, runner) == [["-p", "udp", "--orig-dst", "10.8.0.10", "--dst-nat", "10.4.2.8"]]
    assert synced(proxier, runner) == []                   # nothing new: nothing cleared


def test_deleted_udp_service_clears_flows_to_its_cluster_ip():
    proxier, runner = make_proxier()
    apply(proxier, udp_service(), slice_("dns", [endpoint("10.4.2.7")], SLICE_PORTS))
    synced(proxier, runner)
    apply(proxier, udp_service(), event="DELETED")
    assert synced(proxier, runner) == [["-p", "udp", "--orig-dst", "10.8.0.10"]]


def test_tcp_changes_clear_nothing():
    proxier, runner = make_proxier()
    apply(proxier, service("web", "10.8.0.11"), slice_("web", [endpoint("10.4.2.7"), endpoint("10.4.2.8")]))
    assert synced(proxier, runner) == []
    apply(proxier, slice_("web", [endpoint("10.4.2.8")]), event="MODIFIED")
    assert synced(proxier, runner) == []


def test_stale_flows_survive_a_failed_restore():
    proxier, runner = make_proxier()
    apply(proxier, udp_service(), slice_("dns", [endpoint("10.4.2.7"), endpoint("10.4.2.8")], SLICE_PORTS))
    synced(proxier, runner)
    apply(proxier, slice_("dns", [endpoint("10.4.2.8")], SLICE_PORTS), event="MODIFIED")
    runner.fail_next = True
    runner.conntrack_deletions.clear()
    assert not proxier.sync().ok and runner.conntrack_deletions == []
    assert synced(proxier, runner) == [["-p", "udp", "--orig-dst", "10.8.0.10", "--dst-nat", "10.4.2.7"]]
