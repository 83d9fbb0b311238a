"""Leases that lapsed with no fault to explain them are reported as load, the others are the faults'."""
from __future__ import annotations

import pytest

from emulator.report.load_lapses import summary, unexplained_lapses, warning, warnings

pytestmark = pytest.mark.unit


def lapse(node: str, t: float, silent: float = 6.0) -> dict:
    return {"t": t, "node": node, "event": "node_not_ready", "silent_s": silent}


def test_a_crash_explains_its_nodes_lapses_until_recovered_and_not_another_nodes():
    faults = [{"step": "fault", "action": "crash", "t": 100.0, "nodes": ["a"]},
              {"step": "fault", "action": "recover", "t": 130.0, "nodes": ["a"]}]
    events = [lapse("a", 106.0), {"t": 106.0, "node": "a", "event": "node_tainted"},
              lapse("b", 107.0),          # b was never faulted: load
              lapse("a", 200.0)]          # a's lapse long after its recovery: load
    got = unexplained_lapses(events, faults)
    assert [(x["node"], x["t"]) for x in got] == [("b", 107.0), ("a", 200.0)]


def test_a_lapse_whose_silence_began_before_the_fault_still_counts_as_the_faults():
    # last renewal at 99 (silent 6 s at 105), crash at 100: the crash explains it
    faults = [{"action": "zone-outage", "t": 100.0, "nodes": ["a", "b"]}]
    assert unexplained_lapses([lapse("a", 105.0), lapse("b", 105.5)], faults) == []
    # but a lapse that ended before the fault began is load
    assert [x["node"] for x in unexplained_lapses([lapse("a", 99.0)], faults)] == ["a"]


def test_bounded_faults_explain_only_their_own_seconds_and_api_restart_every_node():
    faults = [{"action": "link-flap", "t": 100.0, "nodes": ["a"], "seconds": 8.0},
              {"action": "api-restart", "t": 300.0, "nodes": [], "seconds": 4.0}]
    events = [lapse("a", 106.0), lapse("a", 150.0, 2.0), lapse("c", 303.0), lapse("c", 400.0, 2.0)]
    assert [(x["node"], x["t"]) for x in unexplained_lapses(events, faults)] == [("a", 150.0), ("c", 400.0)]


def test_the_summary_and_warning_name_the_count_the_nodes_and_the_timing():
    assert summary([], 0.0, "fast") is None
    load = summary([{"node": "n2", "t": 12.0, "silent_s": 6.5}, {"node": "n1", "t": 13.0, "silent_s": 7.25}],
                   started=10.0, timing="fast")
    assert load == {"lapsed_leases_without_fault": 2, "nodes": ["n1", "n2"], "first_s": 2.0,
                    "max_silent_s": 7.25, "timing": "fast"}
    line = warning(load)
    assert line.startswith("warning: 2 node lease(s) lapsed with no fault (2 node(s), e.g. n1, silent up to 7.25 s")
    assert "timing `fast`" in line and "timing: gke" in line


def test_late_health_answers_are_reported_as_load_with_or_without_lapses():
    late = {"answers": 40, "passed": 37, "nodes": ["n1", "n2"], "first": 15.5}
    load = summary([], started=10.0, timing="fast", late=late)
    assert load == {"late_health_answers": {"answers": 40, "passed": 37, "nodes": 2, "first_s": 5.5},
                    "timing": "fast"}
    (line,) = warnings(load)
    assert line.startswith("warning: 40 load balancer health-check answer(s) from 2 node(s) came after the timeout")
    assert "37 passed" in line and "timing `fast`" in line
    both = summary([{"node": "n1", "t": 12.0, "silent_s": 6.5}], started=10.0, timing="fast", late=late)
    assert [w.split(" ")[2] for w in warnings(both)] == ["node", "load"]
    assert warnings({}) == []


def test_late_readiness_answers_are_reported_as_load():
    load = summary([], started=0.0, timing="fast", late_readiness={"answers": 7, "passed": 6, "nodes": ["a", "b"]})
    assert load == {"late_readiness_answers": {"answers": 7, "passed": 6, "nodes": 2}, "timing": "fast"}
    (line,) = warnings(load)
    assert line.startswith("warning: 7 readiness probe answer(s) of kubemu's own pod servers on 2 node(s)")
    assert "6 passed" in line
