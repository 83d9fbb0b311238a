"""The chaos part of report.md and the timeline markers, from a results dict."""
from __future__ import annotations

import pytest

from emulator.report.chaos_md import markers, section
from tests.run_results import results_from

pytestmark = pytest.mark.unit

RAW = {"steps": [
    {"step": "fault", "name": "crash-b", "action": "crash", "nodes": ["b"], "t": 1010.0, "t_steps": 4.5},
    {"step": "availability", "flow": "probe", "fault": "crash-b", "fault_t": 1010.0,
     "figures": {"requests": 600, "requests_lost": 61, "errors_by_kind": {"timeout": 61}, "detect_s": 0.01,
                 "recover_s": 4.91, "downtime_s": 4.9, "later_failures": 0, "final_success_ratio": 1.0},
     "phases": {"node_not_ready_s": 4.86, "services": {"web": {"lb_steered_s": 2.93, "endpoints_restored_s": 15.03}}}},
]}
RESULTS = results_from(RAW)


def test_section_lists_faults_figures_and_phases():
    text = "\n".join(section(RESULTS))
    assert "| crash-b | crash | b | 4.50 |" in text
    assert "| probe | crash-b | 600 | 61 | timeout 61 | 0.01 | 4.91 | 4.90 | 0 | 1.00 |" in text
    assert "node not ready 4.86 s" in text and "| web | 2.93 | - | - | 15.03 |" in text
    assert section(results_from({"steps": []})) == []


def test_markers_place_the_fault_and_the_phases_on_the_run_clock():
    assert markers(RESULTS, 1000.0) == [(10.0, "crash-b"), (pytest.approx(14.86), "NotReady"),
                                        (pytest.approx(12.93), "web: LB steered"),
                                        (pytest.approx(25.03), "web: replacements ready")]


def test_later_failures_name_those_a_stale_conntrack_entry_explains():
    import copy
    res = copy.deepcopy(RAW)
    res["steps"][1]["figures"].update(later_failures=3, later_stale_conntrack=2)
    assert "| 4.90 | 3 (2) | 1.00 |" in "\n".join(section(results_from(res)))


def test_phases_against_the_timing_profile():
    import copy

    from emulator.config.timing import timing_for
    from emulator.report.expected_phases import expected
    res = copy.deepcopy(RAW)
    res["timing"] = {"profile": "fast", **timing_for("fast").model_dump()}
    res["steps"][1]["phases"]["expected"] = expected(timing_for("fast"), {"web": "Cluster"})
    text = "\n".join(section(results_from(res)))
    assert "Against the timing profile (fast)" in text
    assert "| node not ready | 4.86 | 4.00-5.20 | yes |" in text
    assert "| web (Cluster) steered away | 2.93 | 2.50-3.50 | yes |" in text
    assert "node not ready 4.86 s" in text and "expected" not in text.split("Phases of")[1].split("\n")[0]
