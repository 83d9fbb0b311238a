"""Switch reconciliation (`vpc_sync.plan_sync`) applied change by change to fake OpenFlow tables:
traffic must flow after every single change, and only differences are sent."""
from __future__ import annotations

import pytest

from tests.fakes.flow_sim import Conntrack, FakeTables
from controllers.vpc_core import VpcState, compute
from controllers.vpc_sync import ADD_FLOW, ADD_GROUP, DELETE_FLOW, DELETE_GROUP, Change, plan_sync

from vpc_helpers import WEB_IP, modified, packet, receivers, reply, state_dict

pytestmark = pytest.mark.unit


def program(data: dict):
    return compute(VpcState.from_dict(data), 1)


def lbs(web_backends: list[str]) -> list[dict]:
    return [{"name": "default/web", "ip": WEB_IP, "protocol": "TCP", "ports": [80], "scheme": "external",
             "backends": web_backends}]


def installed(tables: FakeTables) -> tuple[list[int], list[int]]:
    return tables.cookies(), list(tables.groups)


def open_connection(tables: FakeTables, ct: Conntrack, sport: int) -> str:
    """A TCP connection from the internet host to the load balancer; the backend it reached."""
    syn = packet("inet-1", WEB_IP, sport=sport)
    [backend] = receivers(tables.switch(ct).send(syn))
    assert receivers(tables.switch(ct).send(reply(backend, syn))) == ["inet-1"]
    return backend


def test_no_desired_state_touches_nothing() -> None:
    tables = FakeTables(program(state_dict()).flows, program(state_dict()).groups)
    assert plan_sync(*installed(tables), None) is None


def test_a_restarted_controller_with_the_same_state_sends_nothing() -> None:
    p = program(state_dict())
    tables = FakeTables(p.flows, p.groups)
    assert plan_sync(*installed(tables), p.flows, p.groups) == []


def test_only_missing_and_stale_entries_are_sent() -> None:
    p = program(state_dict())
    stale = program(modified(state_dict(), load_balancers=lbs(["node-c"])))
    extra = [f for f in stale.flows if f.cookie not in {g.cookie for g in p.flows}
             and not any(a[0] == "group" for a in f.actions)][:2]
    tables = FakeTables([*p.flows[3:], *extra], p.groups)   # three lost, two left over
    changes = plan_sync(*installed(tables), p.flows, p.groups)
    assert {c.spec for c in changes if c.kind == ADD_FLOW} == set(p.flows[:3])
    assert sorted(c.ident for c in changes if c.kind == DELETE_FLOW) == sorted(f.cookie for f in extra)
    assert not [c for c in changes if c.kind in (ADD_GROUP, DELETE_GROUP)]
    for c in changes:
        tables.apply(c)
    assert sorted(tables.cookies()) == sorted(f.cookie for f in p.flows)


@pytest.mark.parametrize("before,after", [(["node-a", "node-b"], ["node-b"]),
                                          (["node-a"], ["node-a", "node-b", "node-c"]),
                                          (["node-a", "node-b"], ["node-c"])])
def test_backend_change_keeps_traffic_flowing_after_every_change(before: list[str], after: list[str]) -> None:
    old, new = program(modified(state_dict(), load_balancers=lbs(before))), \
        program(modified(state_dict(), load_balancers=lbs(after)))
    tables, ct = FakeTables(old.flows, old.groups), Conntrack()
    pinned = {sport: open_connection(tables, ct, sport) for sport in range(41000, 41008)}
    changes = plan_sync(*installed(tables), new.flows, new.groups)
    assert changes and {c.kind for c in changes} >= {ADD_GROUP, ADD_FLOW, DELETE_GROUP}
    for i, change in enumerate(changes):
        tables.apply(change)
        for sport, backend in pinned.items():   # established connections stay on their backend
            assert receivers(tables.switch(ct).send(packet("inet-1", WEB_IP, sport=sport))) == [backend], i
        new_conn = tables.switch(Conntrack()).send(packet("inet-1", WEB_IP, sport=42000 + i))
        assert receivers(new_conn) and receivers(new_conn)[0] in set(before) | set(after), (i, change.kind)
    assert sorted(tables.cookies()) == sorted(f.cookie for f in new.flows)
    assert set(tables.groups) == {g.group_id for g in new.groups}


def test_the_fake_tables_catch_a_wrong_order() -> None:
    """Deleting the old group before the select flows moved drops new connections (OVS deletes
    the flows pointing at it); adding a flow before its group is refused."""
    old, new = program(modified(state_dict(), load_balancers=lbs(["node-a"]))), \
        program(modified(state_dict(), load_balancers=lbs(["node-b"])))
    changes = plan_sync(*installed(FakeTables(old.flows, old.groups)), new.flows, new.groups)
    tables = FakeTables(old.flows, old.groups)
    for c in [c for c in changes if c.kind == DELETE_GROUP]:
        tables.apply(c)
    assert receivers(tables.switch().send(packet("inet-1", WEB_IP, sport=43000))) == []
    tables = FakeTables(old.flows, old.groups)
    with pytest.raises(ValueError, match="missing group"):
        for c in [c for c in changes if c.kind == ADD_FLOW]:
            tables.apply(c)


def test_unknown_change_is_refused() -> None:
    with pytest.raises(ValueError):
        FakeTables().apply(Change("modify"))
