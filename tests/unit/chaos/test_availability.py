"""Availability figures and phases from synthetic records and control-plane events."""
from __future__ import annotations

import pytest

from emulator.report.availability import (
    analyze, bins, endpoint_phases, flap_windows, health_phases, lifecycle_phases, metric, stale_conntrack,
)

pytestmark = pytest.mark.unit

T0 = 1000.0


def flow(outcomes: str, rate: float = 10.0, total_ms: float = 5.0) -> list[dict]:
    """One record per character ('.' ok, 't' timeout, 'r' refused) at `rate` per second from T0."""
    kinds = {".": "ok", "t": "timeout", "r": "refused"}
    return [{"t_start": T0 + i / rate, "total_ms": 1000.0 if c == "t" else total_ms, "outcome": kinds[c]}
            for i, c in enumerate(outcomes)]


def test_outage_detected_recovered_and_counted():
    recs = flow("....." + "ttrtt" + "...............")      # fault at 0.45 s after T0
    f = analyze(recs, T0 + 0.45)
    assert f["detect_s"] == pytest.approx(0.05)
    assert f["recover_s"] == pytest.approx(0.55)       # first ok after the last failure at 1.0 s
    assert f["downtime_s"] == pytest.approx(0.5)
    assert f["requests_lost"] == 5 and f["errors_by_kind"] == {"timeout": 4, "refused": 1}
    assert f["error_ratio"] == pytest.approx(5 / 25) and f["recovered"] and f["final_success_ratio"] == 1.0
    assert metric(f, "recover_ms") == pytest.approx(550.0) and metric(f, "requests_lost") == 5


def test_request_in_flight_at_the_fault_counts_and_not_recovering_is_reported():
    recs = flow("..t" + "rrrr")
    f = analyze(recs, T0 + 0.25)                        # the timeout started at 0.2 s, ended after the fault
    assert f["detect_s"] == 0.0 and f["requests_lost"] == 5
    assert not f["recovered"] and f["recover_s"] is None
    assert f["final_success_ratio"] == pytest.approx(2 / 7, abs=1e-6)   # the last second: every record
    assert metric(f, "recover_ms") == float("inf")


def test_no_failure_means_no_downtime():
    f = analyze(flow(".........."), T0 + 0.3)
    assert (f["detect_s"], f["recover_s"], f["downtime_s"], f["requests_lost"]) == (None, None, 0.0, 0)


def test_bins_of_100ms():
    b = bins(flow("..t.", rate=20), T0)
    assert [(x["t"], x["requests"], x["ok"]) for x in b] == [(0.0, 2, 2), (0.1, 2, 1)]


def _slice(ready: dict[str, bool], svc: str = "web") -> dict:
    return {"metadata": {"name": f"{svc}-x", "labels": {"kubernetes.io/service-name": svc}},
            "endpoints": [{"addresses": [ip], "nodeName": n, "conditions": {"ready": r}}
                          for ip, (n, r) in zip(("10.0.0.1", "10.0.0.2", "10.0.0.3"), ready.items())]}


def test_endpoint_phases_removed_then_restored():
    before = {"web-x": _slice({"a": True, "b": True})}
    events = [(T0 + 5.0, "MODIFIED", _slice({"a": False, "b": True})),
              (T0 + 15.0, "MODIFIED", _slice({"b": True})),
              (T0 + 16.5, "MODIFIED", _slice({"b": True, "c": True}))]
    assert endpoint_phases(events, before, {"a"}, T0) == {
        "web": {"endpoints_removed_s": 5.0, "endpoints_restored_s": 16.5}}


