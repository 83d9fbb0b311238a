"""The VPC router's decisions, traced through a fake flow table: no switch, no root."""
from __future__ import annotations

import json

import pytest

from tests.fakes.flow_sim import trace
from controllers.vpc_core import (
    ARP_REPLY, ETH_TYPE_ARP, ETH_TYPE_IP, TABLE_DELIVER, VpcState, compute_flows, diff_flows,
)
from emulator.errors import ConfigError

pytestmark = pytest.mark.unit

ROUTER = "42:01:0a:80:00:01"
MAC_A, MAC_B, MAC_I = "02:00:0a:80:00:02", "02:00:0a:80:00:03", "02:00:cb:00:71:0a"


def state_dict(**overrides: object) -> dict:
    """Two nodes with pod ranges and one internet host on one bridge."""
    data = {
        "router_mac": ROUTER,
        "gateways": ["10.128.0.1", "203.0.113.1"],
        "endpoints": [
            {"name": "node-a", "ip": "10.128.0.2", "mac": MAC_A, "port_name": "kubemuabcdp0",
             "routes": ["10.4.0.0/24"]},
            {"name": "node-b", "ip": "10.128.0.3", "mac": MAC_B, "port_name": "kubemuabcdp1",
             "ofport": 7, "routes": ["10.4.1.0/24"]},
            {"name": "inet-1", "ip": "203.0.113.10", "mac": MAC_I, "port_name": "kubemuabcdp2",
             "kind": "internet"},
        ],
    }
    data.update(overrides)
    return data


PORTS = {"kubemuabcdp0": 1, "kubemuabcdp2": 3}  # node-b's port number is given in the state


@pytest.fixture
def flows() -> list:
    return compute_flows(VpcState.from_dict(state_dict()), 1, PORTS)


def ip_packet(in_port: int, src_mac: str, src: str, dst: str, eth_dst: str = ROUTER, ttl: int = 64) -> dict:
    return {"in_port": in_port, "eth_src": src_mac, "eth_dst": eth_dst, "eth_type": ETH_TYPE_IP,
            "ipv4_src": src, "ipv4_dst": dst, "ip_ttl": ttl}


def arp_request(in_port: int, mac: str, spa: str, tpa: str) -> dict:
    return {"in_port": in_port, "eth_src": mac, "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": ETH_TYPE_ARP,
            "arp_op": 1, "arp_sha": mac, "arp_spa": spa, "arp_tha": "00:00:00:00:00:00", "arp_tpa": tpa}


def test_node_ip_is_routed_with_router_macs_and_ttl_decrement(flows: list) -> None:
    t = trace(flows, ip_packet(1, MAC_A, "10.128.0.2", "10.128.0.3"))
    assert len(t.outputs) == 1
    port, pkt = t.outputs[0]
    assert port == 7
    assert (pkt["eth_src"], pkt["eth_dst"], pkt["ip_ttl"]) == (ROUTER, MAC_B, 63)
    assert pkt["ipv4_src"] == "10.128.0.2"


def test_pod_range_goes_to_its_node(flows: list) -> None:
    port, pkt = trace(flows, ip_packet(7, MAC_B, "10.4.1.5", "10.4.0.9")).outputs[0]
    assert (port, pkt["eth_dst"]) == (1, MAC_A)


def test_internet_host_reaches_node_and_back(flows: list) -> None:
    assert trace(flows, ip_packet(3, MAC_I, "203.0.113.10", "10.128.0.3")).outputs[0][0] == 7
    port, pkt = trace(flows, ip_packet(7, MAC_B, "10.128.0.3", "203.0.113.10")).outputs[0]
    assert (port, pkt["eth_dst"]) == (3, MAC_I)


@pytest.mark.parametrize("gateway,port,mac,spa", [
    ("10.128.0.1", 1, MAC_A, "10.128.0.2"),
    ("203.0.113.1", 3, MAC_I, "203.0.113.10"),
])
def test_arp_for_gateway_answered_in_the_switch(flows: list, gateway: str, port: int, mac: str,
                                                spa: str) -> None:
    t = trace(flows, arp_request(port, mac, spa, gateway))
    assert len(t.outputs) == 1
    out_port, reply = t.outputs[0]
    assert out_port == port
    assert reply["arp_op"] == ARP_REPLY
    assert (reply["eth_src"], reply["eth_dst"]) == (ROUTER, mac)
    assert (reply["arp_sha"], reply["arp_spa"]) == (ROUTER, gateway)
    assert (reply["arp_tha"], reply["arp_tpa"]) == (mac, spa)


