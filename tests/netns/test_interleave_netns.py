"""The HTTP generator's interleaved arms in real namespaces: request `seq` goes to the URL the schedule names."""
from __future__ import annotations

import sys

import pytest

from emulator.report.design import schedule
from emulator.traffic.launch import http_load_argv
from emulator.workloads.agnhost import parse_netexec_args
from emulator.workloads.host import WorkloadHost
from test_workloads_netns import SERVER_IP, pytestmark, run_in, two_namespaces  # noqa: F401 (fixture)


def test_each_request_goes_to_its_scheduled_arm(two_namespaces, tmp_path):
    server_ns, client_ns = two_namespaces
    order = schedule(2, 15, "request", 1, "netns:1")
    with WorkloadHost() as host:
        host.add_pod_server(server_ns, "web-0", "node-a", parse_netexec_args(["netexec"]))
        out = tmp_path / "ab.jsonl"
        recs, summary = run_in(client_ns, http_load_argv(
            f"http://{SERVER_IP}:8080/hostname", str(out), requests=30, python=sys.executable,
            urls=[f"http://{SERVER_IP}:9999/"], schedule="".join(map(str, order))), out)
    by_seq = {r["seq"]: r for r in recs}
    assert [by_seq[i]["arm"] for i in range(30)] == order            # the schedule, request by request
    assert {(r["arm"], r["outcome"], r["remote_port"]) for r in recs} == {(0, "ok", 8080), (1, "refused", 9999)}
    assert summary["ok"] == 15 and summary["url"].count("http://") == 2
