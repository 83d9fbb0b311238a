"""Passthrough load balancers, traced through the simulated switch (groups and conntrack)."""
from __future__ import annotations

import pytest

from tests.fakes.flow_sim import SimSwitch
from controllers.vpc_core import (
    REG_LB, REG_SRC, TABLE_LB, TABLE_LB_BACKEND, VpcState, compute, compute_groups, diff_groups,
)
from emulator.errors import ConfigError

from vpc_helpers import (
    DNS_IP, INT_IP, IP, MAC, ROUTER, WEB_IP, ids, modified, packet, receivers, reply, state_dict,
    switch,
)

pytestmark = pytest.mark.unit


def lb(name: str, ip: str, backends: list[str], proto: str = "TCP", ports: list = [80],
       scheme: str = "external", **extra) -> dict:
    return {"name": name, "ip": ip, "protocol": proto, "ports": ports, "scheme": scheme,
            "backends": backends, **extra}


def test_connections_reach_a_healthy_backend_with_the_destination_kept() -> None:
    sw = switch(state_dict())
    seen = set()
    for sport in range(40000, 40040):
        t = sw.send(packet("inet-1", WEB_IP, sport=sport))
        [name] = receivers(t)
        assert name in ("node-a", "node-b")
        _, out = t.outputs[0]
        assert (out["ipv4_src"], out["ipv4_dst"]) == (IP["inet-1"], WEB_IP)  # passthrough
        assert (out["eth_src"], out["eth_dst"], out["ip_ttl"]) == (ROUTER, MAC[name], 63)
        assert t.buckets == [("default/web", name)]
        seen.add(name)
    assert seen == {"node-a", "node-b"}  # 40 connections spread over both


def test_one_connection_stays_on_its_backend() -> None:
    sw = switch(state_dict())
    syn = packet("inet-1", WEB_IP, sport=41000)
    [backend] = receivers(sw.send(syn))
    # The backend answers from the LB IP (it holds it locally); the reply goes straight back.
    assert receivers(sw.send(reply(backend, syn))) == ["inet-1"]
    for _ in range(5):
        t = sw.send(syn)
        assert receivers(t) == [backend]
        assert f"lb default/web -> {backend}" in t.notes and not t.buckets  # recorded, not re-hashed
    # The choice is recorded in the client's conntrack entry (its zone) as the backend's id.
    zone = ids(state_dict())["inet-1"]
    assert set(sw.conntrack.marks(zone).values()) == {ids(state_dict())[backend]}


def test_same_five_tuple_picks_the_same_bucket_on_a_fresh_switch() -> None:
    first = [receivers(switch(state_dict()).send(packet("inet-1", WEB_IP, sport=s))) for s in range(42000, 42010)]
    again = [receivers(switch(state_dict()).send(packet("inet-1", WEB_IP, sport=s))) for s in range(42000, 42010)]
    assert first == again


def test_backend_change_keeps_tcp_connections_and_moves_new_ones() -> None:
    data = state_dict()
    sw = switch(data)
    conns = {}
    for sport in range(43000, 43020):
        syn = packet("inet-1", WEB_IP, sport=sport)
        [conns[sport]] = receivers(sw.send(syn))
        sw.send(reply(conns[sport], syn))
    on_a = [s for s, b in conns.items() if b == "node-a"]
    assert on_a
    new = modified(data, load_balancers=[lb("default/web", WEB_IP, ["node-b", "node-c"])])
    sw.load(compute(VpcState.from_dict(new)))
    for sport, backend in conns.items():  # node-a is unhealthy now: TCP persists (GCP default)
        t = sw.send(packet("inet-1", WEB_IP, sport=sport))
        assert receivers(t) == [backend]
    assert "lb default/web: keep backend" in sw.send(packet("inet-1", WEB_IP, sport=on_a[0])).notes
    fresh = {receivers(sw.send(packet("inet-1", WEB_IP, sport=s)))[0] for s in range(44000, 44040)}
    assert fresh == {"node-b", "node-c"}


def test_udp_flows_move_off_an_unhealthy_backend() -> None:
    data = state_dict()
    sw = switch(data)
    q = packet("inet-1", DNS_IP, "udp", sport=5353, dport=53)
    assert receivers(sw.send(q)) == ["node-a"]
    assert receivers(sw.send(reply("node-a", q))) == ["inet-1"]
    new = modified(data, load_balancers=[lb("default/dns", DNS_IP, ["node-b"], proto="UDP", ports=[53])])
    sw.load(compute(VpcState.from_dict(new)))
    t = sw.send(q)
    assert receivers(t) == ["node-b"] and "lb default/dns: re-select" in t.notes
    assert receivers(sw.send(q)) == ["node-b"]  # and it stays there
    assert "lb default/dns -> node-b" in sw.send(q).notes


