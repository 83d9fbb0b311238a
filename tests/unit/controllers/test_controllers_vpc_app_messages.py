"""The adapter turns every computed flow into an OpenFlow 1.3 message that serializes."""
from __future__ import annotations

import pytest

from controllers.vpc_core import VpcState, compute_flows

pytestmark = pytest.mark.unit


class _StubDatapath:
    """Just enough of os-ken's Datapath for message construction and serialization."""

    def __init__(self) -> None:
        from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser
        self.ofproto, self.ofproto_parser, self.id, self.xid = ofproto_v1_3, ofproto_v1_3_parser, 1, 0

    def set_xid(self, msg) -> int:
        self.xid += 1
        msg.set_xid(self.xid)
        return self.xid


def test_every_flow_serializes() -> None:
    from os_ken.base import app_manager  # noqa: F401  (import order os-ken needs)
    from controllers.vpc_app import delete_by_cookie, flow_mod

    state = VpcState.from_dict({
        "router_mac": "42:01:0a:80:00:01", "gateways": ["10.128.0.1"],
        "endpoints": [{"name": "a", "ip": "10.128.0.2", "mac": "02:00:00:00:00:02",
                       "port_name": "p0", "ofport": 1, "routes": ["10.4.0.0/24"]}],
        "tunnels": [{"dpid": 1, "remote_dpid": 2, "port_name": "t0", "ofport": 9}]})
    dp = _StubDatapath()
    flows = compute_flows(state, 1)
    for flow in flows:
        msg = flow_mod(dp, flow)
        dp.set_xid(msg)
        msg.serialize()
        assert msg.cookie == flow.cookie and len(msg.buf) > 0
    route = next(f for f in flows if f.note.startswith("route 10.4.0.0/24"))
    assert dict(flow_mod(dp, route).match.items())["ipv4_dst"] == ("10.4.0.0", "255.255.255.0")
    delete = delete_by_cookie(dp, flows[0].cookie)
    dp.set_xid(delete)
    delete.serialize()


def test_load_balancer_and_firewall_messages_serialize() -> None:
    from os_ken.base import app_manager  # noqa: F401  (import order os-ken needs)
    from os_ken.ofproto import nicira_ext
    from controllers.vpc_app import DP_HASH_SLOTS, bucket_copies, delete_group, flow_mod, group_mod
    from controllers.vpc_core import compute

    from vpc_helpers import rule, state_dict

    data = state_dict()
    data["firewall"].append(rule("nodeports", protocols=[{"protocol": "tcp", "ports": ["30000-32767"]}]))
    program = compute(VpcState.from_dict(data), 1)
    dp = _StubDatapath()
    for msg in [flow_mod(dp, f) for f in program.flows] + [group_mod(dp, g) for g in program.groups]:
        dp.set_xid(msg)
        msg.serialize()
        assert len(msg.buf) > 0
    for group in program.groups:
        msg = group_mod(dp, group)
        assert msg.type == dp.ofproto.OFPGT_SELECT and msg.group_id == group.group_id
        copies = bucket_copies(len(group.buckets))
        assert len(msg.buckets) == len(group.buckets) * copies
        assert copies == 1 or 128 < len(msg.buckets) <= DP_HASH_SLOTS
        dp.set_xid(msg)
        msg.serialize()
        assert len(msg.buf) < 65536   # one OpenFlow message
        ct_action = msg.buckets[0].actions[-1]
        assert isinstance(ct_action, dp.ofproto_parser.NXActionCT)
        assert ct_action.flags == nicira_ext.NX_CT_F_COMMIT and ct_action.zone_src == "reg6"
        assert ct_action.recirc_table == 25 and len(ct_action.actions) == 1  # exec(set ct_mark)
    delete = delete_group(dp, program.groups[0].group_id)
    dp.set_xid(delete)
    delete.serialize()
    nodeports = next(f for f in program.flows if f.note.startswith("fw nodeports") and "tcp_dst" in f.match)
    fields = dict(flow_mod(dp, nodeports).match.items())
    assert fields["ct_state"] == (0x21, 0x21) and fields["tcp_dst"] == (30000, 0xFFF0)
    classify = next(f for f in program.flows if f.note == "from node-a")
    [apply] = flow_mod(dp, classify).instructions
    set_reg, ct_action = apply.actions
    assert ct_action.recirc_table == 10 and ct_action.zone_src == "" and ct_action.flags == 0


def test_a_switch_that_disconnects_releases_who_waits_for_its_barrier() -> None:
    """A set_state waiting on a barrier of a switch that dies returns at once, not after its timeout."""
    import logging
    import threading
    from types import SimpleNamespace

    from os_ken.base import app_manager  # noqa: F401  (import order os-ken needs)
    from controllers.vpc_app import VpcRouterApp, _Pending, _Switch

    dead, alive = _StubDatapath(), _StubDatapath()
    released, other = threading.Event(), threading.Event()
    app = SimpleNamespace(switches={1: _Switch(dead, 1), 2: _Switch(alive, 2)}, logger=logging.getLogger("t"),
                          _pending={(id(dead), 1): _Pending(lambda body: None, on_dead=released.set),
                                    (id(alive), 1): _Pending(lambda body: None, on_dead=other.set)})
    VpcRouterApp._on_dead(app, SimpleNamespace(datapath=dead))
    assert released.is_set() and not other.is_set()
    assert list(app.switches) == [2] and list(app._pending) == [(id(alive), 1)]