def test_health_and_lifecycle_phases():
    tr = [{"time": T0 - 5, "service": "default/web", "node": "a", "healthy": True, "first": True},
          {"time": T0 + 1.5, "service": "default/web", "node": "a", "healthy": False, "applied_at": T0 + 1.6},
          {"time": T0 + 17.0, "service": "default/web", "node": "c", "healthy": True, "first": False}]
    assert health_phases(tr, {"a"}, T0) == {"default/web": {"lb_steered_s": 1.5, "lb_applied_s": 1.6,
                                                            "lb_healthy_again_s": 17.0}}
    ev = [{"t": T0 + 5.1, "node": "a", "event": "node_not_ready"},
          {"t": T0 + 5.2, "node": "a", "event": "node_not_ready"},
          {"t": T0 + 15.1, "node": "a", "event": "pods_evicted"}, {"t": T0 + 3, "node": "b", "event": "node_not_ready"}]
    assert lifecycle_phases(ev, {"a"}, T0) == {"node_not_ready_s": 5.1, "pods_evicted_s": 15.1}


def test_a_lone_failure_long_after_recovery_is_a_later_blip_not_downtime():
    recs = flow("..." + "tt" + "." * 80 + "t" + "....")       # 10/s: the blip 8 s after recovery
    f = analyze(recs, T0 + 0.25, stable_s=5.0)
    assert f["recover_s"] == pytest.approx(0.25) and f["downtime_s"] == pytest.approx(0.2)
    assert f["requests_lost"] == 2 and f["later_failures"] == 1 and f["errors_by_kind"] == {"timeout": 2}
    # with a window longer than the quiet stretch, the outage lasts until after the blip
    g = analyze(recs, T0 + 0.25, stable_s=10.0)
    assert g["recover_s"] == pytest.approx(8.35) and g["later_failures"] == 0 and g["requests_lost"] == 3


def test_later_failures_that_reuse_a_failed_connects_source_port_are_attributed_to_stale_conntrack():
    recs = flow("..." + "tt" + "." * 80 + "tt" + "....")
    for i, r in enumerate(recs):
        r.update(local_ip="198.51.100.2", local_port=40000 + i, remote_ip="203.0.113.1", remote_port=80)
    recs[3]["local_port"] = recs[85]["local_port"] = 45778       # the same 4-tuple 8 s later
    f = analyze(recs, T0 + 0.25, stable_s=5.0)
    assert f["later_failures"] == 2 and f["later_stale_conntrack"] == 1
    # past the SYN_SENT timeout (120 s) the old entry is gone: not attributed
    recs[85]["t_start"] = recs[3]["t_start"] + 121
    assert stale_conntrack(sorted(recs, key=lambda r: r["t_start"])) == set()
    # a connect that was answered (connect_ms set) left no SYN_SENT entry behind
    recs[85]["t_start"] = T0 + 8.5
    recs[3]["connect_ms"] = 1.0
    assert analyze(recs, T0 + 0.25, stable_s=5.0)["later_stale_conntrack"] == 0


def test_later_failures_in_a_surviving_nodes_health_check_flap_are_counted_apart():
    """As in a loaded CI run: a node that did not fail answered its Local health checks late,
    was held unhealthy for 0.8 s, and the load balancer had no backend meanwhile."""
    ev = [{"time": T0 + 0.3, "service": "default/web-local", "node": "b", "healthy": False},
          {"time": T0 + 8.0, "service": "default/web-local", "node": "c", "healthy": False},
          {"time": T0 + 8.8, "service": "default/web-local", "node": "c", "healthy": True},
          {"time": T0 + 9.5, "service": "default/web-cluster", "node": "a", "healthy": False}]
    flaps = flap_windows(ev, {"b"}, T0 + 0.25)
    assert flaps == [(T0 + 8.0, T0 + 8.8), (T0 + 9.5, float("inf"))]   # b failed: not a flap
    assert flap_windows(ev, {"b"}, T0 + 9.0) == [(T0 + 9.5, float("inf"))]
    recs = flow("..." + "tt" + "." * 78 + "tt" + "." * 8 + "t" + "...")   # 10/s: 8.3, 8.4 and 9.3 s
    f = analyze(recs, T0 + 0.25, stable_s=5.0, flaps=flaps)
    assert f["later_failures"] == 3 and f["later_healthcheck_flap"] == 2 and f["later_stale_conntrack"] == 0
    assert analyze(recs, T0 + 0.25, stable_s=5.0)["later_healthcheck_flap"] == 0