def test_no_healthy_backend_spreads_over_all_backends() -> None:
    everyone = {receivers(switch(state_dict(lbs=[lb("web", WEB_IP, [])])).send(
        packet("inet-1", WEB_IP, sport=s)))[0] for s in range(45000, 45060)}
    assert everyone == {"node-a", "node-b", "node-c"}  # all `node` endpoints
    listed = {receivers(switch(state_dict(lbs=[lb("web", WEB_IP, [], all_backends=["node-b", "node-c"])])).send(
        packet("inet-1", WEB_IP, sport=s)))[0] for s in range(45000, 45060)}
    assert listed == {"node-b", "node-c"}


def test_no_backend_at_all_drops() -> None:
    sw = switch(state_dict(lbs=[lb("web", WEB_IP, [], all_backends=[])]))
    t = sw.send(packet("inet-1", WEB_IP))
    assert t.dropped and "lb web: no backend" in t.notes


def test_internal_lb_only_answers_sources_inside_the_vpc() -> None:
    sw = switch(state_dict())
    assert sw.send(packet("inet-1", INT_IP)).dropped
    assert set(receivers(sw.send(packet("vm-1", INT_IP)))) <= {"node-a", "node-b"}
    assert len(receivers(sw.send(packet("vm-1", INT_IP)))) == 1
    # a pod on node-c (not a backend), its pod IP inside the VPC's alias range
    assert len(receivers(sw.send(packet("node-c", INT_IP, src_ip="10.4.2.9")))) == 1


@pytest.mark.parametrize("pkt", [
    packet("inet-1", WEB_IP, dport=81),
    packet("inet-1", WEB_IP, "udp", dport=80),
    packet("inet-1", WEB_IP, "icmp"),
    packet("inet-1", DNS_IP, "tcp", dport=53),
])
def test_other_ports_and_protocols_on_a_load_balancer_ip_are_dropped(pkt: dict) -> None:
    t = switch(state_dict()).send(pkt)
    assert t.dropped and t.path[-1].note.endswith("other traffic dropped")


def test_port_ranges_in_a_forwarding_rule() -> None:
    data = state_dict(firewall=[{"name": "open", "source_ranges": ["0.0.0.0/0"]}],
                      lbs=[lb("range", WEB_IP, ["node-a"], ports=["8000-8010"])])
    sw = switch(data)
    assert receivers(sw.send(packet("inet-1", WEB_IP, dport=8005))) == ["node-a"]
    assert sw.send(packet("inet-1", WEB_IP, dport=8011)).dropped


def test_ingress_firewall_is_evaluated_for_the_chosen_backend() -> None:
    fw = [r for r in state_dict()["firewall"] if r["name"] != "k8s-fw-web"]
    fw.append({"name": "web-only-a", "source_ranges": ["0.0.0.0/0"], "destination_ranges": [WEB_IP],
               "target_tags": ["only-a"], "protocols": [{"protocol": "tcp", "ports": ["80"]}]})
    data = state_dict(firewall=fw)
    data["endpoints"][0]["tags"].append("only-a")  # node-a
    sw = switch(data)
    outcome = {}
    for sport in range(46000, 46040):
        t = sw.send(packet("inet-1", WEB_IP, sport=sport))
        backend = t.buckets[0][1]
        outcome.setdefault(backend, set()).add(tuple(receivers(t)))
    assert outcome == {"node-a": {("node-a",)}, "node-b": {()}}  # node-b's ingress denies it


def test_groups_are_content_addressed() -> None:
    data = state_dict()
    groups = compute_groups(VpcState.from_dict(data))
    assert [g.name for g in groups] == ["default/web", "default/int", "default/dns"]
    assert groups[0].bucket_notes == ("node-a", "node-b")
    assert groups[0].group_id != groups[1].group_id  # same backends, another load balancer
    assert compute_groups(VpcState.from_dict(data)) == groups
    changed = compute_groups(VpcState.from_dict(
        modified(data, load_balancers=[lb("default/web", WEB_IP, ["node-b"])])))
    diff = diff_groups(groups, changed)
    assert [g.bucket_notes for g in diff.add] == [("node-b",)]
    assert set(diff.delete) == {g.group_id for g in groups}
    assert not diff_groups([g.group_id for g in changed], changed)
    # buckets commit the choice in the sender's zone (a register), then continue in table 25
    assert groups[0].buckets[0] == (("set_field", REG_LB, ids(data)["node-a"]),
                                    ("ct", True, REG_SRC, TABLE_LB_BACKEND, ids(data)["node-a"]))


