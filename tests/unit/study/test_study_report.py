"""Study report parts: the compare-runs table, the timeline's phase bands and rolling success,
the http generator's interleaving options, and report.md/CSV/PNG of a synthetic sweep run."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from emulator.report import chaos_md, plots
from tests.run_results import results_from
from emulator.report.compare_runs import compare_runs, table_rows
from emulator.traffic import http_load

pytestmark = pytest.mark.unit


def flow(ms: list[float], fail: int = 0) -> list[dict]:
    return [{"outcome": "ok", "total_ms": m, "t_start": 100.0 + i} for i, m in enumerate(ms)] + \
        [{"outcome": "timeout", "total_ms": 2000.0, "t_start": 200.0}] * fail


def test_compare_runs_matches_flows_by_name():
    a = {"web": flow([1.0, 2.0, 3.0, 4.0]), "only-a": flow([1.0])}
    b = {"web": flow([5.0, 6.0, 7.0, 8.0], fail=1), "only-b": flow([1.0])}
    res = compare_runs(a, b)
    assert res["only_a"] == ["only-a"] and res["only_b"] == ["only-b"]
    [row] = res["rows"]
    assert (row["n_a"], row["n_b"], row["success_b"], row["diff_ms"], row["cliffs_delta"]) == (4, 5, 0.8, 4.0, 1.0)
    cells = table_rows(res)[0]
    assert cells[0] == "web" and cells[3] == "2.50 → 6.50" and cells[6] == "+4.00" and "large" in cells[8]


def test_phase_bands_follow_the_node_lifecycle():
    results = results_from({"steps": [
        {"step": "fault", "name": "crash-b", "action": "crash", "t": 110.0},
        {"step": "availability", "fault_t": 110.0, "phases": {
            "node_not_ready_s": 4.0, "pods_evicted_s": 14.0,
            "services": {"web": {"lb_steered_s": 1.5, "endpoints_restored_s": 15.0}}}},
        {"step": "fault", "name": "recover-b", "action": "recover", "t": 140.0}]})
    ph = chaos_md.phase_bands(results, 100.0)
    assert ph["faults"] == [(10.0, "crash-b (crash)"), (40.0, "recover-b (recover)")]
    assert [(a, b) for a, b, _ in ph["bands"]] == [(10.0, 14.0), (14.0, 24.0), (24.0, 25.0), (25.0, None)]
    assert ph["events"] == [(11.5, "web: load balancer steered away")]


def test_rolling_success_window_and_rug_figure():
    recs = [{"t_start": 100 + i * 0.05, "outcome": "ok" if not 40 <= i < 60 else "timeout"} for i in range(200)]
    assert plots.window_for(recs) == pytest.approx(1.0, rel=0.01)          # 20 requests at 20/s
    t, rate, ratio = plots.rolling(recs, 100.0, 1.0)
    assert ratio[np.argmin(np.abs(t - 2.95))] <= 0.05                    # the window inside the outage
    assert ratio[-1] == 1.0 and rate[-1] == pytest.approx(20, abs=1)
    fig = plots.timeline({"probe": recs}, 100.0, phases={"faults": [(2.0, "crash")], "bands": [(2.0, None, "down")],
                                                         "events": []})
    assert [h.get_label() for h in fig.legends[0].legend_handles] == ["down", "fault crash"]


def test_http_generator_refuses_bad_schedules(capsys):
    for argv in (["--url", "http://a/", "--url", "http://b/", "--requests", "2", "--out", "-"],
                 ["--url", "http://a/", "--url", "http://b/", "--schedule", "012", "--requests", "3", "--out", "-"],
                 ["--url", "http://a/", "--url", "http://b/", "--schedule", "01", "--requests", "3", "--out", "-"],
                 ["--url", "http://a/", "--schedule", "0", "--requests", "1", "--out", "-"]):
        with pytest.raises(SystemExit) as e:
            http_load.main(argv)
        assert e.value.code == 2


def test_sweep_report_csv_and_plot_from_stored_records(tmp_path):
    from emulator.report.render import write_report
    nodes = [{"name": "n1", "zone": "z", "ip": "10.0.0.1", "pod_cidr": "10.1.1.0/24"},
             {"name": "n2", "zone": "z", "ip": "10.0.0.2", "pod_cidr": "10.1.2.0/24"}]
    rng = np.random.default_rng(5)
    (tmp_path / "flows").mkdir()
    points = []
    for i, d in enumerate((0.0, 0.5, 1.0, 2.0)):
        arms = {}
        for arm in ("cluster", "local"):
            name = f"hop-{arm}-v{i + 1}"
            recs = []
            for t in (1, 2, 3):
                for k in range(60):
                    extra = arm == "cluster" and k % 3 != 0
                    ms = 2 + rng.normal(0, 0.2) + (4 * d + 0.5 if extra else 0)
                    recs.append({"trial": t, "arm": arm, "outcome": "ok", "total_ms": ms, "t_start": 1000.0 + k,
                                 "client_ip_seen": "10.0.0.1", "node": "n2" if extra else "n1"})
            (tmp_path / "flows" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
            arms[arm] = {"flow": name, "url": "http://x/"}
        points.append({"suffix": f"-v{i + 1}", "value": d / 1000, "shown": d, "label": f"{d:g} ms",
                       "in_force": "none", "compares": [{"step": "compare", "name": f"hop-v{i + 1}",
                                                         "from": "host/inet", "arms": arms,
                                                         "design": {"seed": 1, "trials": 3}}]})
    results = {"scenario": "s", "run_id": "r", "run_dir": str(tmp_path), "started": 1000.0, "ok": True,
               "topology": {"nodes": nodes, "clients": [], "fabric": {}},
               "steps": [{"step": "sweep", "name": "delay", "parameter": "inter_node.delay", "unit": "ms",
                          "points": points, "slope": {"flow": "hop-cluster", "metric": "extra_hop_penalty_ms",
                                                      "expected": 4}, "flow": "hop-cluster",
                          "checks": [{"metric": "slope of extra_hop_penalty_ms", "expected": "between 2 and 8",
                                      "actual": 4.0, "ok": True}], "ok": True}]}
    (tmp_path / "results.json").write_text(json.dumps(results))
    paths = write_report(tmp_path)
    md = Path(paths.markdown).read_text()
    assert "### Sweep delay: inter_node.delay" in md and re.search(r"\*\*Fitted slope\*\*: (3\.9|4\.0)", md)
    assert "The expected slope 4 is inside the interval." in md
    assert "| hop-cluster | slope of extra_hop_penalty_ms | between 2 and 8 |" in md
    rows = (tmp_path / "plots" / "sweep-delay.csv").read_text().splitlines()
    assert rows[0].startswith("parameter,value,unit") and len(rows) == 5 and rows[4].split(",")[1] == "2.0"
    assert float(rows[4].split(",")[6]) == pytest.approx(8.5, abs=0.3)
    assert (tmp_path / "plots" / "sweep-delay.png").read_bytes()[:4] == b"\x89PNG"
    assert "Timeline" not in paths.plots       # sweep flows have their own plot, not the timeline


def test_kubemu_compare_prints_both_runs_and_refuses_a_non_run(tmp_path):
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[3]
    for name, base in (("a", 1.0), ("b", 3.0)):
        d = tmp_path / name / "flows"
        d.mkdir(parents=True)
        (tmp_path / name / "results.json").write_text(json.dumps({"scenario": "s", "run_id": name, "started": 0.0,
                                                                  "run_dir": str(tmp_path / name),
                                                                  "flows": {"web": {}}}))
        (d / "web.jsonl").write_text("".join(json.dumps(r) + "\n" for r in flow([base + 0.1 * i for i in range(20)])))
    r = subprocess.run([sys.executable, "-m", "emulator.cli", "compare", str(tmp_path / "a"), str(tmp_path / "b")],
                       capture_output=True, text=True, cwd=root, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "web" in r.stdout and "1.95 → 3.95" in r.stdout and "+2.00" in r.stdout and "large" in r.stdout
    r = subprocess.run([sys.executable, "-m", "emulator.cli", "compare", str(tmp_path / "a"), str(tmp_path)],
                       capture_output=True, text=True, cwd=root)
    assert r.returncode == 2 and "is not a run directory" in r.stderr and "Traceback" not in r.stderr
