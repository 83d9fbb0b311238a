"""Cluster DNS and the expressive scenario steps, end to end: one `kubemu run` each of
scenarios/dns.yaml and scenarios/scenario-format.yaml, then what their records say."""
from __future__ import annotations

import glob
import json
import os
import subprocess

import pytest

from test_lifecycle import KUBEMU, ROOT

pytestmark = pytest.mark.e2e


class Run:
    """A finished run: results.json and the records of each flow."""

    def __init__(self, run_dir: str, output: str, returncode: int) -> None:
        self.dir, self.output, self.returncode = run_dir, output, returncode
        with open(os.path.join(run_dir, "results.json")) as f:
            self.results = json.load(f)

    def records(self, flow: str) -> list[dict]:
        with open(os.path.join(self.dir, "flows", f"{flow}.jsonl")) as f:
            return [json.loads(line) for line in f if line.strip()]

    def checks(self) -> list[dict]:
        return [c for s in self.results["steps"] if s["step"] == "assert" for c in s["checks"]]


def run_scenario(tmp_path_factory, name: str) -> Run:
    runs = tmp_path_factory.mktemp(name)
    res = subprocess.run([*KUBEMU, "run", os.path.join(ROOT, "scenarios", f"{name}.yaml"), "--runs-dir", str(runs)],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=900)
    dirs = glob.glob(str(runs / "*" / "results.json"))
    assert dirs, res.stdout + res.stderr
    return Run(os.path.dirname(dirs[0]), res.stdout + res.stderr, res.returncode)


@pytest.fixture(scope="module")
def dns_run(tmp_path_factory) -> Run:
    return run_scenario(tmp_path_factory, "dns")


@pytest.fixture(scope="module")
def format_run(tmp_path_factory) -> Run:
    return run_scenario(tmp_path_factory, "scenario-format")


def test_dns_scenario_passes_every_assertion(dns_run):
    assert dns_run.returncode == 0, dns_run.output
    checks = dns_run.checks()
    assert len(checks) == 15 and all(c["ok"] for c in checks), checks


def test_dns_answers_as_kube_dns_gives_them(dns_run):
    """The records dig saw: the answers kube-dns returns for the same objects (its spec)."""
    web_ip = dns_run.records("web-a")[-1]["answers"]
    assert len(web_ip) == 1 and dns_run.records("web-ptr")[0]["answers"] == ["web.default.svc.cluster.local"]
    a = dns_run.records("db-a")[-1]
    assert a["rcode"] == "NOERROR" and len(a["answers"]) == 2 and a["matched"]
    srv = dns_run.records("db-srv")[0]
    assert [r[1] for r in srv["records"]] == ["SRV", "SRV"]
    assert sorted(r[2].split()[3] for r in srv["records"]) == ["db-0.db.default.svc.cluster.local",
                                                              "db-1.db.default.svc.cluster.local"]
    cname = dns_run.records("ext-cname")[0]["records"]
    assert cname == [["ext.default.svc.cluster.local", "CNAME", "www.example.com"]]
    assert [r["rcode"] for r in dns_run.records("nxdomain")] == ["NXDOMAIN", "NXDOMAIN"]


def test_an_unready_pod_leaves_the_headless_answer(dns_run):
    before = set(dns_run.records("db-a")[-1]["answers"])
    after = dns_run.records("db-after")
    assert after[-1]["matched"] and len(set(after[-1]["answers"])) == 1
    assert set(after[-1]["answers"]) < before
    # publishNotReadyAddresses keeps the unready pod
    assert set(dns_run.records("db-all-after")[0]["answers"]) == before


def test_format_scenario_passes_every_assertion(format_run):
    assert format_run.returncode == 0, format_run.output
    checks = format_run.checks()
    assert len(checks) == 16 and all(c["ok"] for c in checks), checks


def test_format_steps_records(format_run):
    steps = format_run.results["steps"]
    saved = {s["name"]: s["value"] for s in steps if s["step"] == "save"}
    assert saved["web-ip"].startswith("10.8.") and float(saved["to-web-p50"]) > 0
    waits = [s for s in steps if s["step"] == "wait" and "until" in s]
    assert [w["until"].split()[0] for w in waits] == ["endpointslices?service=web", "deployment/web", "pod/other"]
    every = format_run.records("from-all-web")
    assert len({r["source_pod"] for r in every}) == 3 and len(every) == 15     # 5 requests from each web pod
    turn = format_run.records("from-spread-in-turn")   # one pod after the other, by name
    pods = [r["source_pod"] for r in turn]
    assert len(turn) == 6 and pods == sorted(pods) and len(set(pods)) == 3
    one = format_run.records("from-web-0")
    assert len({r["source_pod"] for r in one}) == 1 and len(one) == 3
    # anti-affinity: the three web pods answered from three different nodes
    assert len({r["node"] for r in format_run.records("to-web")}) == 3
