"""The tcp, ping and iperf3 generators: loopback runs and the parsing of ping and iperf3 output."""
import shutil
import subprocess
import time

import pytest

from emulator.traffic.iperf3_client import parse_iperf3
from emulator.traffic.kinds import generator_argv
from emulator.traffic.ping_probe import parse_ping
from emulator.traffic.tcp_connect import kubemu_headers
from traffic_helpers import run_tool

pytestmark = pytest.mark.unit
TCP = "emulator.traffic.tcp_connect"

PING_OUT = """PING 10.4.2.5 (10.4.2.5) 56(84) bytes of data.
[1700000000.100500] 64 bytes from 10.4.2.5: icmp_seq=1 ttl=63 time=0.500 ms
[1700000000.300000] no answer yet for icmp_seq=2
[1700000000.400000] From 10.4.0.1 icmp_seq=3 Destination Host Unreachable
[1700000000.702000] 64 bytes from 10.4.2.5: icmp_seq=4 ttl=63 time=2.000 ms
[1700000000.702100] 64 bytes from 10.4.2.5: icmp_seq=4 ttl=63 time=2.100 ms (DUP!)
[1700000002.000000] 64 bytes from 10.4.2.5: icmp_seq=5 ttl=63 time=1500.000 ms

--- 10.4.2.5 ping statistics ---
6 packets transmitted, 3 received, +1 errors, 50% packet loss, time 1000ms
"""


def test_ping_output_becomes_one_record_per_echo_sent():
    recs = parse_ping(PING_OUT, started=1700000000.0, interval=0.2, timeout=1.0)
    assert [r["seq"] for r in recs] == [1, 2, 3, 4, 5, 6]
    assert [r["outcome"] for r in recs] == ["ok", "timeout", "error", "ok", "timeout", "timeout"]
    assert recs[0]["total_ms"] == 0.5 and recs[0]["t_start"] == pytest.approx(1700000000.1)
    assert recs[0]["remote_ip"] == "10.4.2.5" and recs[0]["ttl"] == 63
    assert recs[2]["errno"] == "EHOSTUNREACH" and "Unreachable" in recs[2]["error"]
    assert recs[3]["total_ms"] == 2.0                    # the duplicate reply is ignored
    assert recs[4]["total_ms"] == 1500.0                 # a reply later than the timeout is a timeout
    assert recs[5]["t_start"] == pytest.approx(1700000001.0) and recs[5]["remote_ip"] == "10.4.2.5"


def test_ping_loopback_for_real(tmp_path):
    if shutil.which("ping") is None:
        pytest.skip("needs iputils ping")
    recs, summary = run_tool("emulator.traffic.ping_probe", ["--host", "127.0.0.1", "--count", "3",
                                                             "--interval", "0.05"], tmp_path)
    assert [r["outcome"] for r in recs] == ["ok"] * 3 and summary["ok"] == 3


IPERF3_OK = {
    "start": {"connected": [{"socket": 5, "local_host": "10.4.0.3", "local_port": 40000,
                             "remote_host": "10.4.2.5", "remote_port": 5201}],
              "timestamp": {"timesecs": 1700000000}},
    "intervals": [{"sum": {"bits_per_second": 9.0e7}}, {"sum": {"bits_per_second": 1.1e8}}],
    "end": {"sum_sent": {"seconds": 2.0, "bytes": 25_000_000, "bits_per_second": 1.0e8, "retransmits": 7},
            "sum_received": {"seconds": 2.0, "bytes": 24_000_000, "bits_per_second": 9.6e7}},
}


def test_iperf3_report_becomes_one_record():
    rec = parse_iperf3(IPERF3_OK, started=1700000000.5)
    assert (rec["outcome"], rec["bits_per_second"], rec["received_bytes"], rec["sent_bytes"]) == \
        ("ok", 9.6e7, 24_000_000, 25_000_000)
    assert (rec["retransmits"], rec["total_ms"], rec["intervals_bps"]) == (7, 2000.0, [9.0e7, 1.1e8])
    assert (rec["remote_ip"], rec["local_ip"], rec["streams"]) == ("10.4.2.5", "10.4.0.3", 1)


