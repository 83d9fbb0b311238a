"""VPC firewall rules with GCP semantics, traced through the simulated switch with conntrack."""
from __future__ import annotations

import pytest

from tests.fakes.flow_sim import SimSwitch
from controllers.vpc_core import VpcState, compute
from controllers.vpc_firewall import PRIO_FW_RULE_TOP, parse_firewall, rule_priorities
from emulator.errors import ConfigError

from vpc_helpers import (
    IP, NODE_TAG, VPC_RANGES, WEB_IP, packet, receivers, reply, rule, state_dict, switch,
)

pytestmark = pytest.mark.unit

POD_B = "10.4.1.7"  # a pod on node-b


def with_rules(*rules: dict) -> SimSwitch:
    """The base rules (VPC-internal, LB openings, health checks) plus `rules`."""
    return switch(state_dict(firewall=state_dict()["firewall"] + list(rules)))


def test_nodes_and_pods_talk_freely_inside_the_vpc() -> None:
    sw = switch(state_dict())
    syn = packet("node-a", POD_B, src_ip="10.4.0.5", dport=8080)  # pod to pod across nodes
    assert receivers(sw.send(syn)) == ["node-b"]
    assert receivers(sw.send(reply("node-b", syn))) == ["node-a"]
    assert receivers(sw.send(packet("vm-1", IP["node-c"], "icmp"))) == ["node-c"]
    assert receivers(sw.send(packet("node-c", IP["vm-1"], "udp", dport=9))) == ["vm-1"]


def test_ingress_from_outside_is_denied_except_to_load_balancers() -> None:
    sw = switch(state_dict())
    t = sw.send(packet("inet-1", IP["node-a"], dport=80))
    assert t.dropped and t.path[-1].note == "fw ingress: implied deny"
    assert sw.send(packet("inet-1", IP["vm-1"], "icmp")).dropped
    assert len(receivers(sw.send(packet("inet-1", WEB_IP)))) == 1


def test_destination_ranges_of_ingress_rules_match_the_packets_destination() -> None:
    # k8s-fw-web allows tcp:80 to the LB IP only: the same port on the node's own IP is denied
    sw = switch(state_dict())
    assert sw.send(packet("inet-1", IP["node-b"], dport=80)).dropped


def test_internet_hosts_and_probers_have_no_firewall() -> None:
    sw = switch(state_dict(firewall=[rule("deny-all-egress", "egress", "deny", 0)]))
    assert receivers(sw.send(packet("prober", IP["inet-1"], dport=22))) == ["inet-1"]
    assert sw.send(packet("node-a", IP["inet-1"], dport=22)).dropped


def test_health_checks_from_the_prober_ranges() -> None:
    sw = switch(state_dict())
    assert receivers(sw.send(packet("prober", IP["node-c"], dport=10256))) == ["node-c"]
    assert sw.send(packet("prober", IP["node-c"], dport=10255)).dropped
    assert sw.send(packet("prober", IP["vm-1"], dport=10256)).dropped  # target tag: nodes only


def test_lower_priority_number_wins() -> None:
    deny = rule("deny-vm", action="deny", priority=900, source_ranges=[IP["vm-1"]])
    assert with_rules(deny).send(packet("vm-1", IP["node-a"])).dropped  # deny 900 beats allow-vpc 1000
    allow = rule("allow-vm-ssh", priority=800, source_ranges=[IP["vm-1"]],
                 protocols=[{"protocol": "tcp", "ports": ["22"]}])
    sw = with_rules(deny, allow)
    assert receivers(sw.send(packet("vm-1", IP["node-a"], dport=22))) == ["node-a"]  # allow 800 first
    assert sw.send(packet("vm-1", IP["node-a"], dport=23)).dropped


def test_deny_wins_over_allow_at_equal_priority() -> None:
    deny = rule("deny-vm", action="deny", priority=1000, source_ranges=[IP["vm-1"]])
    sw = with_rules(deny)
    t = sw.send(packet("vm-1", IP["node-a"]))
    assert t.dropped and t.path[-1].note == "fw deny-vm (deny) node-a"
    allow_first = rule("allow-vm", priority=1000, source_ranges=[IP["vm-1"]])
    assert with_rules(allow_first, deny).send(packet("vm-1", IP["node-a"])).dropped  # order is irrelevant


def test_egress_deny_between_nodes() -> None:
    deny = rule("deny-node-egress", "egress", "deny", 900, destination_ranges=["10.128.0.0/20"],
                target_tags=[NODE_TAG], protocols=[{"protocol": "tcp"}])
    sw = with_rules(deny)
    t = sw.send(packet("node-a", IP["node-b"], dport=30080))
    assert t.dropped and t.path[-1].note == "fw deny-node-egress (deny) node-a"
    assert receivers(sw.send(packet("node-a", IP["node-b"], "udp", dport=53))) == ["node-b"]  # other protocol
    assert receivers(sw.send(packet("node-a", POD_B, dport=8080))) == ["node-b"]  # outside the range
    assert receivers(sw.send(packet("vm-1", IP["node-b"], dport=30080))) == ["node-b"]  # untagged sender
    assert receivers(sw.send(packet("node-c", WEB_IP))) != []  # LB IP: outside the range