def test_arp_for_another_host_is_not_answered_nor_flooded(flows: list) -> None:
    assert trace(flows, arp_request(1, MAC_A, "10.128.0.2", "10.128.0.3")).dropped


@pytest.mark.parametrize("packet", [
    ip_packet(1, MAC_A, "10.128.0.2", "10.9.9.9"),                            # unrouted
    ip_packet(1, MAC_A, "10.128.0.2", "10.128.0.3", eth_dst=MAC_B),           # L2 to a peer
    ip_packet(1, MAC_A, "10.128.0.2", "10.128.0.3", eth_dst="ff:ff:ff:ff:ff:ff"),
    ip_packet(9, "02:00:00:00:00:99", "10.128.0.9", "10.128.0.3"),           # unknown port
    {"in_port": 1, "eth_src": MAC_A, "eth_dst": ROUTER, "eth_type": 0x86DD},  # IPv6
])
def test_everything_else_is_dropped(flows: list, packet: dict) -> None:
    assert trace(flows, packet).dropped


def test_ttl_expires(flows: list) -> None:
    t = trace(flows, ip_packet(1, MAC_A, "10.128.0.2", "10.128.0.3", ttl=1))
    assert t.dropped and t.ttl_expired


def test_longest_prefix_wins() -> None:
    data = state_dict()
    data["endpoints"][2]["routes"] = ["10.4.1.128/25"]  # more specific than node-b's /24
    flows = compute_flows(VpcState.from_dict(data), 1, PORTS)
    assert trace(flows, ip_packet(1, MAC_A, "10.128.0.2", "10.4.1.200")).outputs[0][0] == 3
    assert trace(flows, ip_packet(1, MAC_A, "10.128.0.2", "10.4.1.20")).outputs[0][0] == 7


def test_endpoint_without_known_port_is_skipped() -> None:
    flows = compute_flows(VpcState.from_dict(state_dict()), 1, {})
    assert trace(flows, ip_packet(7, MAC_B, "10.128.0.3", "10.128.0.2")).dropped
    assert trace(flows, ip_packet(7, MAC_B, "10.128.0.3", "10.128.0.3")).dropped  # own port: not back


def test_remote_endpoint_goes_through_tunnel_and_is_delivered_there() -> None:
    data = state_dict(tunnels=[{"dpid": 1, "remote_dpid": 2, "port_name": "kubemuabcdt0", "ofport": 50},
                               {"dpid": 2, "remote_dpid": 1, "port_name": "kubemuabcdt1", "ofport": 60}])
    data["endpoints"][1].update(dpid=2, ofport=4)
    state = VpcState.from_dict(data)
    on1, on2 = compute_flows(state, 1, PORTS), compute_flows(state, 2, {})
    port, pkt = trace(on1, ip_packet(1, MAC_A, "10.128.0.2", "10.4.1.5")).outputs[0]
    assert (port, pkt["eth_dst"], pkt["ip_ttl"]) == (50, MAC_B, 63)
    t2 = trace(on2, dict(pkt, in_port=60))
    assert [p for p, _ in t2.outputs] == [4]
    assert t2.outputs[0][1]["ip_ttl"] == 63  # one router hop, not two
    assert t2.path[-1].table == TABLE_DELIVER


def test_a_tunnel_delivers_only_the_vpc_routers_frames() -> None:
    """Real machines' kernel tunnels take datagrams of their VNI from anywhere the kernel lets
    through: the bridge refuses (and counts) a frame whose source is not the VPC router."""
    data = state_dict(tunnels=[{"dpid": 2, "remote_dpid": 1, "port_name": "kubemuabcdt100", "ofport": 60}])
    data["endpoints"][1].update(dpid=2, ofport=4)
    on2 = compute_flows(VpcState.from_dict(data), 2, {})
    routed = dict(ip_packet(60, ROUTER, "10.128.0.2", "10.128.0.3"), eth_dst=MAC_B)
    assert [p for p, _ in trace(on2, routed).outputs] == [4]
    stranger = trace(on2, dict(routed, eth_src="02:00:00:00:00:99"))
    assert stranger.dropped and "refused" in stranger.notes[0]
    arp = trace(on2, arp_request(60, "02:00:00:00:00:99", "10.128.0.9", "10.128.0.1"))
    assert arp.dropped and "refused" in arp.notes[0]   # no ARP answers into a tunnel