def test_select_flows_use_the_current_group() -> None:
    program = compute(VpcState.from_dict(state_dict()))
    gids = {g.name: g.group_id for g in program.groups}
    select = [f for f in program.flows if f.table == TABLE_LB and f.note == "lb default/web: select"]
    assert [f.actions for f in select] == [(("group", gids["default/web"]),)]
    assert select[0].match["ct_mark"] == 0


def test_backend_behind_a_tunnel() -> None:
    data = state_dict()
    data["endpoints"][1].update(dpid=2, ofport=7)  # node-b on machine 2
    data["tunnels"] = [{"dpid": 1, "remote_dpid": 2, "port_name": "t0", "ofport": 50},
                       {"dpid": 2, "remote_dpid": 1, "port_name": "t1", "ofport": 60}]
    data["load_balancers"] = [lb("web", WEB_IP, ["node-b"])]
    state = VpcState.from_dict(data)
    sw1, sw2 = SimSwitch.of(compute(state, 1)), SimSwitch.of(compute(state, 2))
    syn = packet("inet-1", WEB_IP)
    t1 = sw1.send(syn)
    [(port, pkt)] = t1.outputs
    assert (port, pkt["eth_dst"], pkt["ipv4_dst"]) == (50, MAC["node-b"], WEB_IP)
    t2 = sw2.send(dict(pkt, in_port=60))
    assert [p for p, _ in t2.outputs] == [7]
    # node-b's answer: its bridge saw the connection come in, so the reply is established
    back = reply("node-b", syn)
    t3 = sw2.send(dict(back, in_port=7))
    assert [p for p, _ in t3.outputs] == [60]
    assert [p for p, _ in sw1.send(dict(t3.outputs[0][1], in_port=50)).outputs] == [5]


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d["load_balancers"][0].update(backends=["node-z"]), "load_balancers[0].backends[0]"),
    (lambda d: d["load_balancers"][0].update(all_backends=["node-a", "x"]), "load_balancers[0].all_backends[1]"),
    (lambda d: d["load_balancers"][0].update(ip=IP["node-a"]), "load_balancers[0].ip"),
    (lambda d: d["load_balancers"][0].update(ip="10.4.1.7"), "load_balancers[0].ip"),  # node-b's pods
    (lambda d: d["load_balancers"][0].update(ip="198.51.100.300"), "load_balancers[0].ip"),
    (lambda d: d["load_balancers"][0].update(protocol="SCTP"), "load_balancers[0].protocol"),
    (lambda d: d["load_balancers"][0].update(scheme="global"), "load_balancers[0].scheme"),
    (lambda d: d["load_balancers"][0].update(ports=[]), "load_balancers[0].ports"),
    (lambda d: d["load_balancers"][0].update(ports=[70000]), "load_balancers[0].ports[0]"),
    (lambda d: d["load_balancers"][0].update(color="red"), "load_balancers[0]"),
    (lambda d: d["load_balancers"][0].pop("ip"), "load_balancers[0]"),
    (lambda d: d["load_balancers"][1].update(name="default/web"), "load_balancers[1].name"),
    (lambda d: d["load_balancers"][1].update(ip=WEB_IP), "load_balancers[1].scheme"),
    (lambda d: d["load_balancers"].append(lb("again", WEB_IP, [], ports=["79-81"])), "load_balancers[3].ports"),
    (lambda d: d.update(vpc_ranges=[]), "load_balancers[1].scheme"),  # internal LB needs the VPC ranges
    (lambda d: d.update(load_balancers={"web": {}}), "load_balancers"),
])
def test_bad_load_balancers_name_the_field(mutate, field: str) -> None:
    data = state_dict()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        VpcState.from_dict(data)
    assert err.value.field == field


def test_udp_and_tcp_on_one_ip_are_two_load_balancers() -> None:
    data = state_dict(lbs=[lb("svc/tcp", WEB_IP, ["node-a"], ports=[53]),
                           lb("svc/udp", WEB_IP, ["node-b"], proto="UDP", ports=[53])])
    data["firewall"].append({"name": "dns", "destination_ranges": [WEB_IP],
                             "protocols": [{"protocol": "tcp", "ports": ["53"]}, {"protocol": "udp", "ports": ["53"]}]})
    sw = switch(data)
    assert receivers(sw.send(packet("inet-1", WEB_IP, "tcp", dport=53))) == ["node-a"]
    assert receivers(sw.send(packet("inet-1", WEB_IP, "udp", dport=53))) == ["node-b"]