def test_egress_rule_without_target_tags_applies_to_every_instance() -> None:
    sw = with_rules(rule("no-smtp", "egress", "deny", 100, protocols=[{"protocol": "tcp", "ports": ["25"]}]))
    for src in ("node-a", "vm-1"):
        assert sw.send(packet(src, IP["inet-1"], dport=25)).dropped
        assert receivers(sw.send(packet(src, IP["inet-1"], dport=26))) == ["inet-1"]


@pytest.mark.parametrize("port,allowed", [(29999, False), (30000, True), (31234, True), (32767, True),
                                          (32768, False)])
def test_port_ranges(port: int, allowed: bool) -> None:
    sw = with_rules(rule("nodeports", source_ranges=["0.0.0.0/0"], target_tags=[NODE_TAG],
                         protocols=[{"protocol": "tcp", "ports": ["30000-32767"]}]))
    t = sw.send(packet("inet-1", IP["node-a"], dport=port))
    assert (receivers(t) == ["node-a"]) is allowed


def test_protocol_all_and_icmp() -> None:
    sw = with_rules(rule("inet-all", source_ranges=["203.0.113.0/24"], target_tags=[NODE_TAG]),
                    rule("inet-ping", source_ranges=["203.0.113.0/24"], protocols=[{"protocol": "icmp"}]))
    for proto in ("tcp", "udp", "icmp"):
        assert receivers(sw.send(packet("inet-1", IP["node-a"], proto, dport=7))) == ["node-a"]
    assert receivers(sw.send(packet("inet-1", IP["vm-1"], "icmp"))) == ["vm-1"]
    assert sw.send(packet("inet-1", IP["vm-1"], "tcp", dport=7)).dropped


def test_replies_of_allowed_connections_pass() -> None:
    deny = rule("deny-from-vm", action="deny", priority=900, source_ranges=[IP["vm-1"]], target_tags=[NODE_TAG])
    sw = with_rules(deny)
    unsolicited = reply("vm-1", packet("node-a", IP["vm-1"], dport=5432))
    assert sw.send(unsolicited).dropped                                   # new: denied at node-a
    syn = packet("node-a", IP["vm-1"], dport=5432)
    assert receivers(sw.send(syn)) == ["vm-1"]                            # allowed at vm-1 (allow-vpc)
    t = sw.send(reply("vm-1", syn))
    assert receivers(t) == ["node-a"] and "fw ingress: established" in t.notes
    assert receivers(sw.send(syn)) == ["vm-1"]                            # and on, both ways
    assert receivers(sw.send(reply("vm-1", syn))) == ["node-a"]


def test_established_connections_survive_a_new_deny() -> None:
    data = state_dict()
    sw = switch(data)
    syn = packet("vm-1", IP["node-a"], dport=5000)
    assert receivers(sw.send(syn)) == ["node-a"]
    sw.send(reply("node-a", syn))
    deny = rule("deny-vm", action="deny", priority=1, source_ranges=[IP["vm-1"]])
    sw.load(compute(VpcState.from_dict(dict(data, firewall=data["firewall"] + [deny]))))
    assert receivers(sw.send(syn)) == ["node-a"]
    assert sw.send(packet("vm-1", IP["node-a"], dport=5001)).dropped


def test_stateful_across_bridges() -> None:
    data = state_dict(firewall=state_dict()["firewall"] + [
        rule("deny-from-b", action="deny", priority=900, source_ranges=[IP["node-b"]])])
    data["endpoints"][1].update(dpid=2, ofport=7)
    data["tunnels"] = [{"dpid": 1, "remote_dpid": 2, "port_name": "t0", "ofport": 50},
                       {"dpid": 2, "remote_dpid": 1, "port_name": "t1", "ofport": 60}]
    state = VpcState.from_dict(data)
    sw1, sw2 = SimSwitch.of(compute(state, 1)), SimSwitch.of(compute(state, 2))
    syn = packet("node-a", IP["node-b"], dport=6000)
    [(port, out)] = sw1.send(syn).outputs
    assert port == 50
    assert [p for p, _ in sw2.send(dict(out, in_port=60)).outputs] == [7]
    back = dict(reply("node-a", syn), in_port=7, eth_src="02:00:0a:80:00:03")  # sent by node-b
    back["ipv4_src"], back["ipv4_dst"] = IP["node-b"], IP["node-a"]
    [(port, out)] = sw2.send(back).outputs
    assert port == 60
    assert receivers(sw1.send(dict(out, in_port=50))) == ["node-a"]     # reply: established at node-a
    fresh = dict(back, tcp_src=6001, tcp_dst=40001)
    [(port, out)] = sw2.send(fresh).outputs
    assert sw1.send(dict(out, in_port=50)).dropped                      # new: node-a's ingress denies


