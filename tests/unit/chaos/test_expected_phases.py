"""The phase windows a timing profile predicts for a node crash, and the 20% match."""
import pytest

from emulator.config.timing import timing_for
from emulator.report import expected_phases as ep

pytestmark = pytest.mark.unit


def test_gke_windows_are_the_real_defaults():
    e = ep.expected(timing_for("gke"), {"web-cluster": "Cluster", "web-local": "Local"})
    assert e["node_not_ready_s"] == [40, 55]                   # grace 50 s, lease 10 s, monitor 5 s
    assert e["pods_evicted_s"] == [340, 360]                   # + tolerationSeconds 300
    assert e["services"]["web-cluster"]["lb_steered_s"] == [17, 25]   # 3 failures 8 s apart, 1 s timeout
    assert e["services"]["web-local"]["lb_steered_s"] == [4, 7]       # 2 failures 3 s apart


def test_fast_windows_scale_down():
    e = ep.expected(timing_for("fast"), {"a": "Local"})
    assert e["node_not_ready_s"] == [4.0, pytest.approx(5.2)]
    assert e["services"]["a"]["lb_steered_s"] == [1.0, 1.5]


def test_within_widens_by_twenty_percent_of_the_edges():
    assert ep.within(1.79, [1.0, 1.5]) and not ep.within(1.81, [1.0, 1.5])
    assert ep.within(0.8, [1.0, 1.5]) and not ep.within(0.79, [1.0, 1.5])
    assert not ep.within(None, [1.0, 1.5])


def test_comparison_marks_a_phase_outside_its_window():
    phases = {"node_not_ready_s": 4.76, "pods_evicted_s": 30.0,
              "services": {"web-local": {"lb_steered_s": 1.74}},
              "expected": ep.expected(timing_for("fast"), {"web-local": "Local"})}
    rows = {name: ok for name, _, _, ok in ep.comparison(phases)}
    assert rows == {"node not ready": True, "pods evicted": False, "web-local (Local) steered away": True}
