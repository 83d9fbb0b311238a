"""The scheduler's podAntiAffinity and topologySpreadConstraints."""
import pytest

from emulator.control.scheduler import choose_node

pytestmark = pytest.mark.unit
ZONE = "topology.kubernetes.io/zone"


def node(name, zone):
    return {"kind": "Node", "metadata": {"name": name, "labels": {ZONE: zone, "kubernetes.io/hostname": name}},
            "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name, app="web", node_name=None, anti=None, preferred=None, spread=None, ns="default"):
    spec = {"nodeName": node_name, "containers": [{"name": "c"}]}
    if anti or preferred:
        spec["affinity"] = {"podAntiAffinity": {
            **({"requiredDuringSchedulingIgnoredDuringExecution": anti} if anti else {}),
            **({"preferredDuringSchedulingIgnoredDuringExecution": preferred} if preferred else {})}}
    if spread:
        spec["topologySpreadConstraints"] = spread
    return {"kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": app}}, "spec": spec}


NODES = [node("a1", "a"), node("a2", "a"), node("b1", "b")]


def term(key, app="web"):
    return {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}


def place(pods_to_place, nodes=NODES, placed=None):
    placed = list(placed or [])
    out = []
    for p in pods_to_place:
        n = choose_node(p, nodes, placed)
        out.append(n)
        if n:
            placed.append({**p, "spec": {**p["spec"], "nodeName": n}})
    return out


def test_required_anti_affinity_by_hostname_one_pod_per_node_then_pending() -> None:
    got = place([pod(f"w{i}", anti=[term("kubernetes.io/hostname")]) for i in range(4)])
    assert sorted(got[:3]) == ["a1", "a2", "b1"] and got[3] is None


def test_required_anti_affinity_by_zone_and_symmetry() -> None:
    got = place([pod(f"w{i}", anti=[term(ZONE)]) for i in range(3)])
    assert {got[0][0], got[1][0]} == {"a", "b"} and got[2] is None      # node names start with the zone
    # A running pod's own anti-affinity keeps a matching newcomer out of its zone.
    guard = pod("guard", app="guard", anti=[term(ZONE, app="web")], node_name="b1")
    assert set(place([pod("w1"), pod("w2"), pod("w3")], placed=[guard])) <= {"a1", "a2"}
    assert place([pod("g2", app="other")], nodes=[NODES[2]], placed=[guard]) == ["b1"]   # not selected
    # Another namespace's pods do not count (the term's namespaces default to the pod's own).
    other = [pod("x", ns="other", node_name="a1")]
    assert place([pod("w", anti=[term("kubernetes.io/hostname")])], nodes=[NODES[0]], placed=other) == ["a1"]


def test_preferred_anti_affinity_is_a_score_not_a_filter() -> None:
    pref = [{"weight": 100, "podAffinityTerm": term("kubernetes.io/hostname")}]
    got = place([pod(f"w{i}", preferred=pref) for i in range(4)])
    assert sorted(got[:3]) == ["a1", "a2", "b1"] and got[3] is not None


def test_topology_spread_do_not_schedule_and_schedule_anyway() -> None:
    zone_spread = [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": "web"}}}]
    nodes = [node("a1", "a"), node("b1", "b")]
    placed = [{**pod("old"), "spec": {**pod("old")["spec"], "nodeName": "a1"}}]
    # skew 1 allowed: zone a has 1, b has 0 -> the next must go to b, then either.
    assert place([pod("w1", spread=zone_spread)], nodes=nodes, placed=placed) == ["b1"]
    only_a = [node("a1", "a"), {**node("b1", "b"), "spec": {"unschedulable": True}}]
    # b is not schedulable: its domain is not counted, so a stays possible
    assert place([pod("w1", spread=zone_spread)], nodes=only_a, placed=placed) == ["a1"]
    anyway = [{**zone_spread[0], "whenUnsatisfiable": "ScheduleAnyway", "maxSkew": 1}]
    placed2 = placed + [{**pod("old2"), "spec": {**pod("old2")["spec"], "nodeName": "a1"}}]
    assert place([pod("w1", spread=anyway)], nodes=[node("a1", "a")], placed=placed2) == ["a1"]
    assert place([pod("w1", spread=anyway)], nodes=nodes, placed=placed2) == ["b1"]
    strict = [{**zone_spread[0], "maxSkew": 1}]
    assert place([pod("w1", spread=strict)], nodes=[node("a1", "a"), node("b1", "b")],
                 placed=placed2) == ["b1"]
    # a label-less node is out for DoNotSchedule on that key
    bare = {**node("x1", "x"), "metadata": {"name": "x1", "labels": {}}}
    assert place([pod("w1", spread=zone_spread)], nodes=[bare]) == [None]


def place_in_one_pass(pods_to_place, nodes=NODES):
    """As the controller manager does: one Placement, counting each pod as it binds."""
    from emulator.control.scheduler import Placement
    placement, out = Placement(nodes, []), []
    for p in pods_to_place:
        n = placement.choose(p)
        out.append(n)
        if n:
            placement.bind({**p, "spec": {**p["spec"], "nodeName": n}}, n)
    return out


@pytest.mark.parametrize("make", [
    lambda i: pod(f"w{i}"),
    lambda i: pod(f"w{i}", anti=[term("kubernetes.io/hostname")]),
    lambda i: pod(f"w{i}", anti=[term(ZONE)]),
    lambda i: pod(f"w{i}", preferred=[{"weight": 10, "podAffinityTerm": term("kubernetes.io/hostname")}]),
    lambda i: pod(f"w{i}", spread=[{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                                    "labelSelector": {"matchLabels": {"app": "web"}}}]),
    lambda i: pod(f"w{i}", spread=[{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway",
                                    "labelSelector": {"matchLabels": {"app": "web"}}}]),
])
def test_one_pass_binds_as_pod_by_pod_scheduling_does(make) -> None:
    pods = [make(i) for i in range(5)]
    assert place_in_one_pass(pods) == place(pods)
