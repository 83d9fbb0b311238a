"""The HTTP load generator against loopback servers: records, outcomes, pacing."""
import json
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from emulator.traffic.http_load import parse_target
from emulator.traffic.launch import http_load_argv, in_netns, udp_probe_argv
from emulator.traffic.records import OUTCOMES, classify

from traffic_helpers import REPO, raw_server, run_tool

pytestmark = pytest.mark.unit
HTTP = "emulator.traffic.http_load"
KEYS = {"seq", "t_start", "dns_ms", "connect_ms", "ttfb_ms", "total_ms", "outcome", "status", "pod", "node",
        "client_ip_seen", "client_port_seen", "remote_ip", "remote_port", "local_ip", "local_port",
        "reused", "retried", "body_bytes", "errno", "error"}


def test_200_requests_all_ok_new_connection_each(netexec, tmp_path):
    recs, summary = run_tool(HTTP, ["--url", f"http://127.0.0.1:{netexec.http_port}/hostname",
                                    "--requests", "200", "--concurrency", "4"], tmp_path)
    assert len(recs) == 200 and set(recs[0]) == KEYS
    assert {r["outcome"] for r in recs} == {"ok"} and {r["status"] for r in recs} == {200}
    assert {r["pod"] for r in recs} == {"web-1"} and {r["node"] for r in recs} == {"node-a"}
    assert all(r["client_ip_seen"] == "127.0.0.1" and r["client_port_seen"] == r["local_port"] for r in recs)
    assert all(r["remote_ip"] == "127.0.0.1" and r["remote_port"] == netexec.http_port for r in recs)
    assert len({r["local_port"] for r in recs}) == 200          # one TCP connection per request
    assert not any(r["reused"] for r in recs)
    assert all(0 <= r["connect_ms"] <= r["ttfb_ms"] <= r["total_ms"] for r in recs)
    assert sorted(r["seq"] for r in recs) == list(range(200))
    assert summary["requests"] == 200 and summary["ok"] == 200 and summary["outcomes"] == {"ok": 200}


def test_keepalive_reuses_connections(netexec, tmp_path):
    recs, _ = run_tool(HTTP, ["--url", f"http://127.0.0.1:{netexec.http_port}/echo?msg=x",
                              "--requests", "50", "--concurrency", "2", "--keepalive"], tmp_path)
    assert {r["outcome"] for r in recs} == {"ok"}
    assert len({r["local_port"] for r in recs}) <= 2
    assert sum(r["reused"] for r in recs) >= 48
    assert all(r["connect_ms"] is None for r in recs if r["reused"])


def test_refused_when_nothing_listens(free_port, tmp_path):
    recs, summary = run_tool(HTTP, ["--url", f"http://127.0.0.1:{free_port}/", "--requests", "5"], tmp_path)
    assert [r["outcome"] for r in recs] == ["refused"] * 5
    assert {r["errno"] for r in recs} == {"ECONNREFUSED"}
    assert all(r["connect_ms"] is None and r["status"] is None for r in recs)
    assert summary["outcomes"] == {"refused": 5}


def test_timeout_when_server_never_answers(silent_listener, tmp_path):
    t = time.monotonic()
    recs, _ = run_tool(HTTP, ["--url", f"http://127.0.0.1:{silent_listener}/", "--requests", "2",
                              "--timeout", "0.3"], tmp_path)
    assert [r["outcome"] for r in recs] == ["timeout", "timeout"]
    assert all(r["connect_ms"] is not None for r in recs)    # the kernel completed the handshake
    assert all(290 <= r["total_ms"] < 1000 for r in recs)
    assert "response" in recs[0]["error"]
    assert time.monotonic() - t < 10


def test_http_error_keeps_status_and_pod(netexec, tmp_path):
    recs, _ = run_tool(HTTP, ["--url", f"http://127.0.0.1:{netexec.http_port}/echo?msg=no&code=503",
                              "--requests", "3"], tmp_path)
    assert {(r["outcome"], r["status"], r["pod"]) for r in recs} == {("http_error", 503, "web-1")}


def _rst(conn):
    conn.recv(4096)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _eof(conn):
    conn.recv(4096)
    conn.close()


def test_reset_on_rst_and_on_close_before_response(tmp_path):
    with raw_server(_rst) as port:
        recs, _ = run_tool(HTTP, ["--url", f"http://127.0.0.1:{port}/", "--requests", "3"], tmp_path, "a.jsonl")
    assert {r["outcome"] for r in recs} == {"reset"}
    with raw_server(_eof) as port:
        recs, _ = run_tool(HTTP, ["--url", f"http://127.0.0.1:{port}/", "--requests", "3"], tmp_path, "b.jsonl")
    assert {r["outcome"] for r in recs} == {"reset"}