def test_state_round_trips_through_json() -> None:
    state = VpcState.from_dict(state_dict())
    assert VpcState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d.update(router_mac="nope"), "router_mac"),
    (lambda d: d["gateways"].append("10.128.0.300"), "gateways[2]"),
    (lambda d: d["endpoints"][0].update(routes=["10.4.0.1/24"]), "endpoints[0].routes[0]"),
    (lambda d: d["endpoints"][1].update(routes=["10.4.0.0/24"]), "endpoints[1]"),
    (lambda d: d["endpoints"][1].update(name="node-a"), "endpoints[1].name"),
    (lambda d: d["endpoints"][0].update(colour="red"), "endpoints[0]"),
    (lambda d: d.update(firewalls=[]), "state"),
    (lambda d: d["endpoints"][0].update(kind="pod"), "endpoints[0].kind"),
    (lambda d: d["endpoints"][0].update(tags="gke-node"), "endpoints[0].tags"),
    (lambda d: d.update(vpc_ranges=["10.128.0.1/20"]), "vpc_ranges[0]"),
    (lambda d: d["endpoints"][0].update(gateway="10.128.0.254"), "endpoints[0].gateway"),
])
def test_bad_state_names_the_field(mutate, field: str) -> None:
    data = state_dict()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        VpcState.from_dict(data)
    assert err.value.field == field


def test_router_mac_defaults_and_endpoint_gateway_is_accepted() -> None:
    data = state_dict()
    del data["router_mac"]
    data["endpoints"][2]["gateway"] = "203.0.113.1"
    state = VpcState.from_dict(data)
    assert state.router_mac == "42:01:0a:80:00:01"
    assert state.endpoints[2].gateway == "203.0.113.1"


def test_cookies_are_stable_unique_and_tagged(flows: list) -> None:
    again = compute_flows(VpcState.from_dict(state_dict()), 1, PORTS)
    assert [f.cookie for f in flows] == [f.cookie for f in again]
    assert len({f.cookie for f in flows}) == len(flows)
    assert all(f.cookie >> 48 == 0x6B75 for f in flows)


def test_diff_sends_only_changes(flows: list) -> None:
    assert not diff_flows(flows, flows)
    data = state_dict()
    data["endpoints"][1]["mac"] = "02:00:0a:80:00:33"   # node-b replaced
    data["endpoints"].pop(2)                            # internet host gone
    new = compute_flows(VpcState.from_dict(data), 1, PORTS)
    diff = diff_flows(flows, new)
    assert sorted(f.note for f in diff.add) == [
        "deliver node-b", "lb backend node-b", "route 10.128.0.3/32 -> node-b",
        "route 10.4.1.0/24 -> node-b", "to node-b"]
    removed = {f.cookie: f.note for f in flows if f.cookie in diff.delete}
    assert sorted(removed.values()) == [
        "deliver inet-1", "deliver node-b", "from inet-1", "fw ingress: inet-1 has no firewall",
        "lb backend node-b", "route 10.128.0.3/32 -> node-b", "route 10.4.1.0/24 -> node-b",
        "route 203.0.113.10/32 -> inet-1", "to inet-1", "to node-b"]
    # Cookies read back from a switch work as the old side too.
    assert diff_flows([f.cookie for f in flows], new) == diff


def test_diff_after_port_number_appears() -> None:
    state = VpcState.from_dict(state_dict())
    before = compute_flows(state, 1, {"kubemuabcdp0": 1})
    after = compute_flows(state, 1, PORTS)
    diff = diff_flows(before, after)
    assert {f.note for f in diff.add} == {"from inet-1", "deliver inet-1", "route 203.0.113.10/32 -> inet-1",
                                          "to inet-1", "fw ingress: inet-1 has no firewall"}
    assert diff.delete == ()
