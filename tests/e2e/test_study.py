"""The interleaved extra-hop study with a delay sweep (scenarios/extra-hop-sweep.yaml) through `kubemu run`.

Cluster and Local are sent interleaved request by request over 3 trials, then the
Cluster penalty is measured at one-way inter-node delays 0, 0.5, 1 and 2 ms (after a
1 us calibration point of the delay path). The model expects the penalty to grow by 4
ms per ms of delay; the scenario asserts the fitted slope within [2, 8] (the NFQUEUE
delay path adds its own latency). Here: the run passed, the slope is in the band, and
report.md, the CSV and the PNG hold what a reader needs.
"""
from __future__ import annotations

import csv
import glob
import json
import os
import subprocess

import pytest

from test_lifecycle import KUBEMU, ROOT

pytestmark = pytest.mark.e2e


def test_interleaved_study_with_delay_sweep(tmp_path):
    res = subprocess.run([*KUBEMU, "run", os.path.join(ROOT, "scenarios", "extra-hop-sweep.yaml"),
                          "--runs-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"}, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    run_dir = glob.glob(str(tmp_path / "*"))[0]
    results = json.load(open(os.path.join(run_dir, "results.json")))
    [sweep] = [s for s in results["steps"] if s["step"] == "sweep"]
    slope = sweep["slope"]
    assert 2 <= slope["slope"] <= 8 and slope["ci_low"] <= slope["slope"] <= slope["ci_high"]
    assert [c["ok"] for c in sweep["checks"]] == [True]
    assert "PASS hopd-cluster: slope of extra_hop_penalty_ms between 2 and 8" in res.stdout
    [compare, toggled] = [s for s in results["steps"] if s["step"] == "compare"]
    assert toggled["arms"]["delayed"]["impair"] == "inter_node delay 1ms" and toggled["impairments"] == "none"
    assert compare["design"]["trials"] == 3 and compare["design"]["order_seeds"][0] == "19:hop:1"
    # each arm is a flow of its own, tagged with its trial, 300 requests per trial
    recs = [json.loads(line) for line in open(os.path.join(run_dir, "flows", "hop-local.jsonl"))]
    assert sorted({r["trial"] for r in recs}) == [1, 2, 3] and len(recs) == 900
    assert {r["arm"] for r in recs} == {"local"}
    assert results["flows"]["hopd-cluster-v4"]["count"] == 600
    # the sweep's values, with the penalty growing with the delay
    rows = list(csv.DictReader(open(os.path.join(run_dir, "plots", "sweep-delay.csv"))))
    assert [r["label"] for r in rows] == ["calibration", "0 ms", "0.5 ms", "1 ms", "2 ms"]
    assert float(rows[-1]["estimate"]) > float(rows[1]["estimate"]) + 4
    assert all(float(r["ci_low"]) <= float(r["estimate"]) <= float(r["ci_high"]) for r in rows)
    assert open(os.path.join(run_dir, "plots", "sweep-delay.png"), "rb").read(4) == b"\x89PNG"
    assert os.path.exists(os.path.join(run_dir, "plots", "compare-hop.png"))
    report = open(os.path.join(run_dir, "report.md")).read()
    for text in ("## Study", "### Compare hop", "interleaved request by request", "### Sweep delay",
                 "### Compare tog", "interleaved in blocks of 20 requests",
                 "**Fitted slope**", "**Delay mechanism's own latency.**", "Cliff's delta",
                 "![Sweep delay](plots/sweep-delay.png)"):
        assert text in report, text
