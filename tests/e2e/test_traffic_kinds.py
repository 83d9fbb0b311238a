"""tcp, udp, ping and iperf3 steps and background flows, end to end: one `kubemu run` of
scenarios/traffic-kinds.yaml, then what its records say."""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import time

import pytest

from test_lifecycle import KUBEMU, ROOT, leftovers, start_run, wait_for_line

pytestmark = pytest.mark.e2e
SCENARIO = os.path.join(ROOT, "scenarios", "traffic-kinds.yaml")


class Run:
    """A finished run: results.json and the records of each flow."""

    def __init__(self, run_dir: str, output: str) -> None:
        self.dir, self.output = run_dir, output
        with open(os.path.join(run_dir, "results.json")) as f:
            self.results = json.load(f)

    def records(self, flow: str) -> list[dict]:
        with open(os.path.join(self.dir, "flows", f"{flow}.jsonl")) as f:
            return [json.loads(line) for line in f if line.strip()]

    def step(self, flow: str) -> dict:
        return next(s for s in self.results["steps"] if s["step"] == "traffic" and s["flow"] == flow)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    runs = tmp_path_factory.mktemp("traffic-kinds")
    res = subprocess.run([*KUBEMU, "run", SCENARIO, "--runs-dir", str(runs)], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "COLUMNS": "200"}, timeout=600)
    dirs = glob.glob(str(runs / "*" / "results.json"))
    assert dirs, res.stdout + res.stderr
    r = Run(os.path.dirname(dirs[0]), res.stdout + res.stderr)
    r.results["returncode"] = res.returncode
    return r


def test_scenario_passes_every_assertion(run):
    assert run.results["returncode"] == 0, run.output
    checks = [c for s in run.results["steps"] if s["step"] == "assert" for c in s["checks"]]
    assert len(checks) == 15 and all(c["ok"] for c in checks), checks


def test_tcp_refused_versus_timeout(run):
    closed = run.records("tcp-closed-port")      # a pod IP, a port nobody listens on: RST
    no_endpoints = run.records("tcp-no-endpoints")   # a Service without endpoints: kube-proxy REJECT
    dropped = run.records("tcp-dropped")         # an address nothing answers for: no reply at all
    assert [r["outcome"] for r in closed] == ["refused"] * 5
    assert {r["errno"] for r in closed + no_endpoints} == {"ECONNREFUSED"}
    assert [r["outcome"] for r in no_endpoints] == ["refused"] * 5
    assert [r["outcome"] for r in dropped] == ["timeout"] * 2
    assert all(r["total_ms"] >= 900 for r in dropped)   # waited for the 1 s timeout, not refused at once


def test_tcp_connects_and_reads_a_reply(run):
    ok = run.records("tcp-ok")
    assert [r["outcome"] for r in ok] == ["ok"] * 10
    assert all(r["connect_ms"] is not None and r["reply"].startswith("HTTP/1.") for r in ok)
    assert all(r["pod"].startswith("web-") for r in ok)


def test_udp_reply_names_the_pod_and_the_client_ip(run):
    recs = run.records("udp-pods")
    nodes = {n["name"] for n in run.results["topology"]["nodes"]}
    assert [r["outcome"] for r in recs] == ["ok"] * 20
    assert len({r["pod"] for r in recs}) == 2 and all(r["pod"].startswith("web-") for r in recs)
    assert {r["node"] for r in recs} <= nodes
    # from a pod to a ClusterIP nothing rewrites the source: the pod saw the client pod's own IP
    assert all(r["client_ip_seen"] == r["local_ip"] for r in recs)


def test_ping_reaches_the_pod_without_loss(run):
    recs = run.records("ping-pod")
    iperf = run.records("iperf")[0]
    assert [r["seq"] for r in recs] == list(range(1, 11))
    assert all(r["outcome"] == "ok" and r["total_ms"] > 0 for r in recs)
    assert {r["remote_ip"] for r in recs} == {iperf["remote_ip"]}   # the iperf-server pod's IP
    assert run.results["flows"]["ping-pod"]["success_ratio"] == 1.0


def test_iperf3_moves_real_bytes(run):
    [rec] = run.records("iperf")
    assert rec["outcome"] == "ok" and rec["bits_per_second"] > 0
    assert rec["received_bytes"] > 0 and rec["received_bytes"] <= rec["sent_bytes"]
    assert len(rec["intervals_bps"]) >= 2
    assert run.results["flows"]["iperf"]["bits_per_second"] > 0


def test_background_flows_run_at_once_and_are_awaited(run):
    def span(flow):
        recs = run.records(flow)
        return min(r["t_start"] for r in recs), max(r["t_start"] + r["total_ms"] / 1000 for r in recs)
    (a0, a1), (b0, b1) = span("bg-http"), span("bg-udp")
    assert max(a0, b0) < min(a1, b1) - 1.0            # both were sending at the same time for > 1 s
    for flow in ("bg-http", "bg-udp"):
        step, summary = run.step(flow), run.results["flows"][flow]
        assert step["background"] is True and summary["background"] is True
        assert summary["count"] == step["requests"] > 0 and summary["ended"] >= summary["started"]
    # the foreground steps after them started while they were still running
    assert run.step("tcp-ok")["started"] < min(a1, b1)
    awaited = next(s for s in run.results["steps"] if s["step"] == "await")
    assert awaited["flows"] == ["bg-http", "bg-udp"]
    assert run.step("tcp-ok")["background"] is False


def _generators(run_id: str) -> list[str]:
    """Command lines of the run's traffic generator processes."""
    out = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode()
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().decode(errors="replace")
        except OSError:
            continue
        if "emulator.traffic." in cmd and f"KUBEMU_RUN_ID={run_id}" in env:
            out.append(cmd)
    return out


def test_ctrl_c_while_background_flows_run_leaves_nothing(tmp_path):
    proc, run_id = start_run(tmp_path, SCENARIO)
    wait_for_line(proc, r"step 6/")                    # both background flows have started
    deadline = time.time() + 10
    while not any("http_load" in c for c in _generators(run_id)) and time.time() < deadline:
        time.sleep(0.05)
    assert any("http_load" in c for c in _generators(run_id))   # and are sending (for 3 s)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert leftovers(run_id) == [] and _generators(run_id) == []
