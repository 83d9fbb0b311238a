"""The built-in agnhost servers on loopback: netexec /readyz after SIGTERM, /dial, /exit,
serve-hostname --tcp/--udp, porter; and agnhost connect's error categories."""
import http.client
import json
import socket
import threading

import pytest

from emulator.workloads.agnhost import ConnectConfig, NetexecConfig, parse_netexec_args
from emulator.workloads.connect import connect, read_resolv_conf, split_host_port
from emulator.workloads.host import WorkloadHost

pytestmark = pytest.mark.unit


@pytest.fixture
def host():
    with WorkloadHost() as h:
        yield h


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_readyz_fails_after_sigterm_while_serving_goes_on(host):
    info = host.add_pod_server(None, "p", "n", NetexecConfig(http_port=0, udp_port=0, delay_shutdown=600),
                               bind_ip="127.0.0.1")
    assert get(info.http_port, "/readyz")[0] == 200
    assert host.begin_pod_termination(None) == 600
    assert get(info.http_port, "/readyz")[0] == 503
    assert get(info.http_port, "/hostname") == (200, "p")
    assert get(info.http_port, "/healthz")[0] == 200


def test_dial_http_and_udp_report_json_like_agnhost(host):
    info = host.add_pod_server(None, "p", "n", NetexecConfig(http_port=0, udp_port=0), bind_ip="127.0.0.1")
    status, body = get(info.http_port, f"/dial?request=hostname&host=127.0.0.1&port={info.http_port}"
                                       "&protocol=http&tries=3")
    assert status == 200 and json.loads(body) == {"responses": ["p", "p", "p"]}
    status, body = get(info.http_port, f"/dial?request=echo%20hi&host=127.0.0.1&port={info.udp_ports[0]}"
                                       "&protocol=udp")
    assert json.loads(body) == {"responses": ["hi"]}
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        status, body = get(info.http_port, f"/dial?request=hostname&host=127.0.0.1&port={port}&tries=2")
    out = json.loads(body)
    assert list(out) == ["errors"] and len(out["errors"]) == 2
    assert get(info.http_port, "/dial?host=127.0.0.1&port=1")[0] == 400       # no request
    assert get(info.http_port, "/dial?request=x&host=127.0.0.1&port=1&protocol=icmp")[0] == 400


def test_exit_stops_the_server_and_reports_the_code(host):
    codes, done = [], threading.Event()
    info = host.add_pod_server(None, "p", "n", NetexecConfig(http_port=0, udp_port=None), bind_ip="127.0.0.1",
                               on_exit=lambda code: (codes.append(code), done.set()))
    get(info.http_port, "/exit?code=7")
    assert done.wait(5) and codes == [7]
    with pytest.raises(OSError):
        get(info.http_port, "/")


def test_serve_hostname_raw_tcp_and_udp(host):
    cfg = parse_netexec_args(["serve-hostname", "--tcp", "--udp", "--http=false", "--port=0"])
    with socket.socket() as probe:   # one free port for both protocols
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = NetexecConfig(**{**cfg.__dict__, "tcp_port": port, "udp_port": port})
    host.add_pod_server(None, "sh-pod", "n", cfg, bind_ip="127.0.0.1")
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        assert s.recv(100) == b"sh-pod"
        assert s.recv(100) == b""                                 # closed after the hostname
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"anything", ("127.0.0.1", port))
        assert s.recv(100) == b"sh-pod"


def test_porter_answers_each_port_with_its_value(host):
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    cfg = parse_netexec_args(["porter"], env={f"SERVE_PORT_{ports[0]}": "foo", f"SERVE_PORT_{ports[1]}": "bar"})
    host.add_pod_server(None, "p", "n", cfg, bind_ip="127.0.0.1")
    assert get(ports[0], "/any") == (200, "foo") and get(ports[1], "/") == (200, "bar")


def test_connect_categories():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        assert connect(ConnectConfig(f"127.0.0.1:{port}", 2.0), None, None) == (0, "")
    assert connect(ConnectConfig(f"127.0.0.1:{port}", 2.0), None, None) == (1, "REFUSED\n")
    code, err = connect(ConnectConfig("127.0.0.1", 2.0), None, None)
    assert code == 1 and err.startswith("UNKNOWN: address 127.0.0.1: missing port")
    code, err = connect(ConnectConfig("no-such.name:80", 1.0), None, "/nonexistent/resolv.conf")
    assert code == 1 and err.startswith("DNS: ")
    assert connect(ConnectConfig("127.0.0.1:9", 1.0, "sctp"), None, None)[0] == 1


def test_split_host_port_and_resolv_conf(tmp_path):
    assert split_host_port("10.0.0.1:80") == ("10.0.0.1", 80)
    assert split_host_port("[fd00::1]:53") == ("fd00::1", 53)
    with pytest.raises(ValueError, match="too many colons"):
        split_host_port("fd00::1:53")
    conf = tmp_path / "resolv.conf"
    conf.write_text("search default.svc.cluster.local svc.cluster.local\nnameserver 10.8.0.10\noptions ndots:5\n")
    assert read_resolv_conf(str(conf)) == (["10.8.0.10"], ["default.svc.cluster.local", "svc.cluster.local"])
