"""scenarios/node-failure-gke.yaml (a ~7 minute run, not in CI) passes `kubemu check` and its
probes outlast the crash, the node monitor grace period and the eviction of GKE's timings."""
from __future__ import annotations

from pathlib import Path

import pytest

from emulator.config import check, load_scenario
from emulator.config.timing import timing_for

pytestmark = pytest.mark.unit

SCENARIO = Path(__file__).resolve().parents[3] / "scenarios" / "node-failure-gke.yaml"


def test_gke_node_failure_scenario_checks_and_its_flows_see_the_eviction():
    assert check(SCENARIO).startswith("scenario node-failure-gke: ok: topology regional-3-lb")
    s = load_scenario(SCENARIO)
    assert s.timing == "gke"
    t = timing_for(s.timing, s.timing_overrides)
    crash = next(st.fault for st in s.steps if st.KIND == "fault" and st.fault.action == "crash")
    flows = [st.traffic for st in s.steps if st.KIND == "traffic"]
    assert len(flows) == 2
    evicted_at = crash.at + t.node_monitor_grace_period + t.pod_eviction_timeout
    for f in flows:
        assert f.background and f.http.duration > evicted_at + 10   # room for the replacement to start