@pytest.mark.parametrize("error, outcome", [
    ("unable to connect to server: Connection refused", "refused"),
    ("unable to connect to server: Connection timed out", "timeout"),
    ("the server is busy running a test. try again later", "error")])
def test_iperf3_errors_are_classified(error, outcome):
    rec = parse_iperf3({"start": {"connected": []}, "intervals": [], "end": {}, "error": error}, 1.0)
    assert rec["outcome"] == outcome and rec["bits_per_second"] is None and rec["error"] == error


def test_iperf3_loopback_for_real(tmp_path):
    if shutil.which("iperf3") is None:
        pytest.skip("needs iperf3")
    with subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", "15299"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as server:
        time.sleep(0.3)
        try:
            [rec], summary = run_tool("emulator.traffic.iperf3_client", ["--host", "127.0.0.1", "--port", "15299",
                                                                         "--duration", "1"], tmp_path)
        finally:
            server.kill()
    assert rec["outcome"] == "ok" and rec["received_bytes"] > 0 and summary["bits_per_second"] > 0


def test_tcp_connect_send_and_refused(netexec, free_port, tmp_path):
    recs, summary = run_tool(TCP, ["--host", "127.0.0.1", "--port", str(netexec.http_port), "--requests", "4",
                                   "--send", "GET /hostname HTTP/1.0\r\n\r\n"], tmp_path, "a.jsonl")
    assert [r["outcome"] for r in recs] == ["ok"] * 4 and summary["ok"] == 4
    assert all(r["pod"] == "web-1" and r["node"] == "node-a" and r["connect_ms"] is not None for r in recs)
    assert len({r["local_port"] for r in recs}) == 4            # a new connection each
    recs, _ = run_tool(TCP, ["--host", "127.0.0.1", "--port", str(free_port), "--requests", "2"], tmp_path, "b.jsonl")
    assert {(r["outcome"], r["errno"]) for r in recs} == {("refused", "ECONNREFUSED")}


def test_tcp_connect_reset_when_closed_without_reply(tmp_path):
    from traffic_helpers import raw_server
    with raw_server(lambda conn: conn.close()) as port:
        recs, _ = run_tool(TCP, ["--host", "127.0.0.1", "--port", str(port), "--requests", "2", "--send", "x\n"],
                           tmp_path)
    assert [r["outcome"] for r in recs] == ["reset", "reset"]


def test_kubemu_headers_only_from_http_replies():
    reply = b"HTTP/1.1 200 OK\r\nX-Kubemu-Pod: web-1\r\nX-Kubemu-Node: n1\r\nX-Kubemu-Client-IP: 10.4.0.3\r\n\r\nweb-1"
    assert kubemu_headers(reply) == {"pod": "web-1", "node": "n1", "client_ip_seen": "10.4.0.3"}
    assert kubemu_headers(b"SSH-2.0-OpenSSH\r\n") == {}


def test_generator_command_lines():
    assert generator_argv("ping", {"host": "h", "count": 3, "interval": 0.1, "timeout": 1.0}, "o", "py") == \
        ["py", "-m", "emulator.traffic.ping_probe", "--host=h", "--count", "3", "--interval", "0.1",
         "--timeout", "1", "--out", "o"]
    argv = generator_argv("tcp", {"host": "h", "port": 80, "send": None, "requests": None, "duration": 5.0,
                                  "concurrency": None, "rate": 10.0, "timeout": 1.0}, "o", "py")
    assert argv[-4:] == ["--duration", "5.0", "--rate", "10.0"] and "--send" not in argv
    assert "--reverse" not in generator_argv("iperf3", {"host": "h", "port": 5201, "duration": 2.0}, "o", "py")
    assert generator_argv("iperf3", {"host": "h", "port": 5201, "duration": 2.0, "reverse": True}, "o")[-1] == \
        "--reverse"
    with pytest.raises(ValueError, match="unknown traffic kind"):
        generator_argv("sctp", {}, "o")
