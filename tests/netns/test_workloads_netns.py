"""Pod servers in one real namespace, generators in another, joined by a veth."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.naming import new_run_id
from fabric_helpers import join_by_veth
from emulator.traffic.launch import http_load_argv, in_netns, udp_probe_argv
from emulator.workloads.agnhost import parse_netexec_args
from emulator.workloads.host import WorkloadHost

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                 reason="needs root and iproute2")]
REPO = Path(__file__).resolve().parents[2]
SERVER_IP, CLIENT_IP = "10.77.0.1", "10.77.0.2"
NAME = "web.default.svc.cluster.local"


@pytest.fixture
def two_namespaces():
    """(server_ns, client_ns) joined by a veth; the client resolves NAME via /etc/netns/<ns>/hosts."""
    prefix = f"kubemu{new_run_id()}"
    server, client = f"{prefix}-wl-server", f"{prefix}-wl-client"
    etc = Path("/etc/netns") / client
    try:
        join_by_veth(prefix, (server, SERVER_IP), (client, CLIENT_IP))
        etc.mkdir(parents=True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{SERVER_IP} {NAME}\n")
        yield server, client
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        for ns in (client, server):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def run_in(ns, argv, out):
    proc = subprocess.run(in_netns(ns, argv), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(x) for x in Path(out).read_text().splitlines()], json.loads(proc.stdout)


def test_pod_server_sees_client_ip_across_namespaces(two_namespaces, tmp_path):
    server_ns, client_ns = two_namespaces
    with WorkloadHost() as host:
        info = host.add_pod_server(server_ns, "web-0", "node-a", parse_netexec_args(["netexec"]))
        assert (info.http_port, info.udp_ports) == (8080, (8081,))

        out = tmp_path / "http.jsonl"
        recs, summary = run_in(client_ns, http_load_argv(f"http://{NAME}:8080/hostname", str(out),
                                                         requests=100, concurrency=4, python=sys.executable), out)
        assert summary["ok"] == 100
        assert {(r["pod"], r["node"], r["client_ip_seen"], r["remote_ip"]) for r in recs} == {
            ("web-0", "node-a", CLIENT_IP, SERVER_IP)}
        assert all(r["local_ip"] == CLIENT_IP and r["dns_ms"] is not None for r in recs)

        out = tmp_path / "udp.jsonl"
        recs, _ = run_in(client_ns, udp_probe_argv(SERVER_IP, 8081, str(out), message="clientip", requests=20,
                                                   python=sys.executable), out)
        assert {(r["outcome"], r["client_ip_seen"]) for r in recs} == {("ok", CLIENT_IP)}
        out = tmp_path / "udp2.jsonl"
        recs, _ = run_in(client_ns, udp_probe_argv(NAME, 8081, str(out), requests=5, python=sys.executable), out)
        assert {(r["outcome"], r["pod"]) for r in recs} == {("ok", "web-0")}

        out = tmp_path / "refused.jsonl"
        recs, _ = run_in(client_ns, http_load_argv(f"http://{SERVER_IP}:9999/", str(out), requests=3,
                                                   python=sys.executable), out)
        assert {r["outcome"] for r in recs} == {"refused"}

        # the listening socket lives in the server namespace only: nothing listens in the client's
        out = tmp_path / "own.jsonl"
        recs, _ = run_in(client_ns, http_load_argv("http://127.0.0.1:8080/", str(out), requests=1,
                                                   python=sys.executable), out)
        assert recs[0]["outcome"] == "refused"

        assert host.remove_pod_server(server_ns)
        out = tmp_path / "after.jsonl"
        recs, _ = run_in(client_ns, http_load_argv(f"http://{SERVER_IP}:8080/", str(out), requests=2,
                                                   python=sys.executable), out)
        assert {r["outcome"] for r in recs} == {"refused"}
