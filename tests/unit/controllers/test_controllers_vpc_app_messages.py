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
