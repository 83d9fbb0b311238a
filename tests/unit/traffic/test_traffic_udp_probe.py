"""The UDP probe against loopback: replies, refusal, timeout."""
import socket

import pytest

from traffic_helpers import run_tool

pytestmark = pytest.mark.unit
UDP = "emulator.traffic.udp_probe"


def test_hostname_new_socket_each(netexec, tmp_path):
    recs, summary = run_tool(UDP, ["--host", "127.0.0.1", "--port", str(netexec.udp_ports[0]),
                                   "--requests", "50", "--concurrency", "4"], tmp_path)
    assert {r["outcome"] for r in recs} == {"ok"} and {r["pod"] for r in recs} == {"web-1"}
    # A new socket per request gets a random ephemeral port; two of 50 may draw the same
    # one (a few % of runs), while a reused socket would show at most 4 ports (concurrency).
    assert len({r["local_port"] for r in recs}) >= 45
    assert all(r["ttfb_ms"] <= r["total_ms"] for r in recs)
    assert summary["ok"] == 50


def test_kubemu_and_clientip_messages(netexec, tmp_path):
    recs, _ = run_tool(UDP, ["--host", "127.0.0.1", "--port", str(netexec.udp_ports[0]), "--message", "kubemu",
                             "--requests", "3"], tmp_path, "a.jsonl")
    assert all((r["pod"], r["node"], r["client_ip_seen"], r["client_port_seen"]) ==
               ("web-1", "node-a", "127.0.0.1", r["local_port"]) for r in recs)
    recs, _ = run_tool(UDP, ["--host", "127.0.0.1", "--port", str(netexec.udp_ports[0]), "--message", "clientip",
                             "--requests", "3", "--reuse-socket"], tmp_path, "b.jsonl")
    assert {r["client_ip_seen"] for r in recs} == {"127.0.0.1"} and len({r["local_port"] for r in recs}) == 1


def test_refused_and_timeout(free_port, tmp_path):
    recs, _ = run_tool(UDP, ["--host", "127.0.0.1", "--port", str(free_port), "--requests", "3"],
                       tmp_path, "a.jsonl")
    assert {(r["outcome"], r["errno"]) for r in recs} == {("refused", "ECONNREFUSED")}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mute:
        mute.bind(("127.0.0.1", 0))
        recs, _ = run_tool(UDP, ["--host", "127.0.0.1", "--port", str(mute.getsockname()[1]), "--requests", "2",
                                 "--timeout", "0.2"], tmp_path, "b.jsonl")
    assert [r["outcome"] for r in recs] == ["timeout", "timeout"]
    assert all(190 <= r["total_ms"] < 1000 for r in recs)