def test_no_firewall_key_enforces_nothing() -> None:
    data = state_dict()
    del data["firewall"]
    sw = switch(data)
    assert receivers(sw.send(packet("inet-1", IP["node-a"], dport=22))) == ["node-a"]
    assert VpcState.from_dict(data).firewall is None
    assert VpcState.from_dict(state_dict(firewall=[])).firewall == ()
    assert switch(state_dict(firewall=[])).send(packet("vm-1", IP["node-a"])).dropped  # implied deny


def test_rule_priorities_are_ranked_into_openflow_priorities() -> None:
    rules = parse_firewall([rule("a", priority=65535, action="deny"), rule("b", priority=0),
                            rule("c", priority=1000), rule("d", priority=1000, action="deny"),
                            rule("e", priority=1000)])
    prio = rule_priorities(rules)
    assert prio == {(0, 1): PRIO_FW_RULE_TOP, (1000, 0): PRIO_FW_RULE_TOP - 1,
                    (1000, 1): PRIO_FW_RULE_TOP - 2, (65535, 0): PRIO_FW_RULE_TOP - 3}


def test_rules_round_trip() -> None:
    fw = state_dict()["firewall"] + [rule("r", "egress", "deny", 5, protocols=[
        {"protocol": "tcp", "ports": ["80", "30000-32767"]}, {"protocol": "udp"}])]
    state = VpcState.from_dict(state_dict(firewall=fw))
    assert VpcState.from_dict(state.to_dict()) == state
    assert state.to_dict()["firewall"][-1]["protocols"][0]["ports"] == ["80", "30000-32767"]


@pytest.mark.parametrize("ports", ["0-65535", "1-65535"])
def test_full_port_range_needs_no_port_match(ports: str) -> None:
    program = compute(VpcState.from_dict(state_dict(firewall=[rule(
        "all-tcp", source_ranges=VPC_RANGES, protocols=[{"protocol": "tcp", "ports": [ports]}])])))
    flows = [f for f in program.flows if f.note.startswith("fw all-tcp")]
    assert len(flows) == 8  # 4 instances (3 nodes, 1 VM) x 2 source ranges
    assert all("tcp_dst" not in f.match and f.match["ip_proto"] == 6 for f in flows)


@pytest.mark.parametrize("bad,field", [
    ({"direction": "sideways"}, "firewall[0].direction"),
    ({"action": "reject"}, "firewall[0].action"),
    ({"priority": 70000}, "firewall[0].priority"),
    ({"priority": "high"}, "firewall[0].priority"),
    ({"source_ranges": ["10.0.0.1/8"]}, "firewall[0].source_ranges[0]"),
    ({"destination_ranges": "10.0.0.0/8"}, "firewall[0].destination_ranges"),
    ({"target_tags": "gke-node"}, "firewall[0].target_tags"),
    ({"protocols": []}, "firewall[0].protocols"),
    ({"protocols": [{"protocol": "gre"}]}, "firewall[0].protocols[0].protocol"),
    ({"protocols": [{"protocol": "icmp", "ports": ["8"]}]}, "firewall[0].protocols[0].ports"),
    ({"protocols": [{"protocol": "tcp", "ports": ["90-80"]}]}, "firewall[0].protocols[0].ports[0]"),
    ({"protocols": [{"protocol": "tcp", "ports": ["http"]}]}, "firewall[0].protocols[0].ports[0]"),
    ({"protocols": [{"protocol": "tcp", "ports": ["80"], "x": 1}]}, "firewall[0].protocols[0]"),
    ({"sources": ["10.0.0.0/8"]}, "firewall[0]"),
])
def test_bad_rules_name_the_field(bad: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        VpcState.from_dict(state_dict(firewall=[dict(rule("r"), **bad)]))
    assert err.value.field == field


def test_duplicate_and_nameless_rules() -> None:
    with pytest.raises(ConfigError) as err:
        VpcState.from_dict(state_dict(firewall=[rule("r"), rule("r")]))
    assert err.value.field == "firewall[1].name"
    with pytest.raises(ConfigError) as err:
        VpcState.from_dict(state_dict(firewall=[{"action": "deny"}]))
    assert err.value.field == "firewall[0]"
    with pytest.raises(ConfigError) as err:
        VpcState.from_dict(state_dict(firewall={"r": {}}))
    assert err.value.field == "firewall"