def _plain_server_then_close(conn):
    """A server without kubemu headers that closes a keep-alive connection after one answer."""
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"4\r\npod-\r\n3\r\nxyz\r\n0\r\n\r\n")
    time.sleep(0.05)
    conn.close()


def test_chunked_body_hostname_fallback_and_stale_keepalive_retry(tmp_path):
    with raw_server(_plain_server_then_close) as port:
        recs, _ = run_tool(HTTP, ["--url", f"http://127.0.0.1:{port}/hostname", "--requests", "3",
                                  "--keepalive"], tmp_path)
        time.sleep(0.1)
    assert [r["outcome"] for r in recs] == ["ok"] * 3
    assert {r["pod"] for r in recs} == {"pod-xyz"} and {r["body_bytes"] for r in recs} == {7}
    assert any(r["retried"] for r in recs[1:])


def test_rate_and_duration(netexec, tmp_path):
    recs, _ = run_tool(HTTP, ["--url", f"http://127.0.0.1:{netexec.http_port}/hostname",
                              "--rate", "100", "--duration", "0.5"], tmp_path)
    # exactly the 50 requests due in 0.5 s at 100/s, however busy the machine (late ones go late)
    assert len(recs) == 50 and {r["outcome"] for r in recs} == {"ok"}
    starts = sorted(r["t_start"] for r in recs)
    assert starts[-1] - starts[0] >= 0.4      # paced over the duration, not sent at once


def test_sigterm_stops_early_and_keeps_records(netexec, tmp_path):
    out = tmp_path / "o.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", HTTP, "--url", f"http://127.0.0.1:{netexec.http_port}/",
                             "--duration", "30", "--rate", "50", "--out", str(out)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60           # started and sending (however slow the machine): then stop it
    while (not out.exists() or len(out.read_text().splitlines()) < 10) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert 10 <= len(recs) < 200 and json.loads(stdout)["requests"] == len(recs)


@pytest.mark.parametrize("args", [
    ["--url", "http://127.0.0.1:1/"],                                   # no --requests nor --duration
    ["--url", "ftp://x/", "--requests", "1"],
    ["--url", "http://x/", "--requests", "1", "--header", "no colon"],
    ["--url", "http://x/", "--requests", "1", "--rate", "5", "--concurrency", "2"],
])
def test_usage_errors_exit_2(args, tmp_path):
    run_tool(HTTP, args, tmp_path, expect_rc=2)


def test_parse_target():
    t = parse_target("http://web.default.svc.cluster.local:8080/echo?msg=a")
    assert (t.host, t.port, t.path, t.host_header, t.is_ip) == (
        "web.default.svc.cluster.local", 8080, "/echo?msg=a", "web.default.svc.cluster.local:8080", False)
    t = parse_target("http://[fd00::1]")
    assert (t.host, t.port, t.path, t.is_ip) == ("fd00::1", 80, "/", True)


def test_classify_errors():
    assert classify(socket.gaierror(-2, "Name or service not known"), "dns")[0] == "dns_error"
    assert classify(ConnectionRefusedError(111, "x"), "connect")[:2] == ("refused", "ECONNREFUSED")
    assert classify(ConnectionResetError(104, "x"), "response")[:2] == ("reset", "ECONNRESET")
    assert classify(TimeoutError(), "connect") == ("timeout", "ETIMEDOUT", "timeout during connect")
    assert classify(OSError(113, "No route to host"), "connect")[:2] == ("error", "EHOSTUNREACH")
    assert set(OUTCOMES) == {"ok", "http_error", "refused", "timeout", "reset", "dns_error", "error"}


def test_launch_argv():
    argv = in_netns("kubemuab12-pod-default-c", http_load_argv("http://web/", "/r/f.jsonl", requests=10,
                                                                concurrency=2, python="/v/python"))
    assert argv == ["ip", "netns", "exec", "kubemuab12-pod-default-c", "/v/python", "-m",
                    "emulator.traffic.http_load", "--url=http://web/", "--out", "/r/f.jsonl",
                    "--timeout", "5.0", "--requests", "10", "--concurrency", "2"]
    assert "--reuse-socket" in udp_probe_argv("h", 8081, "o", requests=1, reuse_socket=True)
    with pytest.raises(ValueError):
        http_load_argv("http://web/", "o")
