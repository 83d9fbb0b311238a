"""The pure parts of studies: interleaving schedules, bootstrap intervals, effect sizes, slopes."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from emulator.records.results import TopologyNode
from emulator.report import design, study

pytestmark = pytest.mark.unit


def test_request_schedule_is_balanced_and_alternates_in_every_round():
    order = design.schedule(2, 100, "request", 10, "19:hop:1")
    assert len(order) == 200 and order.count(0) == order.count(1) == 100
    assert all(sorted(order[i:i + 2]) == [0, 1] for i in range(0, 200, 2))   # each round holds both arms
    assert order != [0, 1] * 100 and order != [1, 0] * 100                   # the order within rounds varies


def test_block_schedule_runs_blocks_of_each_arm_and_a_short_last_block():
    order = design.schedule(3, 25, "block", 10, 7)
    assert [order.count(a) for a in range(3)] == [25, 25, 25]
    runs = design.blocks(order)
    assert sum(n for _, n in runs) == 75
    assert all(n in (5, 10, 15, 20) for _, n in runs)   # two blocks of one arm may meet across rounds
    assert {a for a, _ in runs[:3]} <= {0, 1, 2}


def test_schedule_is_replayable_from_its_seed_and_changes_with_it():
    assert design.schedule(2, 50, "request", 1, "s:1") == design.schedule(2, 50, "request", 1, "s:1")
    assert design.schedule(2, 50, "request", 1, "s:1") != design.schedule(2, 50, "request", 1, "s:2")
    with pytest.raises(ValueError):
        design.schedule(0, 5, "request", 1, 1)


def test_blocks_merge_runs():
    assert design.blocks([0, 0, 1, 0, 1, 1]) == [(0, 2), (1, 1), (0, 1), (1, 2)]


def test_bootstrap_interval_holds_a_clear_shift_and_is_seeded():
    rng = np.random.default_rng(1)
    trials = [(rng.normal(10, 1, 80), rng.normal(15, 1, 80)) for _ in range(3)]
    draws = design.bootstrap(trials, "x", samples=500)
    lo, hi = design.interval(draws)
    assert lo < 5 < hi and lo > 4 and hi < 6
    assert np.array_equal(draws, design.bootstrap(trials, "x", samples=500))
    assert not np.array_equal(draws, design.bootstrap(trials, "y", samples=500))


def test_bootstrap_widens_with_spread_between_trials():
    rng = np.random.default_rng(2)
    same = [(rng.normal(0, 1, 60), rng.normal(1, 1, 60)) for _ in range(4)]
    drift = [(a, b + k) for k, (a, b) in enumerate(same)]   # the b arm alone drifts between trials
    w_same = np.subtract(*design.interval(design.bootstrap(same, 1, 400))[::-1])
    w_drift = np.subtract(*design.interval(design.bootstrap(drift, 1, 400))[::-1])
    assert w_drift > 2 * w_same


def test_bootstrap_without_values_gives_nan():
    assert np.isnan(design.interval(design.bootstrap([([], [1.0])], 1, 10))).all()


def test_cliffs_delta_extremes_ties_and_agreement_with_mann_whitney():
    assert design.cliffs_delta([1, 2, 3], [4, 5, 6]) == 1.0
    assert design.cliffs_delta([4, 5, 6], [1, 2, 3]) == -1.0
    assert design.cliffs_delta([1, 2], [1, 2]) == 0.0
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 50), rng.normal(0.5, 1, 40)
    u = mannwhitneyu(b, a).statistic
    assert design.cliffs_delta(a, b) == pytest.approx(2 * u / (a.size * b.size) - 1)
    assert design.delta_words(0.1) == "negligible" and design.delta_words(-0.5) == "large"


def test_slope_and_bootstrap_slopes():
    assert design.slope([0, 1, 2], [1, 5, 9]) == pytest.approx((4.0, 1.0))
    assert np.isnan(design.slope([1, 1], [1, 2])[0])
    draws = np.array([[1, 5, 9], [0, 4, 8], [1, 3, 5]], dtype=float)
    assert design.slopes([0, 1, 2], draws) == pytest.approx([4.0, 4.0, 2.0])


def test_slope_fit_interval_from_point_draws():
    rng = np.random.default_rng(4)
    ests = []
    for x in (0, 0.5, 1, 2):
        trials = [(rng.normal(2, 0.3, 60), rng.normal(2 + 4 * x, 0.3, 200)) for _ in range(3)]
        draws = design.bootstrap(trials, x, 300)
        ests.append({"value": design.median_diff(trials), "draws": draws})
    fit = study.slope_fit([0, 0.5, 1, 2], ests, expected=4)
    assert fit["ci_low"] < 4 < fit["ci_high"] and fit["ci_contains_expected"] is True
    assert fit["slope"] == pytest.approx(4, abs=0.3)
    assert study.slope_fit([0, 1], ests[:2], expected=9)["ci_contains_expected"] is False


NODES = [TopologyNode(name="n1", zone=None, ip="10.0.0.1", pod_cidr="10.1.1.0/24"),
         TopologyNode(name="n2", zone=None, ip="10.0.0.2", pod_cidr="10.1.2.0/24")]


def rec(trial: int, ms: float, entered: str, served: str) -> dict:
    ip = {"n1": "10.0.0.1", "n2": "10.0.0.2"}[entered]
    return {"trial": trial, "outcome": "ok", "total_ms": ms, "client_ip_seen": ip, "node": served}


def test_estimate_groups_direct_and_extra_hop_per_trial():
    recs = [rec(t, 1.0 + t, "n1", "n1") for t in (1, 2) for _ in range(20)] + \
           [rec(t, 4.0 + t, "n1", "n2") for t in (1, 2) for _ in range(20)]
    e = study.estimate(recs, NODES, "extra_hop_penalty_ms", "s")
    assert e["per_trial"] == [3.0, 3.0] and e["value"] == 3.0 and e["trials"] == 2
    assert (e["ci_low"], e["ci_high"]) == (3.0, 3.0)
    assert study.estimate(recs, NODES, "p50_ms", "s")["per_trial"] == [3.5, 4.5]


def test_arm_difference_pairs_trials():
    a = [{"trial": t, "outcome": "ok", "total_ms": 2.0 * t + 0.01 * i} for t in (1, 2, 3) for i in range(30)]
    b = [{**r, "total_ms": r["total_ms"] + 1.0} for r in a]
    d = study.arm_difference(a, b, "s", "local", "cluster")
    assert d["per_trial"] == pytest.approx([1.0, 1.0, 1.0]) and 0.5 < d["ci_low"] <= 1.0 <= d["ci_high"] < 1.5
    assert d["cliffs_delta"] > 0 and d["b"] == "cluster"


def test_assert_on_interval_ends_matches_the_report(tmp_path):
    from types import SimpleNamespace

    from emulator.config.scenario import AssertStep
    from emulator.report import stats
    from emulator.report.study_md import compare_analysis
    from emulator.runner.steps.assert_ import run_assert
    recs = [rec(t, 1.0 + 0.01 * k, "n1", "n1") for t in (1, 2, 3) for k in range(30)] + \
           [rec(t, 3.0 + 0.01 * k, "n1", "n2") for t in (1, 2, 3) for k in range(60)]
    ctx = SimpleNamespace(flows=SimpleNamespace(runs={}), records={"hop-a": recs},
                          summaries={"hop-a": stats.summarize(recs)}, scenario=SimpleNamespace(seed=8),
                          cluster=SimpleNamespace(plan=SimpleNamespace(nodes=NODES)))
    step = AssertStep.model_validate({"assert": {"flow": "hop-a", "extra_hop_penalty_ms_ci_low": ">= 1.5",
                                                 "extra_hop_penalty_ms_ci_high": "<= 1.5",
                                                 "p50_ms_ci_high": "< 100"}})
    out = run_assert(step, ctx)
    got = {c["metric"]: c for c in out["checks"]}
    an = compare_analysis({"design": {"seed": 8}, "arms": {"a": {"flow": "hop-a"}}}, {"hop-a": recs}, NODES)
    assert got["extra_hop_penalty_ms_ci_low"]["actual"] == an["arms"]["a"]["penalty"]["ci_low"]
    assert got["p50_ms_ci_high"]["actual"] == an["arms"]["a"]["p50"]["ci_high"]
    assert got["extra_hop_penalty_ms_ci_low"]["ok"] and not got["extra_hop_penalty_ms_ci_high"]["ok"]
    assert out["ok"] is False


def test_assert_minus_bounds_the_difference_between_two_flows():
    from types import SimpleNamespace

    from emulator.config.scenario import AssertStep
    from emulator.report import stats
    from emulator.runner.steps.assert_ import run_assert
    plain = [rec(t, 1.0, "n1", "n1") for t in (1, 2) for _ in range(10)] + \
            [rec(t, 1.5, "n1", "n2") for t in (1, 2) for _ in range(30)]
    delayed = [rec(t, 1.0, "n1", "n1") for t in (1, 2) for _ in range(10)] + \
              [rec(t, 5.5, "n1", "n2") for t in (1, 2) for _ in range(30)]
    flows = {"tog-plain": plain, "tog-delayed": delayed}
    ctx = SimpleNamespace(flows=SimpleNamespace(runs={}), records=flows,
                          summaries={k: stats.summarize(v) for k, v in flows.items()}, scenario=SimpleNamespace(seed=8),
                          cluster=SimpleNamespace(plan=SimpleNamespace(nodes=NODES)))
    step = AssertStep.model_validate({"assert": {"flow": "tog-delayed", "minus": "tog-plain",
                                                 "extra_hop_penalty_ms": ">= 3.5", "p50_ms": ">= 5"}})
    out = run_assert(step, ctx)
    got = {c["metric"]: c for c in out["checks"]}
    assert got["extra_hop_penalty_ms minus tog-plain's"]["actual"] == pytest.approx(4.0)
    assert got["extra_hop_penalty_ms minus tog-plain's"]["ok"] is True
    assert got["p50_ms minus tog-plain's"]["actual"] == pytest.approx(4.0) and out["ok"] is False
    with pytest.raises(Exception, match="has not run"):
        run_assert(AssertStep.model_validate({"assert": {"flow": "tog-plain", "minus": "other", "p50_ms": "> 0"}}),
                   ctx)
