"""The extra-hop study (scenarios/extra-hop.yaml) end to end through `kubemu run`.

Without delay, Cluster's shares must land within 5 points of 4/6 (entered a node
without a pod) and 5/6 (served by another node): the scenario sends 3000 requests, so
5 points are more than 5 binomial standard deviations (over 4 with the load balancer's
somewhat wider spread). Local: no extra hop, client IP
kept. With 1 ms one-way inter-node delay (netem or the NFQUEUE fallback) the extra-hop
penalty grows by about 4 ms (two round trips); asserted in a wide band.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess

import pytest

from emulator.runner.cleanup import run_processes
from test_lifecycle import KUBEMU, ROOT

pytestmark = pytest.mark.e2e


def test_extra_hop_study(tmp_path):
    res = subprocess.run([*KUBEMU, "run", os.path.join(ROOT, "scenarios", "extra-hop.yaml"),
                          "--runs-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"}, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr     # every assertion of the scenario held
    run_dir = glob.glob(str(tmp_path / "*"))[0]
    results = json.load(open(os.path.join(run_dir, "results.json")))
    checks = {(s["flow"], c["metric"]): c["actual"] for s in results["steps"] if s["step"] == "assert"
              for c in s["checks"]}
    assert abs(checks[("via-cluster", "entered_without_pod_ratio")] - 4 / 6) <= 0.05
    assert abs(checks[("via-cluster", "extra_hop_ratio")] - 5 / 6) <= 0.05
    assert checks[("via-local", "extra_hop_ratio")] == 0
    assert checks[("via-local", "client_ips_seen")] == [next(c["ip"] for c in results["topology"]["clients"]
                                                              if c["name"] == "inet-1")]
    assert 2.5 <= checks[("via-cluster-delay", "extra_hop_penalty_ms")] <= 15
    [impair] = [s for s in results["steps"] if s["step"] == "impair"]
    enforced = impair["classes"]["inter_node"]["enforced_by"]
    assert enforced in ("netem", "nfqueue delay") and impair["classes"]["inter_node"]["hosts"] == 6
    assert f"link impairment inter_node: delay 1ms on 6 hosts, enforced by {enforced}" in res.stdout
    report = open(os.path.join(run_dir, "report.md")).read()
    assert "## Link impairments" in report and "## Extra-hop study" in report
    assert "the extra-hop penalty is" in report and "it grew by" in report
    assert run_processes(results["run_id"]) == []          # the delay processes are gone
